"""Segmentation metrics from one confusion matrix: per-class IoU, mIoU, pixel accuracy, mean class accuracy.

Convention (mmsegmentation's ``total_area_to_metrics``, and tf.keras ``MeanIoU`` as TF Model Garden uses it):
pixels whose label is the ignore index are dropped before counting; a class's IoU is
intersection / union over the whole evaluation set, NaN where the union is 0 (the class is in neither the
labels nor the predictions), and the mean leaves NaNs out. So a class that is predicted but never labelled
counts with IoU 0. Class accuracy is recall (NaN where the class is never labelled); pixel accuracy is over
all scored pixels.

The matrix is a plain int64 tensor (rows = label, columns = prediction), so partial results from several
processes or shards combine by adding matrices (``merge``, ``+``, ``all_reduce``).
"""

from __future__ import annotations

import math

import torch


class SegConfusion:
    def __init__(self, num_classes: int, ignore_index: int = 255, device: torch.device | str | None = None):
        if num_classes < 1:
            raise ValueError(f"num_classes must be at least 1, got {num_classes}")
        self.num_classes, self.ignore_index = num_classes, ignore_index
        self.matrix = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)

    def reset(self) -> None:
        self.matrix.zero_()

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """``pred``: class ids shaped like ``target``, or logits with classes in dim 1 (N, C, H, W)."""
        if pred.dim() == target.dim() + 1:
            if pred.shape[1] != self.num_classes:
                raise ValueError(f"logits have {pred.shape[1]} classes, the matrix {self.num_classes}")
            pred = pred.argmax(1)
        if pred.shape != target.shape:
            raise ValueError(f"prediction {tuple(pred.shape)} and label {tuple(target.shape)} "
                             "differ in shape")
        keep = target != self.ignore_index
        t, p = target[keep].to(torch.int64), pred[keep].to(torch.int64)
        n = self.num_classes
        for name, ids in (("label", t), ("prediction", p)):
            bad = (ids < 0) | (ids >= n)
            if bad.any():
                raise ValueError(f"{name} holds class {int(ids[bad][0])}, outside 0..{n - 1} "
                                 f"(and not the ignore index {self.ignore_index})")
        counts = torch.bincount(t * n + p, minlength=n * n).view(n, n)
        self.matrix += counts.to(self.matrix.device)

    def merge(self, other: "SegConfusion") -> "SegConfusion":
        if other.num_classes != self.num_classes:
            raise ValueError(f"cannot merge {other.num_classes} classes into {self.num_classes}")
        self.matrix += other.matrix.to(self.matrix.device)
        return self

    def __add__(self, other: "SegConfusion") -> "SegConfusion":
        out = SegConfusion(self.num_classes, self.ignore_index, self.matrix.device)
        return out.merge(self).merge(other)

    def all_reduce(self) -> None:
        """Sum the matrices over data-parallel processes (a no-op outside torch.distributed)."""
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(self.matrix)

    # -- metrics (float64; NaN where undefined) --
    def intersection_union(self) -> tuple[torch.Tensor, torch.Tensor]:
        m = self.matrix.to(torch.float64)
        inter = m.diag()
        return inter, m.sum(0) + m.sum(1) - inter

    def iou(self) -> torch.Tensor:
        inter, union = self.intersection_union()
        return torch.where(union > 0, inter / union.clamp(min=1), torch.nan)

    def miou(self) -> float:
        return _nanmean(self.iou())

    def class_accuracy(self) -> torch.Tensor:
        m = self.matrix.to(torch.float64)
        labelled = m.sum(1)
        return torch.where(labelled > 0, m.diag() / labelled.clamp(min=1), torch.nan)

    def mean_class_accuracy(self) -> float:
        return _nanmean(self.class_accuracy())

    def pixel_accuracy(self) -> float:
        total = int(self.matrix.sum())
        return float(self.matrix.diag().sum()) / total if total else math.nan

    def summary(self, classes: list[str] | None = None) -> dict:
        """Percentages, as ``ClassificationMeter.summary``; a class with no pixels either way is None."""
        names = classes or [str(i) for i in range(self.num_classes)]
        pct = (lambda v: None if math.isnan(v) else round(v * 100, 2))
        return {"miou": pct(self.miou()), "pixel_accuracy": pct(self.pixel_accuracy()),
                "mean_class_accuracy": pct(self.mean_class_accuracy()), "pixels": int(self.matrix.sum()),
                "iou": {n: pct(v) for n, v in zip(names, self.iou().tolist())},
                "confusion": self.matrix.tolist()}


def _nanmean(values: torch.Tensor) -> float:
    valid = ~values.isnan()
    return float(values[valid].mean()) if valid.any() else math.nan


class SegmentationMeter:
    """What an evaluation pass of a segmentation model reports: the confusion matrix of its predictions at the
    label's size, the mean loss per image and the image count; ``summary`` adds the headline ``quality``
    (mIoU %), as ``ClassificationMeter`` does with top-1."""

    def __init__(self, num_classes: int, ignore_index: int = 255):
        self.confusion = SegConfusion(num_classes, ignore_index)
        self.loss_sum, self.count, self.scored_loss = 0.0, 0, False

    def update(self, logits: torch.Tensor, target: torch.Tensor, loss: float | None = None) -> None:
        """``logits`` (N, C, h, w) at the head's stride are resized to the label's (N, H, W) size first, as
        the loss does (Google's ``use_groundtruth_dimension``). A class map (N, h, w), what a serving tail
        gives, is scored as it is, resized (nearest) to the label's size where it differs."""
        if logits.dim() == target.dim():
            pred = logits[:, None].float()
            if tuple(pred.shape[-2:]) != tuple(target.shape[-2:]):
                pred = torch.nn.functional.interpolate(pred, size=tuple(target.shape[-2:]), mode="nearest")
            self.confusion.update(pred[:, 0].round().long(), target)
        else:
            self.confusion.update(resize_logits(logits, target.shape[-2:]).argmax(1), target)
        self.count += len(target)
        if loss is not None:
            self.loss_sum += loss * len(target)
            self.scored_loss = True

    def all_reduce(self) -> None:
        import torch.distributed as dist

        self.confusion.all_reduce()
        if dist.is_available() and dist.is_initialized():
            stats = torch.tensor([self.count, self.loss_sum], dtype=torch.float64)
            dist.all_reduce(stats)
            self.count, self.loss_sum = int(stats[0]), float(stats[1])

    def summary(self, classes: list[str] | None = None) -> dict:
        out = self.confusion.summary(classes)
        # an empty evaluation (no scored pixel) has no mIoU: 0, not None, so records stay numbers
        loss = self.loss_sum / max(self.count, 1) if self.scored_loss or not self.count else None
        return {"quality": out["miou"] or 0.0, **out, "loss": loss,
                "images": self.count}


def resize_logits(logits: torch.Tensor, size) -> torch.Tensor:
    """Logits bilinearly resized to ``size`` (H, W) with half-pixel centres (TF's ``tf.image.resize``)."""
    if tuple(logits.shape[-2:]) == tuple(size):
        return logits
    return torch.nn.functional.interpolate(logits, size=tuple(size), mode="bilinear", align_corners=False)
