"""The model registry: one dict of named architectures; a duplicate name is an error, not a warning.

Listing, looking up and counting a model needs only the spec (no torch); ``create_model``
(``models/create.py``) builds it.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Callable

from ..spec import Arch, Detector, Network
from ..spec.errors import UnknownName
from . import detection, edgetpu_v1, edgetpu_v2, mobilenet, segmentation


@dataclass(frozen=True)
class Published:
    """A figure the model's authors published, with where it comes from."""

    top1: float | None  # ImageNet top-1, %
    note: str  # precision and protocol, e.g. "int8 TFLite"
    source: str
    params: float | None = None  # millions, as published
    macs: float | None = None  # millions, as published
    latency_ms: float | None = None
    latency_device: str = ""
    miou: float | None = None  # segmentation: mIoU, %, on the protocol ``note`` names
    miou_fused: float | None = None  # the same checkpoint served with the fused-argmax tail
    map: float | None = None  # detection: COCO mAP@[.5:.95], %

    @property
    def quality(self) -> str:
        if self.top1 is not None:
            return f"{self.top1:.2f} top-1"
        if self.map is not None:
            return f"{self.map:.2f} mAP"
        return f"{self.miou:.2f} mIoU" if self.miou is not None else "-"


@dataclass(frozen=True)
class ModelCard:
    name: str
    family: str
    build_arch: Callable[..., Arch | Network | Detector]  # num_classes -> the spec of the card's task
    default_classes: int
    published: Published | None = None
    task: str = "classification"


_EDGETPU_README = "tensorflow/models official/projects/edgetpu/vision/README.md"
_V2_PUBLISHED = {"tiny": (74.66, 0.78), "xs": (75.79, 0.82), "s": (77.36, 1.03), "m": (78.43, 1.35),
                 "l": (79.00, 1.64)}
_V1_PUBLISHED = {"075": (73.5, 0.79, 2.9, 624), "100": (75.6, 0.92, 4.0, 990), "125": (77.06, 1.20, None, None),
                 "150": (75.9, 1.42, None, None), "175": (78.6, 1.93, None, None)}


def _cards() -> list[ModelCard]:
    cards = []
    for v, (top1, ms) in _V2_PUBLISHED.items():
        cards.append(ModelCard(
            f"mobilenet_edgetpu_v2_{v}", "MobileNetEdgeTPUV2",
            lambda num_classes=1001, v=v: edgetpu_v2.mobilenet_edgetpu_v2(v, num_classes), 1001,
            Published(top1, "int8 TFLite, 224", _EDGETPU_README, latency_ms=ms, latency_device="Pixel 6 Edge TPU")))
    for tag, dm in edgetpu_v1.DEPTH_MULTIPLIERS.items():
        top1, ms, params, macs = _V1_PUBLISHED[tag]
        cards.append(ModelCard(
            f"mobilenet_edgetpu_{tag}", "MobileNetEdgeTPU",
            lambda num_classes=1001, dm=dm: edgetpu_v1.mobilenet_edgetpu(dm, num_classes), 1001,
            Published(top1, "int8 TFLite, 224", _EDGETPU_README + "; research/slim/nets/mobilenet/README.md",
                      params, macs, ms, "Pixel 6 Edge TPU")))
    slim = "tensorflow/models research/slim/nets/mobilenet/README.md"
    cards += [
        ModelCard("mobilenet_v2", "MobileNetV2", mobilenet.mobilenet_v2, 1000,
                  Published(71.8, "float, 224", slim, 3.47, 300, 73.8, "Pixel 1 CPU")),
        ModelCard("mobilenet_v3_large", "MobileNetV3", mobilenet.mobilenet_v3_large, 1000,
                  Published(75.2, "float, 224", slim, 5.4, 217, 51.2, "Pixel 1 CPU")),
        ModelCard("mobilenet_v3_small", "MobileNetV3", mobilenet.mobilenet_v3_small, 1000,
                  Published(67.5, "float, 224", slim, 2.9, 66, 15.8, "Pixel 1 CPU")),
    ]
    return cards + _segmentation_cards() + _detection_cards()


def _segmentation_cards() -> list[ModelCard]:
    """Reference 4.4: int8, 512 x 512, ADE20K-32 (31 scored classes); mIoU with and without fused argmax."""
    note, src, cards = "int8 TFLite, 512, ADE20K-32", _EDGETPU_README + "; TF-Hub deeplab-edgetpu", []
    for v, (params, miou, fused) in {"xs": (3.6, 56.02, 56.00), "s": (5.2, 59.43, 59.41),
                                     "m": (7.7, 59.81, 59.79)}.items():
        cards.append(ModelCard(
            f"deeplabv3plus_mobilenet_edgetpu_v2_{v}", "DeepLabv3+",
            lambda num_classes=32, v=v: segmentation.deeplabv3plus(
                edgetpu_v2.mobilenet_edgetpu_v2(v), f"deeplabv3plus_mobilenet_edgetpu_v2_{v}", num_classes), 32,
            Published(None, note, src, params=params, miou=miou, miou_fused=fused), task="segmentation"))
    cards.append(ModelCard(
        "deeplabv3plus_mobilenet_v2", "DeepLabv3+",
        lambda num_classes=32: segmentation.deeplabv3plus(mobilenet.mobilenet_v2(), "deeplabv3plus_mobilenet_v2",
                                                          num_classes), 32,
        Published(None, note, src, params=2.34, miou=54.06), task="segmentation"))
    cards.append(ModelCard(
        "deeplab_mobilenet_edgetpu_slim", "EdgeTPU-DeepLab",
        segmentation.deeplab_edgetpu_slim, segmentation.CITYSCAPES,
        Published(None, "uint8 TFLite, 513, Cityscapes val (19 classes)",
                  "tensorflow/models research/deeplab/g3doc/model_zoo.md (EdgeTPU-DeepLab-slim)"),
        task="segmentation"))
    src = _EDGETPU_README + "; TF-Hub autoseg-edgetpu"
    for v, pub in {"xs": Published(None, note, src, params=2.9, miou=59.64, miou_fused=59.62),
                   "s": Published(None, note, src, params=3.1, miou=61.31, miou_fused=61.28), "m": None}.items():
        cards.append(ModelCard(f"autoseg_edgetpu_{v}", "Autoseg-EdgeTPU",
                               lambda num_classes=32, v=v: segmentation.autoseg_edgetpu(v, num_classes), 32, pub,
                               task="segmentation"))
    return cards


def _detection_cards() -> list[ModelCard]:
    """Reference 5.3: the TF1 config's header (COCO17 val, 320 x 320, params and MACs as published)."""
    src = "tensorflow/models research/object_detection/configs/tf1/ssd_spaghettinet_edgetpu_320x320_coco17_sync_4x4"
    published = {"s": (26.2, 3.4, 1000), "m": (27.4, 4.1, 1250), "l": (28.02, 5.7, 1570)}
    return [ModelCard(f"spaghettinet_edgetpu_{v}", "SpaghettiNet-EdgeTPU",
                      lambda num_classes=90, v=v: detection.spaghettinet_edgetpu(v, num_classes), 90,
                      Published(None, "COCO17 val, 320, SSDLite head", src, params=p, macs=m, map=ap),
                      task="detection")
            for v, (ap, p, m) in published.items()] + [
        ModelCard("ssdlite_mobilenet_v2", "SSDLite", detection.ssdlite_mobilenet_v2, 90,
                  Published(None, "COCO test-dev, 320; params/MACs at 80 classes", "Sandler et al. 2018, "
                            "MobileNetV2, Table 6", params=4.3, macs=800, map=22.1), task="detection"),
        ModelCard("ssdlite_mobilenet_edgetpu_v2_s", "SSDLite", detection.ssdlite_mobilenet_edgetpu_v2_s, 90,
                  task="detection")]


def _index(cards: list[ModelCard]) -> dict[str, ModelCard]:
    out: dict[str, ModelCard] = {}
    for card in cards:
        if card.name in out:
            raise ValueError(f"model {card.name!r} is registered twice")
        out[card.name] = card
    return out


MODELS: dict[str, ModelCard] = _index(_cards())


def list_models(pattern: str = "*", task: str | None = None) -> list[str]:
    """Registered model names matching a shell-style ``pattern`` (and ``task``), in registration order."""
    return [name for name, card in MODELS.items()
            if fnmatch.fnmatch(name, pattern) and (task is None or card.task == task)]


def model_card(name: str) -> ModelCard:
    if name not in MODELS:
        close = fnmatch.filter(MODELS, f"*{name}*")[:5]
        hint = f"; did you mean {', '.join(close)}?" if close else "; `edgenas models` lists them"
        raise UnknownName(f"unknown model {name!r}{hint}")
    return MODELS[name]


def get_arch(name: str, num_classes: int | None = None) -> Arch | Network | Detector:
    """The registered model's spec (an ``Arch`` for classification, a ``Network`` for segmentation, a
    ``Detector`` for detection), with its published class count unless ``num_classes`` is given."""
    card = model_card(name)
    return card.build_arch(num_classes=num_classes or card.default_classes)
