"""A registered model as an ``nn.Module``: the torch half of the registry, kept apart so that listing and
looking up models (``registry``) imports without torch."""

from __future__ import annotations

from torch import nn

from ..nn import build_model
from .registry import get_arch


def create_model(name: str, *, num_classes: int | None = None, **build_kwargs) -> nn.Module:
    """Build a registered model. ``build_kwargs`` go to ``edgenas.nn.build_model``."""
    return build_model(get_arch(name, num_classes), **build_kwargs)
