"""Shapes and layers of a ``Detector``: the one place that knows how SpaghettiNet's edges resample and crop,
what each op builds and what the SSD head predicts. The PyTorch builder follows ``plan_detector``; counts, the
profiler and every latency target read ``detector_layers``.

Sizes flow from the data, as in Google's graph: a node's size is its input's (passthrough) or the cropped
edges' (resample), divided by its ops' strides; its level is nominal and only sets the edges' resampling.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from .blocks import IBN, conv
from .errors import fail
from .layer import Layer
from .ops import ConvOp, FusedGroupedOp, IbnOp, SepConvOp
from .shapes import Tensor, backbone_layers, block_plan, feature_levels


@dataclass
class EdgePlan:
    source: str
    layers: list[Layer]  # [1x1] (same level), [1x1, upsample] (finer target), [max-pool, 1x1] (coarser)
    out_size: tuple[int, int]


@dataclass
class GraphNodePlan:
    name: str
    edges: list[EdgePlan]  # empty: a passthrough
    crop_to: tuple[int, int] | None  # the edges' common size after cropping (resample nodes)
    combine: list[Layer]  # crops, then the sum (+ ReLU6)
    ops: list[list[Layer]]  # per op, its layers (its residual add last)
    out: Tensor

    @property
    def layers(self) -> list[Layer]:
        return [x for e in self.edges for x in e.layers] + self.combine + [x for op in self.ops for x in op]


@dataclass
class DetectorPlan:
    stem: list[Layer]  # the stem, or the whole backbone (and its final conv, where the graph reads it)
    tensors: dict[str, Tensor]
    nodes: list[GraphNodePlan] = field(default_factory=list)
    head: list[Layer] = field(default_factory=list)
    anchors: list[int] = field(default_factory=list)  # per source, anchors per cell
    source_sizes: list[tuple[int, int]] = field(default_factory=list)
    taps: dict[str, Tensor] = field(default_factory=dict)  # backbone features by name (detectors with a backbone)


def backbone_taps(arch, size: int) -> dict[str, Tensor]:
    """The features a graph can read from ``arch`` (an ``Arch``) at ``size``: ``C<level>`` per feature level,
    ``E<level>`` per inverted bottleneck with a 1x1 expansion that leaves a level by stride 2, and ``final``
    where the arch has a final 1x1 conv."""
    taps = {}

    def add(name, channels, stride, block, expansion=False):
        s = -(-size // stride)
        taps[name] = Tensor(name, channels, (s, s), stride.bit_length() - 1, stride, block, expansion)

    for lv in feature_levels(arch):
        add(f"C{lv.reduction.bit_length() - 1}", lv.channels, lv.reduction, lv.block)
    for n, pb in enumerate(block_plan(arch)):
        if pb.stride == 2 and isinstance(pb.block, IBN) and pb.block.mid(pb.in_channels) != pb.in_channels:
            before = pb.reduction // 2
            add(f"E{before.bit_length() - 1}", pb.block.mid(pb.in_channels), before, n, expansion=True)
    if arch.head.conv_channels:
        add("final", arch.head.conv_channels, feature_levels(arch)[-1].reduction, None)
    return taps


def _edge(path: str, src: Tensor, level: int, width: int, loc) -> EdgePlan:
    d = level - src.level
    if d < 0:  # a finer target: 1x1 at the source, then nearest upsampling by 2^-d
        one = conv(f"{path}.conv", src.channels, width, src.size)
        out = (src.size[0] * 2**-d, src.size[1] * 2**-d)
        up = Layer(path=f"{path}.upsample", op="resize", in_channels=width, out_channels=width, in_size=src.size,
                   out_size=out, mode="nearest")
        return EdgePlan(src.name, [one, up], out)
    if d > 0:  # coarser: max-pool (kernel 2^d + 1, stride 2^d, 'same'), then 1x1
        f = 2**d
        pooled = (-(-src.size[0] // f), -(-src.size[1] // f))
        pool = Layer(path=f"{path}.pool", op="max_pool", in_channels=src.channels, out_channels=src.channels,
                     in_size=src.size, out_size=pooled, kernel_size=f + 1, stride=f)
        return EdgePlan(src.name, [pool, conv(f"{path}.conv", src.channels, width, pooled)], pooled)
    return EdgePlan(src.name, [conv(f"{path}.conv", src.channels, width, src.size)], src.size)


def op_layers(path: str, op, channels: int, width: int, size: tuple[int, int], loc) -> list[Layer]:
    """The layers of one graph op on a ``channels`` x ``size`` input in a node of ``width``."""
    if isinstance(op, IbnOp):
        mid = width * op.expansion
        layers = [conv(f"{path}.expand", channels, mid, size, act="relu6"),
                  conv(f"{path}.dw", mid, mid, size, op.kernel_size, op.stride, groups=mid, act="relu6")]
        layers.append(conv(f"{path}.project", mid, width, layers[-1].out_size))
    elif isinstance(op, FusedGroupedOp):
        if channels % op.groups:
            fail(loc + ("groups",), f"{channels} input channels do not split into {op.groups} groups")
        mid = channels * op.expansion
        layers = [conv(f"{path}.expand", channels, mid, size, op.kernel_size, op.stride, groups=op.groups,
                       act="relu6")]
        layers.append(conv(f"{path}.project", mid, width, layers[-1].out_size))
    elif isinstance(op, ConvOp):
        layers = [conv(f"{path}.conv", channels, op.out_channels or width, size, op.kernel_size, op.stride,
                       act=op.act)]
    else:
        assert isinstance(op, SepConvOp)
        layers = [conv(f"{path}.dw", channels, channels, size, op.kernel_size, op.stride, groups=channels,
                       act=op.dw_act, bias=op.dw_bias, norm=op.dw_norm)]
        layers.append(conv(f"{path}.pw", channels, op.out_channels or width, layers[-1].out_size, act=op.act))
    if op.residual:
        out = layers[-1]
        if op.stride != 1 or channels != out.out_channels:
            fail(loc + ("residual",), f"a residual needs the op to keep its shape, but it maps {channels} "
                                      f"channels at stride {op.stride} to {out.out_channels}")
        layers.append(Layer(path=f"{path}.add", op="add", in_channels=out.out_channels,
                            out_channels=out.out_channels, in_size=out.out_size, out_size=out.out_size,
                            num_inputs=2))
    return layers


def _start(det, size: int) -> tuple[DetectorPlan, list[str]]:
    """The plan's start, the stem or the backbone (its final conv where the graph reads ``final``), and every
    name in the graph in order."""
    if det.backbone is None:
        stem = conv(f"{det.stem.name}.conv", det.in_channels, det.stem.out_channels, (size, size),
                    det.stem.kernel_size, 2, act="relu6")
        tensors = {det.stem.name: Tensor(det.stem.name, det.stem.out_channels, stem.out_size, 1, 2)}
        return DetectorPlan([stem], tensors), [det.stem.name] + [n.name for n in det.nodes]
    taps = backbone_taps(det.backbone, size)
    stem = [replace(x, path=f"backbone.{x.path}") for x in backbone_layers(det.backbone, size)]
    plan = DetectorPlan(stem, dict(taps), taps=taps)
    _read_final(det, plan)
    return plan, list(taps) + [n.name for n in det.nodes]


def _read_final(det, plan: DetectorPlan) -> None:
    """Where the graph reads ``final``, the backbone's final 1x1 conv joins the plan; a backbone without one
    (``head.conv_channels`` 0 or null) has no ``final`` to read."""
    reads = [(("nodes", i, "inputs", j), x) for i, n in enumerate(det.nodes) for j, x in enumerate(n.inputs)]
    reads += [(("head", "sources", j), x) for j, x in enumerate(det.head.sources)]
    reads = [loc for loc, name in reads if name == "final"]
    if not reads:
        return
    final = plan.tensors.get("final")
    if final is None:
        fail(reads[0], "reads 'final', the backbone's final 1x1 conv, but backbone.head.conv_channels gives none")
    c = plan.tensors[f"C{final.level}"]
    plan.stem.append(conv("backbone.final", c.channels, final.channels, c.size, act=str(det.backbone.head.act)))


def _inputs(node, loc, tensors: dict[str, Tensor], order: list[str]) -> list[Tensor]:
    if node.name in tensors:
        fail(loc + ("name",), f"node {node.name!r} is defined twice")
    for j, name in enumerate(node.inputs):
        if name in order and name not in tensors:
            fail(loc + ("inputs", j), f"{name!r} comes later in the list: nodes are listed in topological "
                                      "order, so this edge would close a cycle")
        if name not in tensors:
            fail(loc + ("inputs", j), f"unknown input {name!r}; known: {', '.join(tensors)}")
    if len(set(node.inputs)) != len(node.inputs):
        fail(loc + ("inputs",), "an input is listed twice")
    return [tensors[name] for name in node.inputs]


def _resample(node, loc, inputs: list[Tensor]) -> tuple[list[EdgePlan], list[Layer], tuple[int, int]]:
    """A node's resample edges, the crops and the sum that combine them, and the size they are cropped to."""
    edges = [_edge(f"{node.name}.edge_{t.name}", t, node.level, node.width, loc + ("inputs", j))
             for j, t in enumerate(inputs)]
    finest = min(range(len(inputs)), key=lambda j: inputs[j].level)
    crop_to, combine = edges[finest].out_size, []
    for e in edges:
        if e.out_size[0] < crop_to[0] or e.out_size[1] < crop_to[1]:
            fail(loc + ("inputs",), f"edge from {e.source} gives {e.out_size[0]}x{e.out_size[1]}, smaller "
                                    f"than the {crop_to[0]}x{crop_to[1]} it is cropped to")
        if e.out_size != crop_to:
            combine.append(Layer(path=f"{node.name}.edge_{e.source}.crop", op="crop", in_channels=node.width,
                                 out_channels=node.width, in_size=e.out_size, out_size=crop_to))
    combine.append(Layer(path=f"{node.name}.sum", op="add", in_channels=node.width, out_channels=node.width,
                         in_size=crop_to, out_size=crop_to, act="relu6", num_inputs=len(inputs)))
    return edges, combine, crop_to


def _plan_node(node, loc, inputs: list[Tensor]) -> GraphNodePlan:
    edges, combine, crop_to = [], [], None
    if len(inputs) == 1:
        channels, cur, stride = inputs[0].channels, inputs[0].size, inputs[0].stride
    else:
        edges, combine, crop_to = _resample(node, loc, inputs)
        channels, cur, stride = node.width, crop_to, 2**node.level
    ops = []
    for k, op in enumerate(node.ops):
        if len(inputs) > 1 and op.stride != 1:
            fail(loc + ("ops", k, "stride"), "a node with resample edges works at its own level; a strided "
                                             "op would move it off that level")
        layers = op_layers(f"{node.name}.ops.{k}", op, channels, node.width, cur, loc + ("ops", k))
        ops.append(layers)
        channels, cur, stride = layers[-1].out_channels, layers[-1].out_size, stride * op.stride
    if channels != node.width:
        fail(loc + ("ops", len(node.ops) - 1), f"the last op gives {channels} channels, not the node's "
                                               f"width {node.width}")
    if len(inputs) == 1 and 2**node.level < stride:
        fail(loc + ("level",), f"level {node.level} (stride {2**node.level}) cannot be reached: {inputs[0].name} "
                               f"at stride {inputs[0].stride} and the ops' strides give stride {stride}")
    out = Tensor(node.name, node.width, cur, node.level, stride)
    return GraphNodePlan(node.name, edges, crop_to, combine, ops, out)


def _plan_head(det, plan: DetectorPlan) -> None:
    head, tensors = det.head, plan.tensors
    plan.anchors = head.anchors_per_location()
    for j, name in enumerate(head.sources):
        if name not in tensors or (det.stem is not None and name == det.stem.name):
            fail(("head", "sources", j), f"unknown node {name!r}; nodes: {', '.join(n.name for n in det.nodes)}")
        t, a = tensors[name], plan.anchors[j]
        plan.source_sizes.append(t.size)
        for part, outs in (("box", a * 4), ("cls", a * (head.num_classes + 1))):
            path = f"head.{j}.{part}"
            plan.head += [conv(f"{path}.dw", t.channels, t.channels, t.size, head.kernel_size, groups=t.channels,
                               act="relu6"),
                          conv(f"{path}.conv", t.channels, outs, t.size, bias=True, norm=False)]
    if len(set(head.sources)) != len(head.sources):
        fail(("head", "sources"), "a source is listed twice")


def plan_detector(det, input_size: int | None = None) -> DetectorPlan:
    """Every tensor and layer of ``det`` (a ``Detector``) at ``input_size`` (default: its deployment size),
    validating the graph; a bad graph raises a one-line ``SpecError`` naming the node and the field."""
    plan, order = _start(det, input_size or det.input_size)
    for i, node in enumerate(det.nodes):
        inputs = _inputs(node, ("nodes", i), plan.tensors, order)
        node_plan = _plan_node(node, ("nodes", i), inputs)
        plan.tensors[node.name] = node_plan.out
        plan.nodes.append(node_plan)
    _plan_head(det, plan)
    return plan


def detector_layers(det, input_size: int | None = None) -> list[Layer]:
    plan = plan_detector(det, input_size)
    return plan.stem + [x for n in plan.nodes for x in n.layers] + plan.head
