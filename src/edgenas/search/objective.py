"""What a search trains the shared weights with and scores architectures by, taken from the task.

Classification: cross-entropy (with the configured label smoothing) and held-out top-1, as TuNAS. Segmentation:
the task's per-pixel loss and the mIoU of the held-out batch. Detection: the task's SSD loss, and as quality
1 / (1 + held-out loss): a COCO mAP of a handful of held-out images from a supernet a few hundred steps old is
close to 0 for every path (no detection clears the score threshold), so it cannot rank them, while the loss
moves from the first steps. 1 / (1 + loss) keeps the quality in (0, 1] as top-1 and mIoU are, so the reward's
latency term weighs on the same scale, and it still separates losses of 2-6, where exp(-loss) would squeeze
them into 0.002-0.14. Every quality is a fraction in [0, 1].
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from ..config import RunConfig
from ..eval.metrics import top1
from ..eval.seg_metrics import SegmentationMeter
from ..tasks import get_task
from ..tasks.detection import DetectionLoss
from ..tasks.segmentation import IGNORE_INDEX


class Objective:
    """``loss(outputs, targets)`` for weight steps, ``quality(outputs, targets)`` for held-out estimates."""

    def __init__(self, label: str, loss: Callable, quality: Callable):
        self.label, self.loss, self.quality = label, loss, quality


def objective(cfg: RunConfig, task_spec) -> Objective:
    """The objective of ``cfg.task`` for networks shaped like ``task_spec`` (any point of the task space)."""
    if cfg.task == "classification":
        smoothing = cfg.train.label_smoothing
        return Objective("held-out top-1",
                         lambda out, y: F.cross_entropy(out, y, label_smoothing=smoothing), top1)
    task = get_task(cfg)
    if cfg.task == "segmentation":
        def miou(out, y) -> float:
            meter = SegmentationMeter(task_spec.num_classes, IGNORE_INDEX)
            meter.update(out, y)
            return meter.summary()["quality"] / 100

        return Objective("held-out mIoU", task.loss(cfg), miou)
    loss = DetectionLoss(task_spec)  # the anchors: every point has the same head sources at the same levels

    def inverse_loss(out, y) -> float:
        with torch.no_grad():
            return 1.0 / (1.0 + float(loss(out, y)))

    return Objective("1 / (1 + held-out SSD loss)", loss, inverse_loss)
