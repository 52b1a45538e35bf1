"""Export: ONNX (parity-checked in ONNX Runtime), int8 ONNX, LiteRT .tflite."""

from ..io import write_atomic
from .onnx import ExportError, ort_session, quantize_int8, run_onnx, to_onnx

__all__ = ["ExportError", "ort_session", "quantize_int8", "run_onnx", "to_onnx", "write_atomic"]
from .api import FORMATS, ExportReport, export  # noqa: E402

__all__ += ["FORMATS", "ExportReport", "export"]
