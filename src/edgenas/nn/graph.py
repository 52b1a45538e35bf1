"""The graph executor under the segmentation and detection models, and the resampling it runs.

A planned graph is a list of nodes in execution order; each ``GraphNode`` takes its inputs by name from the
tensors known so far, sends each through its edge (the resampling from the input's level to the node's: a
resize, a 'same' pooling, SpaghettiNet's 1x1 conv with pooling or upsampling, or nothing), combines them
(``Fuse``), applies an activation, then its ops. ``run_graph`` runs the nodes in order. The families build
the edges and ops from their specs; the running is written here once.

``padding="tf"`` pads strided convs as TensorFlow's 'same' does (more at the bottom and right), which
weights trained in TF expect.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

PADDINGS = ("symmetric", "tf")


def tf_same_pads(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """(before, after) padding of TF's 'same': the odd pixel goes after. ``size`` is made a plain int: the ONNX
    tracer records arithmetic on a traced shape wrongly here (a 2-pixel map padded for a 5-wide window came out
    as pads of -1), and the graphs we export have static shapes anyway."""
    size = int(size)
    out = -(-size // stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def _tf_pad_hook(module: nn.Conv2d, args):
    (x,) = args
    (kh, kw), (sh, sw), (dh, dw) = module.kernel_size, module.stride, module.dilation
    top, bottom = tf_same_pads(x.shape[-2], kh, sh, dh)
    left, right = tf_same_pads(x.shape[-1], kw, sw, dw)
    return (F.pad(x, (left, right, top, bottom)),)


def apply_padding(model: nn.Module, padding: str) -> nn.Module:
    """``padding``, a build option of every family: ``symmetric`` keeps PyTorch's, ``tf`` pads as TF's 'same'."""
    if padding not in PADDINGS:
        raise ValueError(f"padding must be one of {', '.join(PADDINGS)}, got {padding!r}")
    return use_tf_padding(model) if padding == "tf" else model


def use_tf_padding(model: nn.Module) -> nn.Module:
    """Make every strided conv pad like TF's 'same' (stride-1 convs with odd kernels already agree)."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d) and max(m.stride) > 1:
            m.padding = (0, 0)
            m.register_forward_pre_hook(_tf_pad_hook)
    return model


class SamePool(nn.Module):
    """k x k average or max pooling with TF's 'same' padding; the average counts only real pixels."""

    def __init__(self, kind: str, kernel: int, stride: int):
        super().__init__()
        self.kind, self.kernel, self.stride = kind, kernel, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[-2:]) == (1, 1):  # one real pixel in the window: itself (and no degenerate op to export)
            return x
        top, bottom = tf_same_pads(x.shape[-2], self.kernel, self.stride)
        left, right = tf_same_pads(x.shape[-1], self.kernel, self.stride)
        pads = (left, right, top, bottom)
        if self.kind == "max":
            return F.max_pool2d(F.pad(x, pads, value=float("-inf")), self.kernel, self.stride)
        total = F.avg_pool2d(F.pad(x, pads), self.kernel, self.stride)
        if not any(pads):
            return total
        scale = _window_scale(tuple(x.shape[-2:]), pads, self.kernel, self.stride)
        if len(scale) == len(scale[0]) == 1:
            return total * scale[0][0]
        return total * torch.tensor(scale, dtype=x.dtype, device=x.device)[None, None]

    def extra_repr(self) -> str:
        return f"{self.kind}, kernel={self.kernel}, stride={self.stride}"


def _window_scale(size: tuple[int, int], pads: tuple[int, ...], kernel: int, stride: int) -> list[list[float]]:
    """k*k / (real pixels in each window): turns an average over a zero-padded window into TF's average over
    its real pixels. Plain Python from shapes alone, so exporters see a constant, not a graph over the input."""
    left, right, top, bottom = pads

    def counts(n, before, after):
        out = -(-n // stride)
        return [sum(1 for p in range(o * stride, o * stride + kernel) if before <= p < before + n)
                for o in range(out)]

    return [[kernel * kernel / (r * c) for c in counts(size[1], left, right)] for r in counts(size[0], top, bottom)]


class Resize(nn.Module):
    """To a fixed size; bilinear with half-pixel centres (TF2's ``tf.image.resize``) or nearest."""

    def __init__(self, size: tuple[int, int] | None, mode: str, scale: float | None = None):
        super().__init__()
        self.size, self.mode, self.scale = size, mode, scale

    def forward(self, x: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
        size = size or self.size or (max(1, int(x.shape[-2] * self.scale)), max(1, int(x.shape[-1] * self.scale)))
        if tuple(x.shape[-2:]) == tuple(size):
            return x
        if self.mode == "nearest":
            return F.interpolate(x, size=size, mode="nearest")
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class Fuse(nn.Module):
    """Sum, concat, or EfficientDet's weighted sums: ``attn`` (softmax weights), ``fastattn`` (ReLU weights
    over their sum + 1e-4), and their per-channel forms. With ``crop``, every input is first cropped to the
    size of input ``crop`` (SpaghettiNet's rule: the edge from the lowest level sets the size)."""

    def __init__(self, mode: str, num_inputs: int, channels: int, crop: int | None = None):
        super().__init__()
        self.mode, self.crop = mode, crop
        if mode.endswith("attn"):
            shape = (num_inputs, channels) if mode.startswith("channel_") else (num_inputs,)
            self.weight = nn.Parameter(torch.ones(shape))

    def forward(self, xs: list[torch.Tensor]) -> torch.Tensor:
        if self.crop is not None:
            h, w = xs[self.crop].shape[-2:]
            xs = [x[..., :h, :w] for x in xs]
        if self.mode == "concat":
            return torch.cat(xs, dim=1) if len(xs) > 1 else xs[0]
        if self.mode == "sum":
            out = xs[0]
            for x in xs[1:]:
                out = out + x
            return out
        w = self.weight
        w = torch.softmax(w, dim=0) if self.mode.endswith("_attn") or self.mode == "attn" else F.relu(w)
        if self.mode.endswith("fastattn"):
            w = w / (w.sum(dim=0, keepdim=True) + 1e-4)
        w = w.view(len(xs), 1, -1, 1, 1) if w.dim() == 2 else w.view(len(xs), 1, 1, 1, 1)
        return (torch.stack(xs) * w).sum(dim=0)


class GraphNode(nn.Module):
    """One node of a planned graph: ``edges[j]`` resamples input ``inputs[j]`` (a ``Resize`` is told the
    node's live size), ``fuse`` combines them, then ``act`` and ``ops``."""

    def __init__(self, inputs: Sequence[str], edges: Sequence[nn.Module], fuse: nn.Module, act: nn.Module,
                 ops: nn.Module):
        super().__init__()
        self.inputs = tuple(inputs)
        self.edges, self.fuse, self.act, self.ops = nn.ModuleList(edges), fuse, act, ops

    def forward(self, known: Mapping[str, torch.Tensor], size: tuple[int, int] | None = None) -> torch.Tensor:
        xs = [edge(known[i], size) if isinstance(edge, Resize) else edge(known[i])
              for edge, i in zip(self.edges, self.inputs)]
        return self.ops(self.act(self.fuse(xs)))


def run_graph(nodes: Mapping[str, GraphNode], known: dict[str, torch.Tensor],
              size_of: Callable[[str], tuple[int, int] | None] = lambda name: None) -> dict[str, torch.Tensor]:
    """Run ``nodes`` in order over the ``known`` tensors (the backbone's, by name), adding each node's output
    under its name; ``size_of(name)`` is a node's live size where its edges resize to it."""
    for name, node in nodes.items():
        known[name] = node(known, size_of(name))
    return known
