"""The images an export is checked on, from a run's own data: exporters take them as arguments and never read a
dataset themselves (``edgenas.export`` sits below the tasks)."""

from __future__ import annotations

import torch
from torch.utils.data import default_collate


def parity_data(task, cfg, spec, check: int = 1000, calibration: int = 256) -> tuple:
    """(the first ``check`` validation images, their targets batched as the task batches them, the first
    ``calibration`` training images for int8 ranges) of ``task``'s datasets for ``cfg`` and ``spec``, all
    transformed as the deployed model sees them (no augmentation). Classification's targets are the label
    tensor; no calibration images give an empty tensor."""
    train_set, val_set = task.datasets(cfg, spec)
    train_set.transform = val_set.transform  # calibration sees deployed inputs, not augmented ones
    collate = getattr(task, "collate", default_collate)
    checked = [val_set[i] for i in range(min(check, len(val_set)))]
    images, targets = collate(checked) if checked else (torch.empty(0), [])  # the exporter refuses none
    calib = [train_set[i][0] for i in range(min(calibration, len(train_set)))]
    return images, targets, torch.stack(calib) if calib else images[:0]
