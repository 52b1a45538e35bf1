"""A plain-data view of a TFLite flatbuffer: tensors (with dequantised constants) and operators in order.

It exists to import Google's released int8 TFLite models (Autoseg-EdgeTPU, MobileNet-EdgeTPU) into our
PyTorch networks and to check our topology against theirs, without a TensorFlow install. The flatbuffer
schema is the generated ``schema_py_generated`` module that ``ai-edge-litert`` ships (with ``flatbuffers``,
its dependency), so reading a file needs the ``litert`` extra and nothing more.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import EdgenasError

__all__ = ["TFLiteError", "TFLiteTensor", "TFLiteOperator", "TFLiteGraph", "read_tflite"]

# The option fields we keep, by their names in the generated schema, and what we call them.
_OPTION_NAMES = {
    "strideH": "stride_h", "strideW": "stride_w", "padding": "padding",
    "dilationHFactor": "dilation_h", "dilationWFactor": "dilation_w",
    "fusedActivationFunction": "activation", "depthMultiplier": "depth_multiplier",
    "filterHeight": "filter_h", "filterWidth": "filter_w",
    "alignCorners": "align_corners", "halfPixelCenters": "half_pixel_centers",
    "keepDims": "keep_dims", "axis": "axis", "beta": "beta", "newShape": "new_shape",
    "squeezeDims": "squeeze_dims",
}
_REDUCERS = {"MEAN", "SUM", "REDUCE_MAX", "REDUCE_MIN", "REDUCE_PROD", "REDUCE_ANY"}
_RESIZES = {"RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR"}
_NUMPY_DTYPES = {"FLOAT32": np.float32, "FLOAT16": np.float16, "FLOAT64": np.float64, "INT8": np.int8,
                 "UINT8": np.uint8, "INT16": np.int16, "UINT16": np.uint16, "INT32": np.int32,
                 "UINT32": np.uint32, "INT64": np.int64, "UINT64": np.uint64, "BOOL": np.bool_}


class TFLiteError(EdgenasError):
    """A file that is missing or is not a TFLite model we can read; the message names the file."""


@dataclass(frozen=True, eq=False)
class TFLiteTensor:
    """One tensor. ``raw`` is the stored constant (None for activations); ``data`` is it as float32,
    dequantised ``(q - zero_point) * scale`` per channel along ``quantized_dimension`` when quantised."""

    index: int
    name: str
    shape: tuple[int, ...]
    dtype: str
    scales: tuple[float, ...] = ()
    zero_points: tuple[int, ...] = ()
    quantized_dimension: int = 0
    raw: np.ndarray | None = field(default=None, repr=False)
    data: np.ndarray | None = field(default=None, repr=False)

    @property
    def is_constant(self) -> bool:
        return self.raw is not None

    @property
    def is_quantized(self) -> bool:
        return bool(self.scales)


@dataclass(frozen=True)
class TFLiteOperator:
    """One operator in execution order. ``options`` holds the builtin options that matter, with our names
    (``stride_h``, ``padding`` 'SAME'/'VALID', ``activation`` 'NONE'/'RELU'/'RELU6', ``filter_h``, ...),
    plus ``axes`` of a reducer and ``size`` of a resize when those inputs are constants. Input index -1
    means an omitted optional input."""

    index: int
    op: str
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class TFLiteGraph:
    """The first subgraph of a model: what ``read_tflite`` returns."""

    path: str
    description: str
    version: int
    tensors: tuple[TFLiteTensor, ...]
    operators: tuple[TFLiteOperator, ...]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]

    def op_counts(self) -> Counter:
        return Counter(o.op for o in self.operators)

    def producer(self, tensor: int) -> TFLiteOperator | None:
        """The operator that writes ``tensor``, or None for inputs and constants."""
        return next((o for o in self.operators if tensor in o.outputs), None)

    def consumers(self, tensor: int) -> list[TFLiteOperator]:
        return [o for o in self.operators if tensor in o.inputs]

    def convolutions(self) -> list[TFLiteOperator]:
        return [o for o in self.operators if o.op in ("CONV_2D", "DEPTHWISE_CONV_2D")]


def _schema(path: Path):
    try:
        from ai_edge_litert import schema_py_generated
    except ImportError as err:
        raise TFLiteError(f"{path}: reading TFLite needs ai-edge-litert (pip install 'edgenas[litert]'): "
                          f"{err}") from None
    return schema_py_generated


def _enum_names(enum_cls) -> dict[int, str]:
    return {v: k for k, v in vars(enum_cls).items() if not k.startswith("_") and isinstance(v, int)}


def _dequantize(raw: np.ndarray, scales: tuple[float, ...], zero_points: tuple[int, ...],
                dim: int) -> np.ndarray:
    q = raw.astype(np.float64)
    if not scales:
        return q.astype(np.float32)
    scale = np.asarray(scales, np.float64)
    zp = np.asarray(zero_points or (0,), np.float64)
    if scale.size > 1 or zp.size > 1:  # per channel along the quantized dimension
        bshape = [1] * q.ndim
        bshape[dim] = -1
        scale = scale.reshape(bshape) if scale.size > 1 else scale
        zp = zp.reshape(bshape) if zp.size > 1 else zp
    return ((q - zp) * scale).astype(np.float32)


def _tensor(index: int, t, model, buf: bytes, type_names: dict[int, str]) -> TFLiteTensor:
    name = t.name.decode() if isinstance(t.name, bytes) else (t.name or "")
    shape = tuple(int(d) for d in (t.shape if t.shape is not None else ()))
    dtype = type_names.get(t.type, str(t.type))
    q = t.quantization
    scales = tuple(float(s) for s in (q.scale if q is not None and q.scale is not None else ()))
    zps = tuple(int(z) for z in (q.zeroPoint if q is not None and q.zeroPoint is not None else ()))
    qdim = int(q.quantizedDimension) if q is not None else 0
    raw = data = None
    b = model.buffers[t.buffer] if 0 < t.buffer < len(model.buffers) else None
    if b is not None:
        if b.offset and b.offset > 1:  # a large model keeps its buffers after the flatbuffer
            content = buf[b.offset:b.offset + b.size]
        else:
            content = bytes(b.data) if b.data is not None else b""
        if content and dtype in _NUMPY_DTYPES:
            raw = np.frombuffer(content, np.dtype(_NUMPY_DTYPES[dtype]).newbyteorder("<"))
            raw = raw.astype(raw.dtype.newbyteorder("="))  # a writable, native-order copy
            if shape or raw.size == 1:  # shape () with several values: a constant stored without a shape
                if int(np.prod(shape)) != raw.size:
                    raise ValueError(f"tensor {index} '{name}' holds {raw.size} values for shape {shape}")
                raw = raw.reshape(shape)
            data = _dequantize(raw, scales, zps, qdim)
    return TFLiteTensor(index, name, shape, dtype, scales, zps, qdim, raw, data)


def _options(opts, padding_names, act_names) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in (vars(opts).items() if opts is not None else ()):
        ours = _OPTION_NAMES.get(key)
        if ours is None:
            continue
        if ours == "padding":
            value = padding_names.get(value, value)
        elif ours == "activation":
            value = act_names.get(value, value)
        elif isinstance(value, np.ndarray):
            value = tuple(int(v) for v in value)
        elif isinstance(value, np.generic):
            value = value.item()
        out[ours] = value
    return out


def read_tflite(path: str | Path) -> TFLiteGraph:
    """Read a .tflite file into a ``TFLiteGraph`` (its first subgraph); a missing or unreadable file raises
    ``TFLiteError`` naming it."""
    path = Path(path)
    try:
        buf = path.read_bytes()
    except OSError as err:
        raise TFLiteError(f"{path}: cannot read TFLite model ({err.strerror or err})") from None
    if len(buf) < 8 or buf[4:8] != b"TFL3":
        raise TFLiteError(f"{path}: not a TFLite model (no 'TFL3' flatbuffer identifier)")
    schema = _schema(path)
    try:
        model = schema.ModelT.InitFromPackedBuf(buf, 0)
    except Exception as err:  # a corrupt flatbuffer fails anywhere inside the generated code
        raise TFLiteError(f"{path}: corrupt TFLite flatbuffer ({type(err).__name__}: {err})") from None
    if not model.subgraphs:
        raise TFLiteError(f"{path}: TFLite model has no subgraph")
    try:
        return _graph(path, model, buf, schema)
    except (IndexError, KeyError, ValueError, TypeError) as err:  # indices or sizes that do not fit
        raise TFLiteError(f"{path}: inconsistent TFLite model ({type(err).__name__}: {err})") from None


def _graph(path: Path, model, buf: bytes, schema) -> TFLiteGraph:
    sg = model.subgraphs[0]
    type_names = _enum_names(schema.TensorType)
    op_names = _enum_names(schema.BuiltinOperator)
    padding_names, act_names = _enum_names(schema.Padding), _enum_names(schema.ActivationFunctionType)
    tensors = tuple(_tensor(i, t, model, buf, type_names) for i, t in enumerate(sg.tensors or ()))
    operators = []
    for i, o in enumerate(sg.operators or ()):
        code = model.operatorCodes[o.opcodeIndex]
        number = max(int(code.builtinCode), int(code.deprecatedBuiltinCode))
        name = op_names.get(number, f"BUILTIN_{number}")
        if name == "CUSTOM":
            custom = code.customCode
            name = "CUSTOM:" + (custom.decode() if isinstance(custom, bytes) else str(custom))
        ins = tuple(int(x) for x in (o.inputs if o.inputs is not None else ()))
        outs = tuple(int(x) for x in (o.outputs if o.outputs is not None else ()))
        options = _options(o.builtinOptions, padding_names, act_names)
        second = tensors[ins[1]] if len(ins) > 1 and ins[1] >= 0 else None
        if second is not None and second.is_constant:
            if name in _REDUCERS:
                options["axes"] = tuple(int(a) for a in second.raw.reshape(-1))
            elif name in _RESIZES:
                options["size"] = tuple(int(a) for a in second.raw.reshape(-1))
        operators.append(TFLiteOperator(i, name, ins, outs, options))
    description = model.description
    description = description.decode() if isinstance(description, bytes) else (description or "")
    return TFLiteGraph(str(path), description, int(model.version), tensors, tuple(operators),
                       tuple(int(x) for x in sg.inputs), tuple(int(x) for x in sg.outputs))
