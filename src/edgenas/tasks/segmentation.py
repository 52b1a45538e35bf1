"""Segmentation: a ``Network`` whose class count comes from the dataset, per-pixel cross-entropy that ignores
label 255, and mIoU.

Logits come out at the head's stride (8 for Autoseg, 16 for DeepLabv3+); the loss and the metric resize them
bilinearly to the label's size, as Google's training does (``use_groundtruth_dimension``), so labels are never
downsampled and every labelled pixel counts.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch import nn

from ..data import segmentation as seg
from ..data.seg_transforms import build_seg_transform
from ..data.segmentation import ADE20K_32_CLASSES, CAMVID_CLASSES, COMPOSITE_CLASSES
from ..errors import DataError
from ..eval.seg_metrics import SegmentationMeter, resize_logits
from ..export.segmentation import export_network
from ..models.pretrained import is_tflite
from ..models.timm_weights import timm_arch
from ..spec import Network, SpecError
from ..spec.errors import UnknownName
from .base import BaseTask, Loss, check_labels, percent, trained_spec, training_changes
from .parity import parity_data

IGNORE_INDEX = 255
# Class counts a dataset fixes (ADE20K: Google's 32-class protocol; CamVid: SegNet's 11; composite: background +
# the 10 Fashion-MNIST classes). ``folder`` has none: model.num_classes gives it.
NUM_CLASSES = {"composite": len(COMPOSITE_CLASSES), "ade20k": len(ADE20K_32_CLASSES), "camvid": len(CAMVID_CLASSES)}
COMPOSITE_SCENES = {"train": 1000, "val": 200}  # when data.train_subset / val_subset leave the count open
# Validation scenes are drawn with their own seed (and Fashion-MNIST's test objects), so every train.seed is
# scored on the same images, none of which it trained on.
COMPOSITE_VAL_SEED = 1_000_003


def network(cfg) -> Network:
    """The network to train: the registered model or network file, with the dataset's classes (or
    ``model.num_classes``) at ``model.input_size`` (default: its deployment size), and the config's
    BatchNorm momentum and drop-path rate. Latency stays a property of the deployment network; results say
    which size the model was trained at."""
    m, t = cfg.model, cfg.train

    def changes(spec: Network) -> dict:
        classes = m.num_classes or NUM_CLASSES.get(cfg.data.dataset)
        if classes is None:
            raise SpecError(f"model.num_classes: data.dataset {cfg.data.dataset} needs the class count (labels "
                            f"0..N-1, {IGNORE_INDEX} = ignore)")
        size = m.input_size or spec.input_size
        backbone = spec.backbone
        if m.pretrained and not is_tflite(m.pretrained):  # timm's weights mean what they do in timm's variant
            try:
                backbone = timm_arch(backbone.name, backbone.num_classes)
            except UnknownName as err:
                raise SpecError(f"model.pretrained: {m.pretrained}: timm weights fit a network on one of timm's "
                                f"backbones; {spec.name}'s is {backbone.name} ({err})") from None
        # the backbone's and the nodes' BatchNorm alike; the network's replace validates the backbone too
        backbone = backbone.model_copy(update={"input_size": size, **training_changes(backbone, t)})
        head = spec.head.model_copy(update={"classifier": spec.head.classifier.model_copy(
            update={"out_channels": classes})})
        tf_weights = m.pretrained and is_tflite(m.pretrained)  # trained in TF: they expect its padding
        return {"input_size": size, "backbone": backbone, "head": head,
                **training_changes(spec, t, drop_path=False), **({"padding": "tf"} if tf_weights else {})}

    return trained_spec(cfg, Network, changes)


def median_frequency_weights(counts) -> torch.Tensor:
    """SegNet's median frequency balancing: class ``c``'s weight is median(f) / f_c, where f_c is its pixels
    over the pixels of the training images that hold it. A class absent from every image gets 0 (it has no
    pixel for a weight to act on)."""
    pixels, image_pixels = (torch.as_tensor(c, dtype=torch.float64) for c in counts)
    present = pixels > 0
    freq = torch.where(present, pixels / image_pixels.clamp(min=1), torch.nan)
    # the median of an even count is the mean of the middle two (torch's median would take the lower)
    median = freq[present].quantile(0.5) if present.any() else torch.tensor(1.0, dtype=torch.float64)
    return torch.where(present, median / freq, 0.0).float()


def _size(size) -> int | tuple[int, int]:
    return tuple(size) if isinstance(size, (list, tuple)) else size


class SegmentationLoss(nn.Module):
    """Cross-entropy over the labelled pixels, logits resized to the label first. The sum is divided by the
    number of labelled pixels, clamped at 1 (Google's ``SegmentationLoss``: sum / (valid + eps)), so a crop
    that holds only ignored pixels gives 0, not the NaN of a plain mean, which would read as divergence."""

    def __init__(self, ignore_index: int = IGNORE_INDEX, label_smoothing: float = 0.0,
                 weight: torch.Tensor | None = None):
        super().__init__()
        self.ignore_index, self.label_smoothing = ignore_index, label_smoothing
        self.register_buffer("weight", weight, persistent=False)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = resize_logits(logits, target.shape[-2:])
        total = nn.functional.cross_entropy(logits, target, weight=self.weight, ignore_index=self.ignore_index,
                                            reduction="sum", label_smoothing=self.label_smoothing)
        valid = target != self.ignore_index
        if self.weight is None:
            return total / valid.sum().clamp(min=1)
        # a weighted mean, as cross_entropy's own: divided by the labelled pixels' weights
        return total / self.weight[target[valid]].sum().clamp(min=1e-12)


class SegmentationTask(BaseTask):
    name = "segmentation"
    quality_label = "mIoU"
    parity_images = 8  # a search checks its exported winner on this many validation images (large ones)
    record_keys = {"miou": "miou", "pixel_acc": "pixel_accuracy"}
    ema_keys = ("miou",)

    def spec(self, cfg) -> Network:
        return network(cfg)

    def dataset(self, cfg, spec: Network, split: str):
        """Training: scale jitter, a ``data.crop_size`` crop and a flip (``augment: basic``), or a resize to the
        crop size (``none``); validation: a resize to ``data.eval_size``. Both default to the input size."""
        d, train = cfg.data, split == "train"
        p = spec.backbone.preprocess
        crop, evaluated = _size(d.crop_size or spec.input_size), _size(d.eval_size or spec.input_size)
        if train and d.augment == "basic":
            transform = build_seg_transform(True, crop, p.mean, p.std, scale=tuple(d.scale_range), flip=True)
        else:
            transform = build_seg_transform(False, crop if train else evaluated, p.mean, p.std)
        seed, subset, root = cfg.train.seed, d.train_subset if train else d.val_subset, Path(d.data_dir)
        if d.dataset == "composite":
            # scenes are generated at the evaluation size; training ones are then jittered and cropped
            data = seg.composite_scenes(subset or COMPOSITE_SCENES[split], evaluated,
                                        seed if train else COMPOSITE_VAL_SEED, split="train" if train else "test",
                                        data_dir=root, transform=transform)
        elif d.dataset == "ade20k":
            data = seg.ade20k(root, "training" if train else "validation", transform, seed=seed, subset=subset)
        elif d.dataset == "camvid":
            data = seg.camvid(root, d.train_split if train else d.split, transform, seed=seed, subset=subset)
        elif d.dataset == "folder":
            data = seg.mask_folder(root / "images" / split, root / "masks" / split, spec.num_classes,
                                   transform=transform, seed=seed, subset=subset)
        else:  # RunConfig refuses other datasets for this task
            raise DataError(f"data.dataset: {d.dataset!r} is not a segmentation dataset")
        check_labels(data, spec.num_classes, cfg)
        return data

    def export(self, model, fmt: str, out, cfg, spec: Network, *, check: int, calibration: int,
               tail: str | None = None) -> tuple[dict, str]:
        """The serving graph (``tail``, default the exact ``resize<input>,argmax``) exported and checked by
        pixel agreement on validation images; int8 ranges from training images. (record, one-line summary)"""
        served = spec.with_tail(tail or spec.tail or f"resize{spec.input_size},argmax")  # the tail's text checked
        images, _, calib = parity_data(self, cfg, spec, check, calibration)
        report = export_network(model, fmt, out, images, calib, tail=served.tail)
        return report.to_dict(), (f"wrote {report.path} ({report.size_bytes / 1e6:.2f} MB): tail {report.tail}, "
                                  f"PyTorch's class on {report.pixel_agreement:.2%} of pixels of "
                                  f"{report.images} validation images")

    def loss(self, cfg, train: bool = True, data=None) -> Loss:
        weight = None
        if train and cfg.train.class_weights == "median_frequency":
            if data is None:
                raise ValueError("train.class_weights: the loss needs the training set to count classes")
            weight = median_frequency_weights(seg.class_pixels(data))
            print("train.class_weights: median frequency, " + ", ".join(
                f"{c} {w:.2f}" for c, w in zip(data.classes, weight.tolist())), file=sys.stderr)
        return SegmentationLoss(IGNORE_INDEX, cfg.train.label_smoothing if train else 0.0, weight)

    def meter(self, spec: Network, dataset=None) -> SegmentationMeter:
        return SegmentationMeter(spec.num_classes, IGNORE_INDEX)

    def headline(self, summary: dict) -> str:
        return (f"{summary['images']} images ({summary['pixels']:,} labelled pixels): mIoU "
                f"{percent(summary['miou'])}%, pixel accuracy {percent(summary['pixel_accuracy'])}%, mean class "
                f"accuracy {percent(summary['mean_class_accuracy'])}%"
                + (f", loss {summary['loss']:.4f}" if summary["loss"] is not None else ""))

    def per_class(self, summary: dict) -> tuple[str, dict]:
        return "IoU %", summary["iou"]
