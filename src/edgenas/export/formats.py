"""The export formats, each converted and run once for every task: the task's exporter supplies the module to
convert (a classifier, a serving graph, a detector) and its own parity check of what the run gives back.

``onnx``: ONNX Runtime. ``onnx-int8``: ONNX Runtime's static int8 quantization (QDQ) calibrated on training
images. ``tflite``: LiteRT via litert-torch with NHWC input, run in ai-edge-litert. ``tflite-int8``: litert-torch's
PT2E quantizer, int8 end to end (input and output included).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..io import write_atomic
from .litert import to_tflite, to_tflite_int8
from .onnx import ExportError, ort_session, quantize_int8, to_onnx


@dataclass(frozen=True)
class Format:
    name: str
    suffix: str  # the file's ending when no --out is given

    @property
    def int8(self) -> bool:
        return self.name.endswith("-int8")

    @property
    def litert(self) -> bool:
        return self.name.startswith("tflite")

    @property
    def runtime(self) -> str:
        """What runs the export for its check, as error messages name it."""
        return "LiteRT" if self.litert else "ONNX Runtime"

    def convert(self, module: nn.Module, example: torch.Tensor, calibration: torch.Tensor | None = None, *,
                dynamic_batch: bool = True, calibration_batch: int = 1) -> bytes:
        """The file's bytes of ``module`` (eval mode) traced on ``example`` [1, 3, H, W]. int8 ranges come from
        ``calibration`` images (ONNX: in batches of ``calibration_batch``; LiteRT: one at a time). ONNX gets a
        dynamic batch unless ``dynamic_batch`` is False (a graph whose tail works on one image)."""
        module = module.eval()
        if not self.litert:
            data = to_onnx(module, (example,), dynamic_batch=dynamic_batch)
            return quantize_int8(data, [(b,) for b in calibration.split(calibration_batch)]) if self.int8 else data
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "model.tflite"
            if self.int8:
                to_tflite_int8(module, example, list(calibration.split(1)), path)
            else:
                to_tflite(module, (example,), path)
            return path.read_bytes()

    def run(self, data: bytes, images: torch.Tensor, batch: int = 1) -> list[list[np.ndarray]]:
        """Every output of the file ``data`` on NCHW ``images``: per output, its values batch by batch
        (``batch`` images a run in ONNX Runtime; LiteRT runs one image at a time, as deployed)."""
        if self.litert:
            return run_tflite(data, images)
        session = ort_session(data)
        name = session.get_inputs()[0].name
        runs = [session.run(None, {name: b.numpy()}) for b in images.split(batch)]
        return [list(values) for values in zip(*runs)]


TABLE = {f.name: f for f in (Format("onnx", ".onnx"), Format("onnx-int8", ".int8.onnx"),
                             Format("tflite", ".tflite"), Format("tflite-int8", ".int8.tflite"))}
FORMATS = tuple(TABLE)


def requested(fmt: str, out, images: torch.Tensor, calibration: torch.Tensor | None = None) -> Format:
    """The format ``fmt`` names, once the request can be checked: known, test images to check on, and
    calibration images for an int8 format."""
    if fmt not in TABLE:
        raise ExportError(f"unknown export format {fmt!r}; known: {', '.join(FORMATS)}")
    if not len(images):
        raise ExportError(f"{out}: no test images for the parity check; an unchecked export is not written")
    if TABLE[fmt].int8 and (calibration is None or not len(calibration)):
        raise ExportError(f"{fmt} needs calibration images")
    return TABLE[fmt]


def stacked(outputs: list[list[np.ndarray]]) -> list[np.ndarray]:
    """``Format.run``'s outputs with their batches joined."""
    return [np.concatenate(values) for values in outputs]


def write(out: str | Path, data: bytes) -> tuple[str, int]:
    """Write a checked export; (its path, its size in bytes)."""
    path = write_atomic(out, data)
    return str(path), path.stat().st_size


def run_tflite(model: bytes | str | Path, images: torch.Tensor) -> list[list[np.ndarray]]:
    """Every output of a .tflite (its bytes or its path) on NCHW ``images``, per output its values image by
    image ([1, ...] each), one NHWC image at a time as deployed; int8 inputs are quantized with the model's own
    scale and zero point and int8 outputs dequantized."""
    from ai_edge_litert.interpreter import Interpreter

    source = {"model_content": model} if isinstance(model, bytes) else {"model_path": str(model)}
    interpreter = Interpreter(**source)
    interpreter.allocate_tensors()
    inp, outputs = interpreter.get_input_details()[0], interpreter.get_output_details()
    got: list[list[np.ndarray]] = [[] for _ in outputs]
    for x in images:
        x = x.permute(1, 2, 0).unsqueeze(0).numpy()
        if inp["dtype"] == np.int8:
            scale, zero = inp["quantization"]
            x = np.clip(np.round(x / scale) + zero, -128, 127).astype(np.int8)
        interpreter.set_tensor(inp["index"], x)
        interpreter.invoke()
        for store, detail in zip(got, outputs):
            y = interpreter.get_tensor(detail["index"])
            if detail["dtype"] == np.int8:
                scale, zero = detail["quantization"]
                y = (y.astype(np.float32) - zero) * scale
            store.append(y)
    return got
