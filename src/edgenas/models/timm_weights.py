"""Load timm's MobileNetEdgeTPU(V2) state dicts into edgenas models.

timm's definitions differ from Google's in four ways (reference 1.7), and a model that loads timm weights
must reproduce timm's variant exactly, so ``timm_arch`` selects them explicitly: a ReLU after the stage-0
1x1 projection, 1000 classes, a 3x3 stem for XS, and PyTorch's BatchNorm defaults (eps 1e-5, momentum 0.1).
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import torch

from ..errors import EdgenasError
from ..io import load_torch
from ..nn import ClassificationModel, build_model
from ..nn.blocks import ConvBlock, FusedBottleneck, InvertedBottleneck
from ..spec import Act, Conv, Norm, Preprocess, Stage
from ..spec.errors import UnknownName
from .registry import get_arch

TIMM_MODELS = ("mobilenet_edgetpu_v2_xs", "mobilenet_edgetpu_v2_s", "mobilenet_edgetpu_v2_m",
               "mobilenet_edgetpu_v2_l", "mobilenet_edgetpu_100")

# timm's pretrained config for v2_m (ra4_e3600_r224_in1k): inception mean/std, crop 0.9, bicubic; its
# untrained configs keep timm's ImageNet defaults.
_TIMM_PREPROCESS = {
    "mobilenet_edgetpu_v2_m": Preprocess(mean=(0.5,) * 3, std=(0.5,) * 3, crop_pct=0.9, interpolation="bicubic"),
}
_IMAGENET = Preprocess(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), crop_pct=0.9,
                       interpolation="bicubic")

# Our module names for timm's, per block module.
_BLOCK_KEYS = {
    ConvBlock: {"conv": "conv", "bn1": "bn"},
    FusedBottleneck: {"conv_exp": "expand.conv", "bn1": "expand.bn", "conv_pwl": "project.conv",
                      "bn2": "project.bn"},
    InvertedBottleneck: {"conv_pw": "expand.conv", "bn1": "expand.bn", "conv_dw": "spatial.conv",
                         "bn2": "spatial.bn", "conv_pwl": "project.conv", "bn3": "project.bn"},
}
_TOP_KEYS = {"conv_stem": "backbone.stem.conv", "bn1": "backbone.stem.bn", "conv_head": "head.conv.conv",
             "bn2": "head.conv.bn", "classifier": "head.classifier"}


class WeightLoadError(EdgenasError):
    """A state dict does not fit the model; the message lists what is missing, unexpected or mis-shaped."""


def timm_arch(name: str, num_classes: int = 1000):
    """The ``Arch`` of timm's definition of ``name`` (one of ``TIMM_MODELS``)."""
    if name not in TIMM_MODELS:
        raise UnknownName(f"timm defines no {name!r} with this layout; supported: {', '.join(TIMM_MODELS)}")
    arch = get_arch(name, num_classes)
    first = arch.stages[0]
    stage0 = Stage(out_channels=first.out_channels, blocks=(Conv(kernel_size=1, act=Act.RELU),))
    stem = arch.stem.model_copy(update={"kernel_size": 3}) if name.endswith("_xs") else arch.stem
    return arch.replace(name=f"{name}.timm", stem=stem, stages=(stage0, *arch.stages[1:]),
                        norm=Norm(eps=1e-5, momentum=0.1), preprocess=_TIMM_PREPROCESS.get(name, _IMAGENET))


def _key_map(model: ClassificationModel) -> dict[str, str]:
    """timm key -> our key for every parameter and buffer."""
    ours = {**model.state_dict()}
    mapping = {}
    for s, stage in enumerate(model.backbone.stages):
        for b, block in enumerate(stage):
            for timm_name, our_name in _BLOCK_KEYS[type(block)].items():
                prefix = f"backbone.stages.{s}.{b}.{our_name}."
                for key in ours:
                    if key.startswith(prefix):
                        mapping[f"blocks.{s}.{b}.{timm_name}.{key[len(prefix):]}"] = key
    for timm_name, our_name in _TOP_KEYS.items():
        for key in ours:
            if key.startswith(our_name + "."):
                mapping[f"{timm_name}.{key[len(our_name) + 1:]}"] = key
    return mapping


def read_state_dict(source: str | Path | Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A state dict from a mapping, a ``.safetensors`` file, or a torch file (loaded with weights_only); a
    file that is not one raises ``WeightLoadError`` naming it and what is wrong."""
    if isinstance(source, Mapping):
        return dict(source)
    path = Path(source)
    if path.suffix == ".safetensors" and path.is_file():
        state = _read_safetensors(path)
    else:
        state = load_torch(path, WeightLoadError, "weights file")
        state = state.get("state_dict", state) if isinstance(state, dict) else state
    if not isinstance(state, dict):
        raise WeightLoadError(f"{path}: holds a {type(state).__name__}, not a state dict")
    if {"arch", "model"} <= set(state):
        raise WeightLoadError(f"{path}: an edgenas training checkpoint, not timm weights; evaluate it with "
                              f"`edgenas eval {path}`")
    other = next((k for k, v in state.items() if not isinstance(v, torch.Tensor)), None)
    if other is not None:
        raise WeightLoadError(f"{path}: not a state dict ({other!r} holds a {type(state[other]).__name__}, "
                              "not a tensor)")
    return state


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except SafetensorError as err:
        size = path.stat().st_size
        # the format: an 8-byte little-endian header length, that many bytes of JSON, then the tensors
        with open(path, "rb") as f:
            header = int.from_bytes(f.read(8), "little") if size >= 8 else None
        why = ("empty" if size == 0 else "too short for a header" if header is None else
               f"its header claims {header} bytes of the file's {size}: truncated, or not safetensors at all"
               if header > size - 8 else f"unreadable ({err})")
        raise WeightLoadError(f"{path}: not a valid safetensors file ({why})") from None


def _listing(keys, limit: int = 6) -> str:
    keys = sorted(keys)
    return ", ".join(keys[:limit]) + (f" (+{len(keys) - limit} more)" if len(keys) > limit else "")


def backbone_state(model, state: Mapping[str, torch.Tensor], where: str = "state dict"
                   ) -> tuple[dict[str, torch.Tensor], list[str]]:
    """timm's tensors under ``model``'s keys for its backbone (a network's or a classifier's): (the tensors,
    timm's keys with no place in the backbone, e.g. its classifier head). A backbone key timm lacks stays
    out, for the caller to report as fresh."""
    mapping = {k: v for k, v in _key_map(model).items() if v.startswith("backbone.")}
    if not mapping.keys() & state.keys():
        raise WeightLoadError(f"{where}: no key of it is a timm MobileNetEdgeTPU backbone key (such as "
                              f"{next(iter(sorted(mapping)), 'conv_stem.weight')})")
    found = {mapping[k]: (v.float() if v.is_floating_point() else v) for k, v in state.items() if k in mapping}
    return found, sorted(set(state) - set(mapping))


def from_timm(name: str, state_dict: str | Path | Mapping[str, torch.Tensor]) -> ClassificationModel:
    """Build timm's variant of ``name`` and load a timm state dict into it (floats cast to float32).

    The class count is read from ``classifier.weight``. Missing, unexpected and mis-shaped keys raise one
    ``WeightLoadError`` that lists them.
    """
    state = read_state_dict(state_dict)
    where = "state dict" if isinstance(state_dict, Mapping) else str(state_dict)
    if "classifier.weight" not in state:
        raise WeightLoadError(f"{where}: not a timm MobileNetEdgeTPU state dict (no 'classifier.weight')")
    model = build_model(timm_arch(name, num_classes=state["classifier.weight"].shape[0]))
    mapping, ours = _key_map(model), model.state_dict()
    missing = set(mapping) - set(state)
    unexpected = set(state) - set(mapping)
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(ours[mapping[k]].shape)}"
              for k in set(mapping) & set(state) if state[k].shape != ours[mapping[k]].shape]
    problems = [f"missing: {_listing(missing)}" if missing else "",
                f"unexpected: {_listing(unexpected)}" if unexpected else "",
                f"shape mismatch: {_listing(shapes)}" if shapes else ""]
    if any(problems):
        raise WeightLoadError(f"{where}: does not fit timm's {name} layout; "
                              + "; ".join(p for p in problems if p))
    converted = {mapping[k]: (v.float() if v.is_floating_point() else v) for k, v in state.items()}
    model.load_state_dict(converted, strict=True)
    return model
