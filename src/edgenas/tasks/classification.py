"""Classification: an ``Arch`` adapted to the dataset, label-smoothed cross-entropy, top-1.

Fashion-MNIST is 28x28x1 with 10 classes: a zoo model keeps its blocks and gets a 1-channel input, the
dataset's normalization, ``model.input_size`` (default 28) and, optionally, a stride-1 stem so five
downsamplings do not reduce a 28 px image to 1 px too early. The deployment arch is unchanged; results say
which input the model was trained at.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from ..config import DataConfig, RunConfig
from ..data.datasets import ImageFolder, fashion_mnist
from ..data.shape import FASHION_MNIST, DataShape
from ..data.transforms import build_transform
from ..errors import DataError
from ..eval.metrics import ClassificationMeter
from ..export import ExportError, export
from ..spec import Arch
from .base import BaseTask, Loss, check_labels, trained_spec, training_changes
from .parity import parity_data


def data_shape(data: DataConfig) -> DataShape:
    """What the configured dataset fixes in an arch (an ImageFolder: its class count, read from the folder)."""
    if data.dataset == "fashion-mnist":
        return FASHION_MNIST
    return DataShape(num_classes=len(ImageFolder(Path(data.data_dir) / "train", None).classes))


def adapted(arch: Arch, shape: DataShape, *, input_size: int | None = None, num_classes: int | None = None,
            stem_stride: int | None = None) -> dict:
    """The changes that make ``arch`` the one trained on a dataset of ``shape`` (``adapt_arch``)."""
    changes = shape.arch_changes(input_size)
    if stem_stride:
        changes["stem"] = arch.stem.model_copy(update={"stride": stem_stride})
    changes["head"] = arch.head.model_copy(update={"num_classes": num_classes or shape.num_classes})
    return changes


def adapt_arch(arch: Arch, shape: DataShape, *, input_size: int | None = None, num_classes: int | None = None,
               stem_stride: int | None = None) -> Arch:
    """``arch`` as trained on a dataset of ``shape``: its input channels, normalization and classes, at
    ``input_size`` (default: the dataset's native size, else the arch's); ``stem_stride`` 1 keeps five
    downsamplings from reducing a 28 px image to 1 px too early. The blocks are unchanged."""
    return arch.replace(**adapted(arch, shape, input_size=input_size, num_classes=num_classes,
                                  stem_stride=stem_stride))


def run_arch(cfg: RunConfig) -> Arch:
    """The arch to train: the registered model or file, adapted to the dataset as the config asks, with the
    config's drop-path rate and BatchNorm momentum."""
    m = cfg.model

    def changes(arch: Arch) -> dict:
        return {**adapted(arch, data_shape(cfg.data), input_size=m.input_size, num_classes=m.num_classes,
                          stem_stride=m.stem_stride), **training_changes(arch, cfg.train)}

    return trained_spec(cfg, Arch, changes)


def dataset(cfg: RunConfig, arch: Arch, split: str):
    """The ``train`` or ``val`` dataset with the arch's input size and preprocessing."""
    p, d, train = arch.preprocess, cfg.data, split == "train"
    min_scale = d.crop_scale or (0.35 if arch.input_size <= 64 else 0.08)  # tiny images lose their object
    transform = build_transform(train, arch.input_size, p.mean, p.std, crop_pct=p.crop_pct,
                                augment=d.augment if train else "none", ops=d.randaugment_ops,
                                magnitude=d.randaugment_magnitude, interpolation=p.interpolation,
                                min_scale=min_scale)
    seed, subset = cfg.train.seed, d.train_subset if train else d.val_subset
    if d.dataset == "fashion-mnist":
        data = fashion_mnist("train" if train else "test", d.data_dir, transform, seed, subset)
    else:
        data = ImageFolder(Path(d.data_dir) / split, transform, seed, d.skip_corrupt, subset, arch.in_channels)
    check_labels(data, arch.head.num_classes, cfg)
    return data


def datasets(cfg: RunConfig, arch: Arch):
    """(train, val), checked to name the same classes in the same order (an ImageFolder numbers its class
    folders: one missing from val would silently shift the labels of those after it)."""
    train, val = dataset(cfg, arch, "train"), dataset(cfg, arch, "val")
    if train.classes != val.classes:  # sorted names: the sets differ
        only = sorted(set(train.classes) ^ set(val.classes))
        raise DataError(f"{val.source}: its classes differ from {train.source}'s ({', '.join(only[:5])}"
                        f"{' ...' if len(only) > 5 else ''} in only one)")
    return train, val


class ClassificationTask(BaseTask):
    name = "classification"
    quality_label = "top-1"
    parity_images = 500  # a search checks its exported winner on this many test images
    record_keys = {"top1": "top1", "top5": "top5"}  # val_top1, val_top5: docs and tests read these names
    ema_keys = ("top1",)

    def spec(self, cfg) -> Arch:
        return run_arch(cfg)

    def dataset(self, cfg, spec: Arch, split: str):
        return dataset(cfg, spec, split)

    def datasets(self, cfg, spec: Arch) -> tuple:
        return datasets(cfg, spec)  # also checks that both splits name the same classes

    def export(self, model, fmt: str, out, cfg, spec, *, check: int, calibration: int,
               tail: str | None = None) -> tuple[dict, str]:
        """Logits checked against PyTorch on the run's test images. (record, one-line summary)"""
        if tail:
            raise ExportError("--tail: a classifier has no serving tail; it is for segmentation networks")
        images, labels, calib = parity_data(self, cfg, spec, check, calibration)
        report = export(model, fmt, out, images, labels, calib)
        checks = (f"max |diff| vs PyTorch {report.max_abs_diff:.2e} (at most {report.max_rel_diff:.1e} of an "
                  f"image's largest logit), top-1 agreement {report.top1_agreement:.2f}%"
                  if report.max_abs_diff is not None else
                  f"top-1 {report.top1:.2f}% (fp32 {report.reference_top1:.2f}%), agreement "
                  f"{report.top1_agreement:.2f}%")
        return report.to_dict(), (f"wrote {report.path} ({report.size_bytes / 1e6:.2f} MB): {checks} on "
                                  f"{report.images} test images")

    def loss(self, cfg, train: bool = True, data=None) -> Loss:
        # evaluation reports the plain cross-entropy, so validation losses compare across smoothing settings
        return nn.CrossEntropyLoss(label_smoothing=cfg.train.label_smoothing if train else 0.0)

    def meter(self, spec, dataset=None) -> ClassificationMeter:
        return ClassificationMeter(spec.num_classes)

    def headline(self, summary: dict) -> str:
        return (f"{summary['images']} images: top-1 {summary['top1']:.2f}%, top-5 {summary['top5']:.2f}%, "
                f"loss {summary['loss']:.4f}")

    def per_class(self, summary: dict) -> tuple[str, dict]:
        return "accuracy %", summary["per_class"]
