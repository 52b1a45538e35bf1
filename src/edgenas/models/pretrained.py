"""``model.pretrained``: a model started from weights trained elsewhere, and one line that says what loaded.

Two kinds of file: Google's TFLite of the model's own network (``.tflite``, imported by ``from_tflite``; every
tensor whose shape fits is copied), and timm's ImageNet state dict of the model's backbone (``.safetensors``
or a torch file; the backbone's tensors land in ``backbone.*``, timm's classifier head is left out). With a
class map, the new head's output layer starts from the pretrained head's rows (``class_map``). A file that
fits nothing is an error, never a silent fresh start.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from ..errors import EdgenasError
from .class_map import ClassMap, init_classifier, load_class_map
from .tflite_import import from_tflite
from .timm_weights import backbone_state, read_state_dict


class PretrainedError(EdgenasError):
    """Pretrained weights that do not fit the model; the message names the file."""


def is_tflite(path: str | Path) -> bool:
    return Path(path).suffix.lower() == ".tflite"


def output_layer(model: nn.Module) -> tuple[str, nn.Module]:
    """The head's last conv or linear: the layer whose rows are the classes."""
    found = [(f"head.{n}", m) for n, m in model.head.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    if not found:
        raise PretrainedError(f"{type(model).__name__}: its head has no conv or linear output layer")
    return found[-1]


def _source_state(model: nn.Module, path: str | Path) -> tuple[dict[str, torch.Tensor], list[str], str]:
    """(tensors under our keys, source tensors with no place in ``model``, what the file is)."""
    if is_tflite(path):
        return from_tflite(_name(model), path).state_dict(), [], "Google's TFLite"
    return (*backbone_state(model, read_state_dict(path), str(path)), "timm's backbone")


def load_pretrained(model: nn.Module, path: str | Path, class_map: str | Path | ClassMap | None = None,
                    classes: Sequence[str] | None = None) -> str:
    """Copy every tensor of ``path`` whose key and shape fit ``model``; with ``class_map`` (and the data's
    ``classes``), start the head's output layer from the mapped pretrained rows. Returns one line."""
    source, unused, what = _source_state(model, path)
    target = model.state_dict()
    loaded = [k for k, v in target.items() if k in source and source[k].shape == v.shape]
    if not loaded:
        raise PretrainedError(f"model.pretrained: {path}: no tensor of it fits {_name(model)} ({what}); is it "
                              "the weights of another network?")
    model.load_state_dict({**target, **{k: source[k] for k in loaded}})
    fresh = [k for k in target if k not in loaded]
    mapped = ""
    if class_map is not None:
        cmap = class_map if isinstance(class_map, ClassMap) else load_class_map(class_map, classes)
        key, layer = output_layer(model)
        if f"{key}.weight" not in source:
            raise PretrainedError(f"model.class_map: {path} has no classifier {key} to map from ({what})")
        init_classifier(layer, source[f"{key}.weight"], source[f"{key}.bias"], cmap)
        fresh = [k for k in fresh if not k.startswith(key + ".")]
        mapped = f"; head rows from {len(cmap.mapped)} of {len(cmap.classes)} classes through {cmap.path}"
    modules = sorted({k.rsplit(".", 2)[0] if k.count(".") > 1 else k for k in fresh})
    shown = ", ".join(modules[:4]) + (f" and {len(modules) - 4} more" if len(modules) > 4 else "")
    return (f"model.pretrained: {len(loaded)} of {len(target)} tensors from {path} ({what}){mapped}; "
            f"fresh: {shown or 'nothing'}" + (f"; {len(unused)} of its tensors unused" if unused else ""))


def _name(model: nn.Module) -> str:
    return model.network.name if hasattr(model, "network") else getattr(getattr(model, "arch", None), "name",
                                                                       type(model).__name__)
