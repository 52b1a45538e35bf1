"""Named architectures (the zoo) and the registry."""

import importlib

from .registry import MODELS, ModelCard, Published, get_arch, list_models, model_card


def __getattr__(name):
    # ``create_model`` needs torch; it loads on first use so the spec tables (``models.segmentation``, which
    # the search spaces read) and the registry import without it.
    if name == "create_model":
        return importlib.import_module("edgenas.models.create").create_model
    raise AttributeError(f"module 'edgenas.models' has no attribute {name!r}")


__all__ = ["MODELS", "ModelCard", "Published", "create_model", "get_arch", "list_models", "model_card"]
