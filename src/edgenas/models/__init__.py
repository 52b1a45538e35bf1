"""Named architectures (the zoo) and the registry."""

from .registry import MODELS, ModelCard, Published, create_model, get_arch, list_models, model_card

__all__ = ["MODELS", "ModelCard", "Published", "create_model", "get_arch", "list_models", "model_card"]
