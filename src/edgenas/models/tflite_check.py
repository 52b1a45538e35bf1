"""Our imported networks against Google's TFLite files, run by LiteRT's own interpreter on the same photos.

Each photo is resized to the network's input (PIL bilinear) and fed to both exactly as the TFLite's input
quantisation defines it: Autoseg-XS takes int8 ``q = pixel - 128`` meaning ``(q + 1) / 127.5``, MobileNet-EdgeTPU
takes uint8 pixels meaning ``(q - 128) / 127``, DeepLab-slim uint8 pixels meaning ``(q - 128) / 128``; our float
model gets those same real values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..nn.blocks import _ResidualBlock
from ..nn.layers import ConvNormAct
from .tflite_graph import read_tflite


def load_photo(path: str | Path, size: int) -> np.ndarray:
    """uint8 HxWx3 RGB, resized (not cropped) to ``size`` x ``size``."""
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB").resize((size, size), Image.BILINEAR), dtype=np.uint8)


def _interpreter(path: str | Path):
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path), num_threads=1)
    it.allocate_tensors()
    return it


@dataclass
class Agreement:
    per_image: list[float] = field(default_factory=list)  # share of pixels (or 1/0 for top-1) that agree
    ours: list[np.ndarray] = field(default_factory=list)
    theirs: list[np.ndarray] = field(default_factory=list)

    @property
    def mean(self) -> float:
        return float(np.mean(self.per_image)) if self.per_image else float("nan")


def _fed(img: np.ndarray, detail: dict) -> tuple[np.ndarray, torch.Tensor]:
    """The file's input for a uint8 photo (int8 files take ``pixel - 128``) and the real values it means,
    which our float model gets: ``(q - zero_point) * scale``."""
    scale, zero_point = detail["quantization"]
    q = (img.astype(np.int16) - 128).astype(np.int8) if detail["dtype"] == np.int8 else img
    real = (q.astype(np.float32) - zero_point) * scale
    return q[None], torch.from_numpy(real).permute(2, 0, 1)[None]


@torch.no_grad()
def seg_agreement(model, tflite: str | Path, photos: list[np.ndarray], tail) -> Agreement:
    """Class maps of ``tail(model(x))`` against the TFLite's output (a class map at its input size), per
    photo; the input as the file's quantisation defines it."""
    it = _interpreter(tflite)
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    result = Agreement()
    for img in photos:
        q, x = _fed(img, inp)
        it.set_tensor(inp["index"], q)
        it.invoke()
        theirs = it.get_tensor(out["index"])[0].astype(np.int64)
        ours = tail(model(x))[0].numpy().astype(np.int64)
        result.per_image.append(float((ours == theirs).mean()))
        result.ours.append(ours)
        result.theirs.append(theirs)
    return result


@torch.no_grad()
def classifier_agreement(model, tflite: str | Path, photos: list[np.ndarray]) -> Agreement:
    """Top-1 of our classifier against the TFLite's, per photo (224 x 224)."""
    it = _interpreter(tflite)
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    result = Agreement()
    for img in photos:
        it.set_tensor(inp["index"], img[None])
        it.invoke()
        theirs = int(it.get_tensor(out["index"])[0].argmax())
        x = torch.from_numpy((img.astype(np.float32) - 128.0) / 127.0).permute(2, 0, 1)[None]
        ours = int(model(x)[0].argmax())
        result.per_image.append(float(ours == theirs))
        result.ours.append(np.array(ours))
        result.theirs.append(np.array(theirs))
    return result


def _fake_quant(t: torch.Tensor, scale: float, zero_point: int, lo: int, hi: int) -> torch.Tensor:
    return (torch.clamp(torch.round(t / scale) + zero_point, lo, hi) - zero_point) * scale


def simulate_quantization(model, tflite: str | Path) -> list:
    """Hooks that round our chain's activations to the TFLite's 8-bit grid where the file stores them:
    every conv output (after its fused activation), every residual sum, the logits. With them, what still
    differs is structure, not arithmetic. Returns the hook handles (``.remove()`` them to undo)."""
    graph = read_tflite(tflite)
    lo, hi = (0, 255) if graph.tensors[graph.inputs[0]].dtype == "UINT8" else (-128, 127)

    def quant_of(op):
        t = graph.tensors[op.outputs[0]]
        return t.scales[0], t.zero_points[0]

    convs = graph.convolutions()
    adds = [op for op in graph.operators if op.op == "ADD"]
    units = [m for m in model.modules() if isinstance(m, ConvNormAct)]  # a network's classifier is one too
    if len(units) + 1 == len(convs):  # a classifier's last layer is a linear
        units.append(model.head.classifier)
    residual = [m for m in model.modules() if isinstance(m, _ResidualBlock) and m.has_residual]
    if len(units) != len(convs) or len(residual) != len(adds):
        raise ValueError(f"{tflite}: {len(convs)} convs and {len(adds)} adds, ours {len(units)} and "
                         f"{len(residual)}: not a chain this simulation can follow")
    handles = []
    for module, op in [*zip(units, convs), *zip(residual, adds)]:
        s, zp = quant_of(op)
        handles.append(module.register_forward_hook(
            lambda _m, _i, out, s=s, zp=zp: _fake_quant(out, s, zp, lo, hi)))
    return handles
