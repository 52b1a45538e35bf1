"""Shapes and layers of a ``Detector``: the one place that knows how SpaghettiNet's edges resample and crop,
what each op builds and what the SSD head predicts. The PyTorch builder follows ``plan_detector``; counts, the
profiler and every latency target read ``detector_layers``.

Sizes flow from the data, as in Google's graph: a node's size is its input's (passthrough) or the cropped
edges' (resample), divided by its ops' strides; its level is nominal and only sets the edges' resampling.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from .arch import Arch
from .blocks import IBN, conv
from .detector import Detector, FusedGroupedOp, GraphConvOp, IbnOp, SepOp
from .errors import SpecError, format_loc
from .layer import Layer
from .shapes import backbone_layers, block_plan, feature_levels


@dataclass(frozen=True)
class GraphTensor:
    name: str
    channels: int
    size: tuple[int, int]
    level: int
    stride: int  # the real stride from the input image (a node may sit below its nominal level)


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
    out: GraphTensor

    @property
    def layers(self) -> list[Layer]:
        return [x for e in self.edges for x in e.layers] + self.combine + [x for op in self.ops for x in op]


@dataclass(frozen=True)
class Tap:
    """Where a backbone feature is read: after ``block`` (-1 the stem), from the expansion of ``block``
    (``expansion``), or after the final 1x1 conv (``block`` None)."""

    block: int | None
    expansion: bool = False


@dataclass
class DetectorPlan:
    stem: list[Layer]  # the stem, or the whole backbone (and its final conv, where the graph reads it)
    tensors: dict[str, GraphTensor]
    nodes: list[GraphNodePlan] = field(default_factory=list)
    head: list[Layer] = field(default_factory=list)
    anchors: list[int] = field(default_factory=list)  # per source, anchors per cell
    source_sizes: list[tuple[int, int]] = field(default_factory=list)
    taps: dict[str, Tap] = field(default_factory=dict)  # backbone features by name (detectors with a backbone)


def backbone_taps(arch: Arch, size: int) -> tuple[dict[str, GraphTensor], dict[str, Tap]]:
    """The features a graph can read from ``arch`` at ``size``: ``C<level>`` per feature level, ``E<level>``
    per inverted bottleneck with a 1x1 expansion that leaves a level by stride 2, and ``final`` where the arch
    has a final 1x1 conv."""
    tensors, taps = {}, {}

    def add(name, channels, stride, tap):
        s = -(-size // stride)
        tensors[name] = GraphTensor(name, channels, (s, s), stride.bit_length() - 1, stride)
        taps[name] = tap

    for lv in feature_levels(arch):
        add(f"C{lv.reduction.bit_length() - 1}", lv.channels, lv.reduction, Tap(lv.block))
    for n, pb in enumerate(block_plan(arch)):
        if pb.stride == 2 and isinstance(pb.block, IBN) and pb.block.mid(pb.in_channels) != pb.in_channels:
            before = pb.reduction // 2
            add(f"E{before.bit_length() - 1}", pb.block.mid(pb.in_channels), before, Tap(n, expansion=True))
    if arch.head.conv_channels:
        last = feature_levels(arch)[-1]
        add("final", arch.head.conv_channels, last.reduction, Tap(None))
    return tensors, taps


def _fail(loc: tuple, message: str):
    raise SpecError(f"{format_loc(loc)}: {message}", loc=loc)


def _edge(path: str, src: GraphTensor, level: int, width: int, loc) -> EdgePlan:
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
        out = layers[-1].out_size
        layers.append(conv(f"{path}.project", mid, width, out))
    elif isinstance(op, FusedGroupedOp):
        if channels % op.groups:
            _fail(loc + ("groups",), f"{channels} input channels do not split into {op.groups} groups")
        mid = channels * op.expansion
        layers = [conv(f"{path}.expand", channels, mid, size, op.kernel_size, op.stride, groups=op.groups,
                       act="relu6")]
        out = layers[-1].out_size
        layers.append(conv(f"{path}.project", mid, width, out))
    elif isinstance(op, GraphConvOp):
        layers = [conv(f"{path}.conv", channels, op.out_channels or width, size, op.kernel_size, op.stride,
                       act="relu6")]
        out = layers[-1].out_size
    else:
        assert isinstance(op, SepOp)
        dw = (dict(act="relu6") if op.dw_norm else dict(bias=True, norm=False))
        layers = [conv(f"{path}.dw", channels, channels, size, op.kernel_size, op.stride, groups=channels, **dw)]
        out = layers[-1].out_size
        layers.append(conv(f"{path}.pw", channels, width, out, act="relu6"))
    out_channels = layers[-1].out_channels
    if op.residual:
        if op.stride != 1 or channels != out_channels:
            _fail(loc + ("residual",), f"a residual needs the op to keep its shape, but it maps {channels} "
                                       f"channels at stride {op.stride} to {out_channels}")
        layers.append(Layer(path=f"{path}.add", op="add", in_channels=out_channels, out_channels=out_channels,
                            in_size=out, out_size=out, num_inputs=2))
    return layers


def plan_detector(det: Detector, input_size: int | None = None) -> DetectorPlan:
    """Every tensor and layer of ``det`` at ``input_size`` (default: its deployment size), validating the graph;
    a bad graph raises a one-line ``SpecError`` naming the node and the field."""
    size = input_size or det.input_size
    if det.backbone is not None:
        tensors, taps = backbone_taps(det.backbone, size)
        stem = [replace(x, path=f"backbone.{x.path}") for x in backbone_layers(det.backbone, size)]
        plan = DetectorPlan(stem, tensors, taps=taps)
        inputs = {i for n in det.nodes for i in n.inputs} | set(det.head.sources)
        if "final" in inputs:
            c = tensors[f"C{tensors['final'].level}"]
            plan.stem.append(conv("backbone.final", c.channels, tensors["final"].channels, c.size,
                                  act=str(det.backbone.head.act)))
        order = list(tensors) + [n.name for n in det.nodes]
    else:
        stem = conv(f"{det.stem.name}.conv", det.in_channels, det.stem.out_channels, (size, size),
                    det.stem.kernel_size, 2, act="relu6")
        tensors = {det.stem.name: GraphTensor(det.stem.name, det.stem.out_channels, stem.out_size, 1, 2)}
        plan = DetectorPlan([stem], tensors)
        order = [det.stem.name] + [n.name for n in det.nodes]
    for i, node in enumerate(det.nodes):
        loc = ("nodes", i)
        if node.name in tensors:
            _fail(loc + ("name",), f"node {node.name!r} is defined twice")
        inputs = []
        for j, name in enumerate(node.inputs):
            if name in tensors:
                inputs.append(tensors[name])
            elif name in order:
                _fail(loc + ("inputs", j), f"{name!r} comes later in the list: nodes are listed in topological "
                                           "order, so this edge would close a cycle")
            else:
                _fail(loc + ("inputs", j), f"unknown input {name!r}; known: {', '.join(tensors)}")
        if len(set(node.inputs)) != len(node.inputs):
            _fail(loc + ("inputs",), "an input is listed twice")
        edges, combine, crop_to = [], [], None
        if len(inputs) == 1:
            x = inputs[0]
            channels, cur, stride = x.channels, x.size, x.stride
        else:
            edges = [_edge(f"{node.name}.edge_{t.name}", t, node.level, node.width, loc + ("inputs", j))
                     for j, t in enumerate(inputs)]
            finest = min(range(len(inputs)), key=lambda j: inputs[j].level)
            crop_to = edges[finest].out_size
            for e in edges:
                if e.out_size[0] < crop_to[0] or e.out_size[1] < crop_to[1]:
                    _fail(loc + ("inputs",), f"edge from {e.source} gives {e.out_size[0]}x{e.out_size[1]}, smaller "
                                             f"than the {crop_to[0]}x{crop_to[1]} it is cropped to")
                if e.out_size != crop_to:
                    combine.append(Layer(path=f"{node.name}.edge_{e.source}.crop", op="crop",
                                         in_channels=node.width, out_channels=node.width, in_size=e.out_size,
                                         out_size=crop_to))
            combine.append(Layer(path=f"{node.name}.sum", op="add", in_channels=node.width, out_channels=node.width,
                                 in_size=crop_to, out_size=crop_to, act="relu6", num_inputs=len(inputs)))
            channels, cur, stride = node.width, crop_to, 2**node.level
        ops = []
        for k, op in enumerate(node.ops):
            if len(inputs) > 1 and op.stride != 1:
                _fail(loc + ("ops", k, "stride"), "a node with resample edges works at its own level; a strided "
                                                  "op would move it off that level")
            layers = op_layers(f"{node.name}.ops.{k}", op, channels, node.width, cur, loc + ("ops", k))
            ops.append(layers)
            channels, cur, stride = layers[-1].out_channels, layers[-1].out_size, stride * op.stride
        if channels != node.width:
            _fail(loc + ("ops", len(node.ops) - 1), f"the last op gives {channels} channels, not the node's "
                                                    f"width {node.width}")
        if len(inputs) == 1 and 2**node.level < stride:
            _fail(loc + ("level",), f"level {node.level} (stride {2**node.level}) cannot be reached: {inputs[0].name} "
                                    f"at stride {inputs[0].stride} and the ops' strides give stride {stride}")
        out = GraphTensor(node.name, node.width, cur, node.level, stride)
        tensors[node.name] = out
        plan.nodes.append(GraphNodePlan(node.name, edges, crop_to, combine, ops, out))
    head = det.head
    plan.anchors = head.anchors_per_location()
    for j, name in enumerate(head.sources):
        if name not in tensors or (det.stem is not None and name == det.stem.name):
            _fail(("head", "sources", j), f"unknown node {name!r}; nodes: {', '.join(n.name for n in det.nodes)}")
        t, a = tensors[name], plan.anchors[j]
        plan.source_sizes.append(t.size)
        for part, outs in (("box", a * 4), ("cls", a * (head.num_classes + 1))):
            path = f"head.{j}.{part}"
            plan.head += [conv(f"{path}.dw", t.channels, t.channels, t.size, head.kernel_size, groups=t.channels,
                               act="relu6"),
                          conv(f"{path}.conv", t.channels, outs, t.size, bias=True, norm=False)]
    if len(set(head.sources)) != len(head.sources):
        _fail(("head", "sources"), "a source is listed twice")
    return plan


def detector_layers(det: Detector, input_size: int | None = None) -> list[Layer]:
    plan = plan_detector(det, input_size)
    return plan.stem + [x for n in plan.nodes for x in n.layers] + plan.head
