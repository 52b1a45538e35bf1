"""Network spec -> nn.Module: the backbone, one module per graph node, the class head and the serving tail.

Each node follows ``spec.graph.plan_network``: inputs resampled to the node's size (TF 'same' pooling, or a
resize), combined (sum, concat or EfficientDet's weighted sums), then its ops. ``padding="tf"`` pads strided
convs as TensorFlow's 'same' does (more at the bottom and right), which weights trained in TF expect; by
default the network's own ``padding`` field decides.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..spec import Network
from ..spec.graph import plan_network
from ..spec.network import Tail
from ..spec.ops import ConvOp, DropoutOp, PoolOp, ResizeOp, SepConvOp
from .layers import make_act
from .model import Backbone, init_weights

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


class ConvModule(nn.Sequential):
    def __init__(self, cin, cout, kernel=1, *, dilation=1, groups=1, bias=False, norm=None, act="none"):
        layers = [nn.Conv2d(cin, cout, kernel, padding=(kernel - 1) // 2 * dilation, dilation=dilation,
                            groups=groups, bias=bias)]
        if norm is not None:
            layers.append(nn.BatchNorm2d(cout, eps=norm.eps, momentum=norm.momentum))
        layers.append(make_act(act))
        super().__init__(*layers)


def op_module(op, channels: int, norm) -> nn.Module:
    if isinstance(op, ConvOp):
        return ConvModule(channels, op.out_channels, op.kernel_size, dilation=op.dilation, bias=op.bias,
                          norm=norm if op.norm else None, act=op.act)
    if isinstance(op, SepConvOp):
        return nn.Sequential(
            ConvModule(channels, channels, op.kernel_size, dilation=op.dilation, groups=channels, bias=op.dw_bias,
                       norm=norm if op.dw_norm else None, act=op.dw_act),
            ConvModule(channels, op.out_channels, bias=op.bias, norm=norm if op.norm else None, act=op.act))
    if isinstance(op, PoolOp):
        return nn.AdaptiveAvgPool2d(1) if op.kernel_size is None else SamePool(op.kind, op.kernel_size, op.stride)
    if isinstance(op, ResizeOp):
        return Resize((op.size, op.size) if op.size else None, op.mode, op.scale)
    if isinstance(op, DropoutOp):
        return nn.Dropout(op.rate)
    raise TypeError(f"no module for {type(op).__name__}")


class Fuse(nn.Module):
    """Sum, concat, or EfficientDet's weighted sums: ``attn`` (softmax weights), ``fastattn`` (ReLU weights
    over their sum + 1e-4), and their per-channel forms."""

    def __init__(self, mode: str, num_inputs: int, channels: int):
        super().__init__()
        self.mode = mode
        if mode.endswith("attn"):
            shape = (num_inputs, channels) if mode.startswith("channel_") else (num_inputs,)
            self.weight = nn.Parameter(torch.ones(shape))

    def forward(self, xs: list[torch.Tensor]) -> torch.Tensor:
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


class NodeModule(nn.Module):
    def __init__(self, node, node_plan, norm):
        super().__init__()
        self.size = node_plan.level_size  # at the deployment size; the forward pass resizes to the live size
        self.level = node.level
        resample = []
        for layer in node_plan.resample:
            if layer is None:
                resample.append(nn.Identity())
            elif layer.op == "resize":
                resample.append(Resize(None, layer.mode))
            else:
                resample.append(SamePool(layer.op.removesuffix("_pool"), layer.kernel_size, layer.stride))
        self.resample = nn.ModuleList(resample)
        self.fuse = Fuse(node.combine, len(node.inputs), node_plan.inputs[0].channels)
        self.act = make_act(node.act)
        ops, channels = [], sum(t.channels for t in node_plan.inputs) if node.combine == "concat" else \
            node_plan.inputs[0].channels
        for op in node.ops:
            ops.append(op_module(op, channels, norm))
            channels = getattr(op, "out_channels", channels)
        self.ops = nn.Sequential(*ops)

    def forward(self, xs: list[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        out = []
        for x, resample in zip(xs, self.resample):
            out.append(resample(x, size) if isinstance(resample, Resize) else resample(x))
        return self.ops(self.act(self.fuse(out)))


class ServingTail(nn.Module):
    """Google's ``finalize`` chain on the logits: bilinear resizes, an argmax, nearest resizes of the class
    map. An argmax that is not last is the Edge-TPU-friendly elementwise form (reference 4.5), which keeps the
    first maximum like ``torch.argmax``; the output is the class map (N, H, W)."""

    def __init__(self, tail: Tail):
        super().__init__()
        self.plan = tail.plan()

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        x = logits
        for kind, n, mode in self.plan:
            if kind == "resize":
                x = Resize((n, n), mode)(x)
            elif mode == "plain":
                x = x.argmax(dim=1, keepdim=True).float()
            else:
                x = onehot_argmax(x)
        return x[:, 0]


def onehot_argmax(x: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """Argmax from elementwise ops (max, sub, min, mul): 1 at the maximum, a reversed index C..1 picks the
    first one. Returns float class ids with the channel kept (N, 1, H, W).

    A logit within ``eps`` below the maximum gets a fractional one-hot, so in float a near-tie can give a
    fractional id; the 8-bit graph rounds every step to integers, and so does this, at the end."""
    c = x.shape[1]
    m = x.amax(dim=1, keepdim=True)
    onehot = 1.0 - torch.minimum(m - x, torch.full_like(x[:1, :1], eps)) / eps
    rev = torch.arange(c, 0, -1, dtype=x.dtype, device=x.device).view(1, c, 1, 1)
    return torch.round(c - (onehot * rev).amax(dim=1, keepdim=True))


class NetworkModel(nn.Module):
    """Backbone + graph nodes + class head; ``forward`` returns logits at the head's stride, ``serve`` runs
    the serving tail too. The ``network`` it was built from travels with it."""

    def __init__(self, network: Network, *, gc_mode: str = "native", padding: str | None = None):
        super().__init__()
        padding = padding or network.padding
        if padding not in PADDINGS:
            raise ValueError(f"padding must be one of {', '.join(PADDINGS)}, got {padding!r}")
        self.network = network
        self.preprocess = network.backbone.preprocess
        plan = plan_network(network)
        self.backbone = Backbone(network.backbone, output_stride=network.output_stride, gc_mode=gc_mode)
        self.feature_names = list(plan.features)
        self.nodes = nn.ModuleDict({n.name: NodeModule(n, p, network.norm) for n, p in zip(network.nodes,
                                                                                             plan.nodes)})
        self.inputs = {n.name: n.inputs for n in network.nodes}
        self.levels = {n.name: n.level for n in network.nodes}
        head = network.head
        src = plan.features.get(head.source) or next(p.out for p in plan.nodes if p.name == head.source)
        self.head = op_module(head.classifier, src.channels, network.norm)
        self.source = head.source
        self.tail = ServingTail(network.tail) if network.tail is not None else None
        self.tail_text = network.tail.text if network.tail is not None else ""
        init_weights(self)
        nn.init.constant_(self._classifier_conv().bias, head.bias_init)
        if padding == "tf":
            use_tf_padding(self)

    def _classifier_conv(self) -> nn.Conv2d:
        return [m for m in self.head.modules() if isinstance(m, nn.Conv2d)][-1]

    @property
    def feature_info(self):
        return self.backbone.feature_info

    def features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h, w = x.shape[-2:]
        known = dict(zip(self.feature_names, self.backbone(x)))
        for name, node in self.nodes.items():
            stride = 2 ** self.levels[name]
            if self.network.output_stride:
                stride = min(stride, self.network.output_stride)
            size = (-(-h // stride), -(-w // stride))
            known[name] = node([known[i] for i in self.inputs[name]], size)
        return known

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x)[self.source])

    def serve(self, x: torch.Tensor) -> torch.Tensor:
        if self.tail is None:
            raise ValueError(f"{self.network.name or 'this network'} has no serving tail; give one with "
                             "network.with_tail('resize512,argmax')")
        return self.tail(self(x))


class Serving(nn.Module):
    """``model.serve`` as a module's forward, for export: image in, class map out."""

    def __init__(self, model: NetworkModel):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.serve(x)


def build_network(network: Network, *, gc_mode: str = "native", padding: str | None = None) -> NetworkModel:
    return NetworkModel(network, gc_mode=gc_mode, padding=padding)

