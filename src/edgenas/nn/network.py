"""Network spec -> nn.Module: the backbone, one graph node per spec node, the class head and the serving tail.

Each node follows ``spec.graph.plan_network``: inputs resampled to the node's size (TF 'same' pooling, or a
resize), combined (sum, concat or EfficientDet's weighted sums), then its ops; ``nn.graph`` runs them. By
default the network's own ``padding`` field decides how strided convs pad.
"""

from __future__ import annotations

import torch
from torch import nn

from ..spec import Network
from ..spec.graph import plan_network
from ..spec.network import Tail
from ..spec.ops import ConvOp, DropoutOp, PoolOp, ResizeOp, SepConvOp
from .backbone import Backbone, init_weights
from .graph import (PADDINGS, Fuse, GraphNode, Resize, SamePool, apply_padding, run_graph, tf_same_pads,
                    use_tf_padding)
from .layers import ConvNormAct, make_act

__all__ = ["PADDINGS", "NetworkModel", "Serving", "ServingTail", "Fuse", "Resize", "SamePool", "onehot_argmax",
           "op_module", "tf_same_pads", "use_tf_padding"]


def op_module(op, channels: int, norm) -> nn.Module:
    if isinstance(op, ConvOp):
        return ConvNormAct(channels, op.out_channels, op.kernel_size, dilation=op.dilation, bias=op.bias,
                           norm=norm if op.norm else None, act=op.act)
    if isinstance(op, SepConvOp):
        return nn.Sequential(
            ConvNormAct(channels, channels, op.kernel_size, dilation=op.dilation, groups=channels, bias=op.dw_bias,
                        norm=norm if op.dw_norm else None, act=op.dw_act),
            ConvNormAct(channels, op.out_channels, bias=op.bias, norm=norm if op.norm else None, act=op.act))
    if isinstance(op, PoolOp):
        return nn.AdaptiveAvgPool2d(1) if op.kernel_size is None else SamePool(op.kind, op.kernel_size, op.stride)
    if isinstance(op, ResizeOp):
        return Resize((op.size, op.size) if op.size else None, op.mode, op.scale)
    if isinstance(op, DropoutOp):
        return nn.Dropout(op.rate)
    raise TypeError(f"no module for {type(op).__name__}")


def network_node(node, node_plan, norm) -> GraphNode:
    """A spec node as a graph node: each input resized up or pooled down to the node's level, then fused."""
    edges = []
    for layer in node_plan.resample:
        if layer is None:
            edges.append(nn.Identity())
        elif layer.op == "resize":
            edges.append(Resize(None, layer.mode))  # to the node's live size, given by the executor
        else:
            edges.append(SamePool(layer.op.removesuffix("_pool"), layer.kernel_size, layer.stride))
    ops, channels = [], sum(t.channels for t in node_plan.inputs) if node.combine == "concat" else \
        node_plan.inputs[0].channels
    for op in node.ops:
        ops.append(op_module(op, channels, norm))
        channels = getattr(op, "out_channels", channels)
    return GraphNode(node.inputs, edges, Fuse(node.combine, len(node.inputs), node_plan.inputs[0].channels),
                     make_act(node.act), nn.Sequential(*ops))


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
        self.network = network
        self.preprocess = network.backbone.preprocess
        plan = plan_network(network)
        self.backbone = Backbone(network.backbone, output_stride=network.output_stride, gc_mode=gc_mode)
        self.feature_names = list(plan.features)
        self.nodes = nn.ModuleDict({n.name: network_node(n, p, network.norm) for n, p in zip(network.nodes,
                                                                                               plan.nodes)})
        self.levels = {n.name: n.level for n in network.nodes}
        head = network.head
        src = plan.features.get(head.source) or next(p.out for p in plan.nodes if p.name == head.source)
        self.head = op_module(head.classifier, src.channels, network.norm)
        self.source = head.source
        self.tail = ServingTail(network.tail) if network.tail is not None else None
        self.tail_text = network.tail.text if network.tail is not None else ""
        init_weights(self)
        nn.init.constant_(self._classifier_conv().bias, head.bias_init)
        apply_padding(self, padding or network.padding)

    def _classifier_conv(self) -> nn.Conv2d:
        return [m for m in self.head.modules() if isinstance(m, nn.Conv2d)][-1]

    @property
    def feature_info(self):
        return self.backbone.feature_info

    def features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h, w = x.shape[-2:]

        def size_of(name: str) -> tuple[int, int]:  # a node's live size: its level, capped at the output stride
            stride = 2 ** self.levels[name]
            if self.network.output_stride:
                stride = min(stride, self.network.output_stride)
            return -(-h // stride), -(-w // stride)

        return run_graph(self.nodes, dict(zip(self.feature_names, self.backbone(x))), size_of)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x)[self.source])

    def serve(self, x: torch.Tensor) -> torch.Tensor:
        if self.tail is None:
            raise ValueError(f"{self.network.name or 'this network'} has no serving tail; give one with "
                             "network.with_tail('resize512,argmax')")
        return self.tail(self(x))


class Serving(nn.Module):
    """``model`` (logits at the head's stride) followed by a serving ``tail`` (default: the network's own, as
    ``model.serve``): image in, class map out, for export and timing. It wraps the model it is given, so what
    is exported is that model, built however it was (its gc_mode, padding and weights)."""

    def __init__(self, model: NetworkModel, tail: Tail | None = None):
        super().__init__()
        self.model = model
        self.tail = ServingTail(tail) if tail is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.serve(x) if self.tail is None else self.tail(self.model(x))

