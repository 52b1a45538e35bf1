"""Classification: an ``Arch`` adapted to the dataset (``train.setup``), label-smoothed cross-entropy, top-1."""

from __future__ import annotations

from torch import nn

from ..eval.metrics import ClassificationMeter
from ..export import ExportError, export
from .base import BaseTask, Loss
from .parity import parity_data


class ClassificationTask(BaseTask):
    name = "classification"
    quality_label = "top-1"
    record_keys = {"top1": "top1", "top5": "top5"}  # val_top1, val_top5: docs and tests read these names
    ema_keys = ("top1",)

    def spec(self, cfg):
        from ..train.setup import run_arch

        return run_arch(cfg)

    def dataset(self, cfg, spec, split: str):
        from ..train.setup import dataset

        return dataset(cfg, spec, split)

    def datasets(self, cfg, spec) -> tuple:
        from ..train.setup import datasets

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

    def loss(self, cfg, train: bool = True) -> Loss:
        # evaluation reports the plain cross-entropy, so validation losses compare across smoothing settings
        return nn.CrossEntropyLoss(label_smoothing=cfg.train.label_smoothing if train else 0.0)

    def meter(self, spec, dataset=None) -> ClassificationMeter:
        return ClassificationMeter(spec.num_classes)

    def headline(self, summary: dict) -> str:
        return (f"{summary['images']} images: top-1 {summary['top1']:.2f}%, top-5 {summary['top5']:.2f}%, "
                f"loss {summary['loss']:.4f}")

    def per_class(self, summary: dict) -> tuple[str, dict]:
        return "accuracy %", summary["per_class"]
