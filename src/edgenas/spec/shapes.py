"""Shape propagation, feature levels and analytic counts: the one place that knows a network's shapes.

The PyTorch builder takes its per-block strides, dilations and drop-path rates from ``block_plan``; the
latency models and the profiler take their layers from ``arch_layers``.
"""

from __future__ import annotations

from dataclasses import dataclass

from .arch import Arch
from .blocks import BlockBase, conv
from .layer import Layer


@dataclass(frozen=True)
class PlannedBlock:
    path: str
    stage: int
    index: int  # position within the stage
    in_channels: int
    out_channels: int
    block: BlockBase
    stride: int  # as built: 1 where the output stride turned a downsampling into dilation
    dilation: int
    drop_path: float  # stochastic-depth rate: arch rate x block number / number of blocks (Google)
    reduction: int  # cumulative stride after this block


@dataclass(frozen=True)
class FeatureLevel:
    """One multi-scale output of the backbone: taken after ``block`` (-1 is the stem)."""

    block: int
    channels: int
    reduction: int


@dataclass(frozen=True)
class Tensor:
    """A feature as a graph plan sees it: its channels, size and nominal level; its real stride from the input,
    where the plan follows it (a detector's node may sit below its nominal level). A backbone feature that a
    graph reads says where: after ``block`` (-1 the stem), inside it at its expansion (``expansion``), or, with
    ``block`` None, after the final 1x1 conv."""

    name: str
    channels: int
    size: tuple[int, int]
    level: int
    stride: int | None = None
    block: int | None = None
    expansion: bool = False


def block_plan(arch: Arch, output_stride: int | None = None) -> list[PlannedBlock]:
    """Per-block build settings. ``output_stride`` (8, 16, 32) caps downsampling with dilation (dense tasks)."""
    if output_stride is not None and output_stride not in (8, 16, 32):
        raise ValueError(f"output_stride must be 8, 16 or 32, got {output_stride}")
    reduction, dilation, plan = arch.stem.stride, 1, []
    total = arch.num_blocks
    for n, site in enumerate(arch.blocks()):
        block = site.block
        stride, block_dilation = block.stride, dilation
        if output_stride is not None and reduction * stride > output_stride:
            # As in timm's builder: this block keeps the old dilation, later ones use the multiplied one.
            dilation, stride = dilation * stride, 1
        reduction *= stride
        plan.append(PlannedBlock(site.path, site.stage, site.index, site.in_channels, site.out_channels, block,
                                 stride, block_dilation, arch.drop_path_rate * n / total, reduction))
    return plan


def feature_levels(arch: Arch, output_stride: int | None = None) -> list[FeatureLevel]:
    """Google's rule: one level per scale, the stem output first, then the output of the last block before
    every stride-2 block, and the last block's output, which always ends the list. Where the stem and early
    blocks share a scale the stem output is the level (MobileNetEdgeTPUV2: strides 2, 4, 8, 16, 32)."""
    nominal, built = block_plan(arch), block_plan(arch, output_stride)
    taps = {arch.stem.stride: FeatureLevel(-1, arch.stem.out_channels, arch.stem.stride)}  # by nominal scale
    for n, pb in enumerate(nominal):
        last = n == len(nominal) - 1
        if last or (nominal[n + 1].block.stride == 2 and pb.reduction not in taps):
            taps.pop(pb.reduction, None)
            taps[pb.reduction] = FeatureLevel(n, pb.out_channels, built[n].reduction)
    return list(taps.values())


def backbone_layers(arch: Arch, input_size: int | None = None, output_stride: int | None = None) -> list[Layer]:
    size = (input_size or arch.input_size,) * 2
    stem = arch.stem
    layers = [conv("stem", arch.in_channels, stem.out_channels, size, stem.kernel_size, stem.stride, act=stem.act)]
    size = layers[-1].out_size
    for pb in block_plan(arch, output_stride):
        block_layers = pb.block.layers(pb.path, pb.in_channels, pb.out_channels, size, pb.stride, pb.dilation)
        layers += block_layers
        if block_layers:
            size = block_layers[-1].out_size
    return layers


def head_layers(arch: Arch, size: tuple[int, int]) -> list[Layer]:
    head, ch, out = arch.head, arch.out_channels, []
    if head.conv_channels:
        out.append(conv("head.conv", ch, head.conv_channels, size, act=head.act))
        ch = head.conv_channels
    out.append(Layer(path="head.pool", op="pool", in_channels=ch, out_channels=ch, in_size=size, out_size=(1, 1)))
    if head.hidden_channels:
        out.append(_linear("head.hidden", ch, head.hidden_channels, act=head.act))
        ch = head.hidden_channels
    out.append(_linear("head.classifier", ch, head.num_classes))
    return out


def _linear(path: str, cin: int, cout: int, act="none") -> Layer:
    return Layer(path=path, op="linear", in_channels=cin, out_channels=cout, in_size=(1, 1), out_size=(1, 1),
                 bias=True, act=str(act))


def arch_layers(arch: Arch, input_size: int | None = None) -> list[Layer]:
    """Every layer of the classification network at ``input_size`` (default: the deployment size)."""
    layers = backbone_layers(arch, input_size)
    return layers + head_layers(arch, layers[-1].out_size if len(layers) else (input_size,) * 2)
