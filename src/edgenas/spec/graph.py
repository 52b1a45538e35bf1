"""Shapes and layers of a ``Network``: the one place that knows how a node's inputs are resampled, combined
and transformed. The PyTorch builder follows ``plan_network``; counts, the profiler and every latency target
read ``network_layers``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .blocks import conv
from .errors import fail
from .layer import Layer
from .ops import ConvOp, PoolOp, ResizeOp, SepConvOp
from .shapes import Tensor, backbone_layers, feature_levels

BACKBONE_LEVEL = re.compile(r"^C(\d+)$")


@dataclass
class NodePlan:
    name: str
    inputs: list[Tensor]
    resample: list[Layer | None]  # per input: the pooling or resize that brings it to the node's size
    combine: Layer | None
    ops: list[list[Layer]]  # per op, its layers (a dropout has none)
    out: Tensor
    level_size: tuple[int, int]

    @property
    def layers(self) -> list[Layer]:
        out = [x for x in self.resample if x is not None]
        out += [self.combine] if self.combine is not None else []
        return out + [x for op in self.ops for x in op]


@dataclass
class NetworkPlan:
    features: dict[str, Tensor]  # backbone levels by name (C1..C5), at their built size
    nodes: list[NodePlan] = field(default_factory=list)
    head: list[Layer] = field(default_factory=list)
    logits: Tensor | None = None
    tail: list[Layer] = field(default_factory=list)


def level_stride(level: int, output_stride: int | None) -> int:
    stride = 2**level
    return min(stride, output_stride) if output_stride else stride


def level_size(input_size: int, level: int, output_stride: int | None) -> tuple[int, int]:
    s = -(-input_size // level_stride(level, output_stride))
    return (s, s)


def backbone_features(net, input_size: int) -> dict[str, Tensor]:
    """The backbone's levels by nominal name: ``C<log2 nominal stride>`` at their built size."""
    nominal, built = feature_levels(net.backbone), feature_levels(net.backbone, net.output_stride)
    out = {}
    for nom, b in zip(nominal, built):
        level = nom.reduction.bit_length() - 1
        s = -(-input_size // b.reduction)
        out[f"C{level}"] = Tensor(f"C{level}", b.channels, (s, s), level, b.reduction)
    return out


def _resample(path: str, t: Tensor, level: int, size: tuple[int, int], node, net, loc) -> Layer | None:
    if t.size == size:
        return None
    if t.size[0] < size[0]:  # also a globally pooled 1x1 feature broadcast back (DeepLab's image pooling)
        return Layer(path=path, op="resize", in_channels=t.channels, out_channels=t.channels, in_size=t.size,
                     out_size=size, mode=node.upsample)
    factor = level_stride(level, net.output_stride) // level_stride(t.level, net.output_stride)
    if factor < 2 or factor & (factor - 1):
        fail(loc, f"{t.name} ({t.size[0]}x{t.size[1]}) is finer than level {level} ({size[0]}x{size[1]}) "
                   f"but its level {t.level} is not a power-of-two step below it")
    out = (-(-t.size[0] // factor), -(-t.size[1] // factor))
    if out != size:
        fail(loc, f"pooling {t.name} by {factor} gives {out[0]}x{out[1]}, not level {level}'s "
                   f"{size[0]}x{size[1]}")
    kernel = factor + 1 if node.down_kernel == "stride+1" else factor
    return Layer(path=path, op=f"{node.downsample}_pool", in_channels=t.channels, out_channels=t.channels,
                 in_size=t.size, out_size=out, kernel_size=kernel, stride=factor)


def op_layers(path: str, op, channels: int, size: tuple[int, int]) -> list[Layer]:
    """The layers of one node op on a ``channels`` x ``size`` input."""
    if isinstance(op, ConvOp):
        return [conv(f"{path}.conv", channels, op.out_channels, size, op.kernel_size, 1, op.dilation,
                     act=op.act, bias=op.bias, norm=op.norm)]
    if isinstance(op, SepConvOp):
        dw = conv(f"{path}.spatial", channels, channels, size, op.kernel_size, 1, op.dilation, channels,
                  act=op.dw_act, bias=op.dw_bias, norm=op.dw_norm)
        return [dw, conv(f"{path}.project", channels, op.out_channels, size, act=op.act, bias=op.bias,
                         norm=op.norm)]
    if isinstance(op, PoolOp):
        if op.kernel_size is None:
            return [Layer(path=f"{path}.pool", op="pool", in_channels=channels, out_channels=channels,
                          in_size=size, out_size=(1, 1))]
        out = (-(-size[0] // op.stride), -(-size[1] // op.stride))
        return [Layer(path=f"{path}.pool", op=f"{op.kind}_pool", in_channels=channels, out_channels=channels,
                      in_size=size, out_size=out, kernel_size=op.kernel_size, stride=op.stride)]
    if isinstance(op, ResizeOp):
        out = (op.size, op.size) if op.size else (max(1, int(size[0] * op.scale)), max(1, int(size[1] * op.scale)))
        return [Layer(path=f"{path}.resize", op="resize", in_channels=channels, out_channels=channels,
                      in_size=size, out_size=out, mode=op.mode)]
    return []  # dropout


def _combine(path: str, node, tensors: list[Tensor], size, loc) -> tuple[Layer | None, int]:
    n = len(tensors)
    if node.combine == "concat":
        channels = sum(t.channels for t in tensors)
        layer = Layer(path=path, op="concat", in_channels=channels, out_channels=channels, in_size=size,
                      out_size=size, num_inputs=n, act=str(node.act)) if n > 1 else None
        return layer, channels
    widths = {t.channels for t in tensors}
    if len(widths) > 1:
        fail((*loc, "inputs"), "a " + node.combine + " needs equal channels, got " +
              ", ".join(f"{t.name} {t.channels}" for t in tensors))
    channels = tensors[0].channels
    if n == 1 and node.combine == "sum":
        if node.act != "none":
            fail((*loc, "act"), "an activation after combining needs two or more inputs")
        return None, channels
    mode = "" if node.combine == "sum" else node.combine
    return Layer(path=path, op="add", in_channels=channels, out_channels=channels, in_size=size, out_size=size,
                 num_inputs=n, mode=mode, act=str(node.act)), channels


def plan_network(net, input_size: int | None = None) -> NetworkPlan:
    """Shapes of every node at ``input_size`` (default: deployment); raises ``SpecError`` naming the place."""
    size0 = input_size or net.input_size
    plan = NetworkPlan(backbone_features(net, size0))
    known: dict[str, Tensor] = dict(plan.features)
    for i, node in enumerate(net.nodes):
        loc = ("nodes", i)
        if node.name in known:
            fail((*loc, "name"), f"{node.name!r} is already defined")
        inputs = []
        for j, src in enumerate(node.inputs):
            if src not in known:
                what = "backbone level" if BACKBONE_LEVEL.match(src) else "earlier node"
                have = ", ".join(plan.features) if what == "backbone level" else "defined before this node"
                fail((*loc, "inputs", j), f"{src!r} is not a known {what} ({have})")
            inputs.append(known[src])
        size = level_size(size0, node.level, net.output_stride)
        resample = [_resample(f"nodes.{node.name}.resample{j}", t, node.level, size, node, net, (*loc, "inputs", j))
                    for j, t in enumerate(inputs)]
        combined, channels = _combine(f"nodes.{node.name}.combine", node, inputs, size, loc)
        cur, ops = size, []
        for k, op in enumerate(node.ops):
            layers = op_layers(f"nodes.{node.name}.ops{k}", op, channels, cur)
            if layers:
                channels, cur = layers[-1].out_channels, layers[-1].out_size
            ops.append(layers)
        out = Tensor(node.name, channels, cur, node.level)
        plan.nodes.append(NodePlan(node.name, inputs, resample, combined, ops, out, size))
        known[node.name] = out
    head = net.head
    if head.source not in known:
        fail(("head", "source"), f"{head.source!r} is not a backbone level or node")
    src = known[head.source]
    plan.head = op_layers("head.classifier", head.classifier, src.channels, src.size)
    plan.logits = Tensor("logits", head.num_classes, plan.head[-1].out_size, src.level)
    if net.tail is not None:
        channels, cur = head.num_classes, plan.logits.size
        for k, (kind, n, mode) in enumerate(net.tail.plan()):
            if kind == "resize":
                plan.tail.append(Layer(path=f"tail.{k}.resize", op="resize", in_channels=channels,
                                       out_channels=channels, in_size=cur, out_size=(n, n), mode=mode))
                cur = (n, n)
            else:
                plan.tail.append(Layer(path=f"tail.{k}.argmax", op="argmax", in_channels=channels, out_channels=1,
                                       in_size=cur, out_size=cur, mode=mode))
                channels = 1
    return plan


def network_layers(net, input_size: int | None = None, tail: bool = True) -> list[Layer]:
    """Every layer of the network at ``input_size`` (default: deployment): backbone (without its
    classifier), nodes, class head and, unless ``tail`` is false, the serving tail."""
    layers = backbone_layers(net.backbone, input_size or net.input_size, net.output_stride)
    plan = plan_network(net, input_size)
    layers += [x for node in plan.nodes for x in node.layers] + plan.head
    return layers + (plan.tail if tail else [])
