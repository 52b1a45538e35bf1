"""Named architectures (the zoo) and the registry. ``create_model`` needs torch and loads on first use, so
listing and looking up models, and the spec tables the search spaces read, stay torch-free."""

import importlib

from .registry import MODELS, ModelCard, Published, get_arch, list_models, model_card


def __getattr__(name):
    if name == "create_model":
        return importlib.import_module("edgenas.models.create").create_model
    raise AttributeError(f"module 'edgenas.models' has no attribute {name!r}")


__all__ = ["MODELS", "ModelCard", "Published", "create_model", "get_arch", "list_models", "model_card"]
