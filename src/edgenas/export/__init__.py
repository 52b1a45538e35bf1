"""Export: ONNX (parity-checked in ONNX Runtime), int8 ONNX, LiteRT .tflite."""

from ..io import write_atomic
from .api import ExportReport, export
from .formats import FORMATS, TABLE, Format
from .onnx import ExportError, ort_session, quantize_int8, run_onnx, to_onnx

__all__ = ["FORMATS", "TABLE", "ExportError", "ExportReport", "Format", "export", "ort_session", "quantize_int8",
           "run_onnx", "to_onnx", "write_atomic"]
