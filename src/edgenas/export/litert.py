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
    """litert-torch logs every conversion step; keep the user's terminal for our own progress."""
    logging.getLogger("litert_torch").setLevel(logging.ERROR)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


def to_tflite(module: nn.Module, inputs: tuple[torch.Tensor, ...], path: str | Path) -> Path:
    """Convert with channel-last I/O: 4-D inputs and the output are NHWC in the .tflite."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        import litert_torch
    except ImportError:
        raise ImportError("LiteRT export needs the litert extra: pip install 'edgenas[litert]'") from None
    four_d = [i for i, t in enumerate(inputs) if t.dim() == 4]
    with torch.no_grad():
        out = module.eval()(*inputs)
    out_4d = (out[0] if isinstance(out, tuple) else out).dim() == 4
    wrapped = litert_torch.to_channel_last_io(module, args=four_d, outputs=[0] if out_4d else []).eval()
    nhwc = tuple(t.permute(0, 2, 3, 1).contiguous() if t.dim() == 4 else t for t in inputs)
    with _quiet():
        edge = litert_torch.convert(wrapped, nhwc)
        edge.export(str(path))
    return Path(path)
