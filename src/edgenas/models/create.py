"""``create_model``: a registered model as modules. Apart from the registry, which lists and counts without
torch."""

from __future__ import annotations

from torch import nn

from ..nn import build_model
from .registry import get_arch


def create_model(name: str, *, num_classes: int | None = None, output_stride: int | None = None,
                 gc_mode: str = "native", padding: str | None = None) -> nn.Module:
    """Build a registered model (a ``ClassificationModel``, ``NetworkModel`` or ``DetectorModel``); the
    options are ``edgenas.nn.build_model``'s."""
    return build_model(get_arch(name, num_classes), output_stride=output_stride, gc_mode=gc_mode, padding=padding)
