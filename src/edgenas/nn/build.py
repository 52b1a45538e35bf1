"""The one dispatcher from a spec to its model, above the three families (detectron2's meta_arch/build.py)."""

from __future__ import annotations

from ..spec import Arch, Detector, Network
from .detector import DetectorModel
from .model import ClassificationModel
from .network import NetworkModel


def build_model(spec: Arch | Network | Detector, *, output_stride: int | None = None, gc_mode: str = "native",
                padding: str | None = None) -> ClassificationModel | NetworkModel | DetectorModel:
    """Build the model a spec describes: an ``Arch`` gives a ``ClassificationModel``, a ``Network`` a
    ``NetworkModel``, a ``Detector`` a ``DetectorModel``. Every option reaches every family.

    Args:
        output_stride: cap an ``Arch`` backbone's stride at 8, 16 or 32 with dilation. A ``Network`` carries
            its own (its ``output_stride`` field) and a ``Detector`` reads fixed taps: giving one for them is
            an error, not silently dropped.
        gc_mode: ``"native"`` grouped convs, or ``"split"`` (slice -> conv -> concat, Google's portable form);
            same weights, same outputs.
        padding: ``"symmetric"`` or ``"tf"`` (TF's 'same' for strided convs); None: the spec's own
            ``padding`` field (an ``Arch`` has none: symmetric).
    """
    if isinstance(spec, (Network, Detector)):
        if output_stride is not None:
            raise ValueError(f"output_stride: a {type(spec).__name__} fixes its own feature strides; "
                             "set it in the spec, not as a build option")
        model_cls = DetectorModel if isinstance(spec, Detector) else NetworkModel
        return model_cls(spec, gc_mode=gc_mode, padding=padding)
    if isinstance(spec, Arch):
        return ClassificationModel(spec, output_stride=output_stride, gc_mode=gc_mode, padding=padding or "symmetric")
    raise TypeError(f"build_model: expected an Arch, Network or Detector, got {type(spec).__name__}")
