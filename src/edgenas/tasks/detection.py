"""Detection: a ``Detector`` (SpaghettiNet graph + SSD head) trained with TF OD API's SSD loss (sigmoid focal
+ smooth L1 over matched anchors, normalised by the matches) and scored with COCO's own evaluator.

Batches are (images, a list of target dicts): boxes differ in number per image. The meter runs the SSD
post-processing (sigmoid, decode, class-aware NMS at IoU 0.6, 100 detections) on the model's raw heads and
hands the detections to ``DetectionMeter`` (pycocotools); mAP@[.5:.95] is the headline figure.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..data import detection as det
from ..data.det_transforms import build_det_transform, collate_detection
from ..det import SSDLoss, detector_anchors, postprocess
from ..errors import DataError
from ..eval.det_metrics import DetectionMeter
from ..models.tflite_import import SUPPORTED
from ..export.detection import export_detector
from ..spec import Detector, SpecError
from .base import BaseTask, Loss, percent, trained_spec, training_changes
from .parity import parity_data

NUM_CLASSES = {"composite": 10, "coco": 90}  # foreground classes; composite: the 10 Fashion-MNIST classes
COMPOSITE_SCENES = {"train": 1000, "val": 200}
COMPOSITE_VAL_SEED = 1_000_003  # as segmentation's: every train.seed is scored on the same unseen scenes


def detector(cfg) -> Detector:
    """The detector to train: the registered model or file, with the dataset's classes at ``model.input_size``
    (default: its deployment size) and the config's BatchNorm momentum."""
    m = cfg.model

    def changes(spec: Detector) -> dict:
        if m.pretrained:  # Google's TFLite files that import hold a classifier or a segmentation network
            raise SpecError(f"model.pretrained: {m.pretrained}: TFLite weights import into "
                            f"{', '.join(SUPPORTED)}, not into a detector; leave model.pretrained unset")
        classes = m.num_classes or NUM_CLASSES[cfg.data.dataset]
        return {"input_size": m.input_size or spec.input_size, **training_changes(spec, cfg.train, drop_path=False),
                "head": spec.head.model_copy(update={"num_classes": classes})}

    return trained_spec(cfg, Detector, changes)


class DetectionLoss(nn.Module):
    """``SSDLoss`` over the spec's anchors, called as (model outputs, targets) like every task's loss."""

    def __init__(self, spec: Detector):
        super().__init__()
        self.ssd = SSDLoss(spec.num_classes)
        self.register_buffer("anchors", detector_anchors(spec), persistent=False)

    def forward(self, outputs: tuple[torch.Tensor, torch.Tensor], targets: list[dict]) -> torch.Tensor:
        cls, box = outputs
        pairs = [(t["boxes"].to(cls.device), t["labels"].to(cls.device)) for t in targets]
        return self.ssd(cls, box, self.anchors.to(cls.device), pairs)["total"]


class DetectionTaskMeter:
    """Post-processes the raw heads, then COCO's evaluator."""

    def __init__(self, spec: Detector, ground_truth):
        self.anchors, self.coco = detector_anchors(spec), DetectionMeter(ground_truth)

    def update(self, outputs, targets: list[dict], loss: float | None = None) -> None:
        self.coco.update(postprocess(*outputs, self.anchors), targets, loss)

    def all_reduce(self) -> None:
        self.coco.all_reduce()

    def summary(self, classes: list[str] | None = None) -> dict:
        return self.coco.summary(classes)


class DetectionTask(BaseTask):
    name = "detection"
    quality_label = "mAP"
    parity_images = 8  # a search checks its exported winner on this many validation images (large ones)
    record_keys = {"map": "map", "ap50": "ap50", "ap75": "ap75"}
    ema_keys = ("map",)

    def spec(self, cfg) -> Detector:
        return detector(cfg)

    def dataset(self, cfg, spec: Detector, split: str):
        """Training: flip, SSD random crop and a resize to the input size (``augment: basic``), or the resize
        alone (``none``); validation: the resize."""
        d, train = cfg.data, split == "train"
        p, size = spec.preprocess, spec.input_size
        basic = train and d.augment == "basic"
        transform = build_det_transform(train, size, p.mean, p.std, flip=basic, crop=basic)
        seed, subset, root = cfg.train.seed, d.train_subset if train else d.val_subset, Path(d.data_dir)
        if d.dataset == "composite":
            return det.composite_detection(subset or COMPOSITE_SCENES[split], size,
                                           seed if train else COMPOSITE_VAL_SEED,
                                           split="train" if train else "test", data_dir=root, transform=transform)
        if d.dataset == "coco":
            return det.coco128(root, "train" if train else "val", transform, seed=seed, subset=subset)
        raise DataError(f"data.dataset: {d.dataset!r} is not a detection dataset")

    def collate(self, batch):
        return collate_detection(batch)

    def loss(self, cfg, train: bool = True, data=None) -> Loss:
        return DetectionLoss(detector(cfg))

    def meter(self, spec: Detector, dataset=None) -> DetectionTaskMeter:
        if dataset is None:
            raise ValueError("a detection meter needs the evaluated dataset's ground truth")
        return DetectionTaskMeter(spec, dataset.coco_ground_truth())

    def export(self, model, fmt: str, out, cfg, spec: Detector, *, check: int, calibration: int,
               tail: str | None = None) -> tuple[dict, str]:
        """ONNX with decoding and NMS in the graph, or TFLite raw heads; checked on validation images."""
        if tail:
            raise SpecError("--tail: detectors have no serving tail (NMS is inside the ONNX graph)")
        images, _, calib = parity_data(self, cfg, spec, check, calibration)
        report = export_detector(model, fmt, out, images, calib)
        check = (f"raw heads within {report.max_abs_diff:.1e} of PyTorch's" if report.agreement is None else
                 f"{report.agreement:.2%} of PyTorch's detections reproduced")
        return report.to_dict(), (f"wrote {report.path} ({report.size_bytes / 1e6:.2f} MB): NMS {report.nms}, "
                                  f"{check} on {report.images} validation images")

    def headline(self, summary: dict) -> str:
        return (f"{summary['images']} images: mAP {percent(summary['map'])}%, AP50 {percent(summary['ap50'])}%, "
                f"AP75 {percent(summary['ap75'])}%, AP small/medium/large {percent(summary['ap_small'])}/"
                f"{percent(summary['ap_medium'])}/{percent(summary['ap_large'])}%, loss {summary['loss']:.4f}")

    def per_class(self, summary: dict) -> tuple[str, dict]:
        return "AP %", summary["ap"]
