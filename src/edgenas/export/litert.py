"""LiteRT (.tflite) conversion with litert-torch, channel-last at the edges as phones feed images."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings
from pathlib import Path

import torch
from torch import nn


@contextlib.contextmanager
def _quiet():
    """litert-torch and torchao log every conversion step and every CUDA library they cannot load; keep the
    user's terminal for our own progress. Logger levels are restored afterwards."""
    loggers = [logging.getLogger(n) for n in ("litert_torch", "torchao", "torch.utils._pytree", "")]
    levels = [lg.level for lg in loggers]  # "": litert-torch also warns through the root logger
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _litert_torch():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        with _quiet():  # litert-torch imports torchao, which announces every CUDA library it cannot load
            import litert_torch
    except ImportError:
        raise ImportError("LiteRT export needs the litert extra: pip install 'edgenas[litert]'") from None
    return litert_torch


def _nhwc(t: torch.Tensor) -> torch.Tensor:
    return t.permute(0, 2, 3, 1).contiguous() if t.dim() == 4 else t


def _channel_last(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> nn.Module:
    """``module`` taking and giving NHWC for its 4-D inputs and output."""
    four_d = [i for i, t in enumerate(inputs) if t.dim() == 4]
    with torch.no_grad():
        out = module.eval()(*inputs)
    out_4d = (out[0] if isinstance(out, tuple) else out).dim() == 4
    return _litert_torch().to_channel_last_io(module, args=four_d, outputs=[0] if out_4d else []).eval()


def to_tflite(module: nn.Module, inputs: tuple[torch.Tensor, ...], path: str | Path) -> Path:
    """Convert with channel-last I/O: 4-D inputs and the output are NHWC in the .tflite."""
    litert_torch, wrapped = _litert_torch(), _channel_last(module, inputs)
    with _quiet():
        litert_torch.convert(wrapped, tuple(_nhwc(t) for t in inputs)).export(str(path))
    return Path(path)


def to_tflite_int8(module: nn.Module, example: torch.Tensor | tuple[torch.Tensor, ...],
                   calibration: list[torch.Tensor] | list[tuple[torch.Tensor, ...]], path: str | Path) -> Path:
    """Static int8 through litert-torch's PT2E quantizer (symmetric, per-channel weights, int8 activations),
    observers calibrated on ``calibration`` (NCHW batches of one, like ``example``; tuples for a module of
    several inputs). The .tflite is int8 end to end, its NHWC inputs and its output included, as
    integer-only accelerators want it."""
    litert_torch = _litert_torch()
    with _quiet():
        from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config
        from litert_torch.quantize.quant_config import QuantConfig
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    def as_tuple(x):
        return x if isinstance(x, tuple) else (x,)

    inputs = as_tuple(example)
    wrapped, args = _channel_last(module, inputs), tuple(_nhwc(t) for t in inputs)
    quantizer = PT2EQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
    with _quiet():
        graph = prepare_pt2e(torch.export.export(wrapped, args).module(), quantizer)
        with torch.no_grad():
            for batch in calibration:
                graph(*(_nhwc(t) for t in as_tuple(batch)))
        graph = convert_pt2e(graph, fold_quantize=False)
        litert_torch.convert(graph, args, quant_config=QuantConfig(pt2e_quantizer=quantizer)).export(str(path))
    return Path(path)
