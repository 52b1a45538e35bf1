"""Segmentation networks as data: DeepLabv3+ over any backbone, Autoseg-EdgeTPU's searched backbones and its
BiFPN head (reference sections 4.2 and 4.3). Each generator returns a ``Network``; the builder, the counts and
the latency targets read it like any other spec.
"""

from __future__ import annotations

import math

from ..spec import IBN, Act, Arch, ConvOp, FusedIBN, Head, Network, Node, Norm, PoolOp, SegmentationHead
from ..spec import Preprocess, SepConvOp, Stage, Stem, Tail, feature_levels
from ..spec.ops import DropoutOp
from .edgetpu_v1 import mobilenet_edgetpu

ADE20K_32 = 32  # Google's ADE20K-32 protocol: 31 scored classes and an ignored channel 0 (reference 4.1)

# --- Autoseg-EdgeTPU's searched backbones (reference 4.3) ----------------------------------------------
# (op, kernel, expand_ratio, stride, out_channels, residual allowed); "D" depthwise IBN, "F" fused IBN,
# "P" the projection-only first block (a fused IBN with expand_ratio 1). ``ns`` = id_skip False.
_D, _F = "D", "F"
AUTOSEG_BACKBONES = {
    "xs": ((3, 32), [
        ("P", 1, 1, 1, 12, True),
        (_F, 3, 6, 2, 24, True), (_D, 3, 3, 1, 24, True),
        (_F, 3, 3, 2, 60, True), (_D, 3, 6, 1, 40, True),
        (_D, 5, 3, 2, 40, True), (_D, 3, 6, 1, 40, True), (_F, 3, 6, 1, 120, True), (_D, 3, 6, 1, 168, True),
        (_D, 5, 6, 1, 84, True), (_D, 5, 3, 1, 84, True),
        (_D, 5, 1, 2, 84, False), (_F, 1, 6, 1, 288, False), (_D, 5, 1, 1, 288, False), (_F, 1, 3, 1, 96, False),
        (_D, 5, 1, 1, 96, False), (_F, 1, 6, 1, 96, False), (_D, 5, 1, 1, 96, False), (_F, 1, 6, 1, 96, False),
        (_D, 5, 3, 1, 480, True),
    ]),
    "s": ((3, 32), [
        ("P", 1, 1, 1, 12, True),
        (_F, 3, 6, 2, 36, True), (_D, 5, 3, 1, 18, True),
        (_F, 5, 6, 2, 60, True), (_D, 3, 3, 1, 60, True),
        (_D, 5, 6, 2, 120, True), (_D, 3, 3, 1, 120, True), (_D, 5, 6, 1, 120, True), (_D, 3, 6, 1, 112, True),
        (_D, 5, 6, 1, 112, True), (_D, 5, 6, 1, 112, True),
        (_D, 5, 1, 2, 112, False), (_F, 1, 6, 1, 192, False), (_D, 5, 1, 1, 192, False), (_F, 1, 6, 1, 96, False),
        (_D, 5, 3, 1, 96, True), (_D, 5, 1, 1, 96, False), (_F, 1, 6, 1, 192, False), (_D, 5, 1, 1, 192, False),
        (_F, 1, 3, 1, 160, False),
    ]),
    "m": ((3, 32), [
        (_D, 5, 1, 1, 16, True),
        (_F, 3, 6, 2, 36, True), (_D, 3, 3, 1, 36, True),
        (_F, 3, 6, 2, 60, True), (_D, 3, 6, 1, 60, True),
        (_F, 5, 6, 2, 120, True), (_D, 5, 6, 1, 120, True), (_F, 3, 6, 1, 80, True), (_D, 3, 6, 1, 168, True),
        (_D, 5, 6, 1, 168, True), (_D, 5, 1, 1, 168, False), (_F, 1, 6, 1, 168, False),
        (_D, 3, 1, 2, 168, False), (_F, 1, 3, 1, 192, False), (_D, 5, 1, 1, 192, False), (_F, 1, 6, 1, 288, False),
        (_D, 5, 1, 1, 288, False), (_F, 1, 6, 1, 96, False), (_D, 5, 1, 1, 96, False), (_F, 1, 3, 1, 192, False),
        (_D, 5, 1, 1, 192, False), (_F, 1, 3, 1, 320, False),
    ]),
}
AUTOSEG_DROP_PATH = {"xs": 0.2, "s": 0.2, "m": 0.3}


def autoseg_backbone(variant: str, input_size: int = 512) -> Arch:
    """Autoseg-EdgeTPU-{XS,S,M}'s backbone. Consecutive blocks of one width share a stage."""
    (stem_k, stem_c), rows = AUTOSEG_BACKBONES[variant]
    stages: list[tuple[int, list]] = []
    for op, k, e, s, c, skip in rows:
        if op == "D":
            block = IBN(kernel_size=k, expand_ratio=e, stride=s, id_skip=skip)
        else:  # "P" is Google's projection-only block: a fused IBN with expand_ratio 1
            block = FusedIBN(kernel_size=k, expand_ratio=e, stride=s, id_skip=skip)
        if stages and stages[-1][0] == c:
            stages[-1][1].append(block)
        else:
            stages.append((c, [block]))
    return Arch(name=f"autoseg_edgetpu_backbone_{variant}", input_size=input_size,
                stem=Stem(out_channels=stem_c, kernel_size=stem_k, stride=2),
                stages=tuple(Stage(out_channels=c, blocks=tuple(b)) for c, b in stages),
                head=Head(conv_channels=1280, num_classes=1001), drop_path_rate=AUTOSEG_DROP_PATH[variant])


# --- BiFPN (reference 4.3; EfficientDet's graph, Google's Autoseg defaults) --------------------------
def _sep(channels: int, act: Act = Act.RELU6) -> SepConvOp:
    # Keras SeparableConv2D (no BN or act between depthwise and pointwise, no bias), then BN and the act
    return SepConvOp(out_channels=channels, kernel_size=3, norm=True, act=act)


def bifpn_nodes(min_level: int = 3, max_level: int = 8, channels: int = 96, cells: int = 4,
                fusion: str = "sum", backbone_max: int = 5, in_channels: dict[int, int] | None = None) -> list[Node]:
    """The BiFPN nodes over backbone levels ``C<min_level>..C<backbone_max>`` and pooled levels above them.

    Inputs whose width differs from ``channels`` get a 1x1 conv + BN first; the levels above the backbone
    come from a 1x1 conv of the coarsest backbone feature, then repeated average pooling. In each cell, the
    top-down path (P(max-1)'..P(min)') then the bottom-up path (P(min+1)''..P(max)''), every node a
    ``fusion`` of its inputs followed by separable 3x3 + BN + ReLU6."""
    in_channels = in_channels or {}
    nodes: list[Node] = []
    current: dict[int, str] = {}
    for level in range(min_level, backbone_max + 1):
        src = f"C{level}"
        if in_channels.get(level, channels) != channels:
            nodes.append(Node(name=f"p{level}_in", inputs=(src,), level=level, ops=(ConvOp(out_channels=channels,
                                                                                          act=Act.NONE),)))
            src = f"p{level}_in"
        current[level] = src
    if max_level > backbone_max:  # the extra levels: 1x1 conv (with bias) of the coarsest feature, then pooling
        nodes.append(Node(name=f"p{backbone_max + 1}_conv", inputs=(f"C{backbone_max}",), level=backbone_max,
                          ops=(ConvOp(out_channels=channels, bias=True, norm=False, act=Act.NONE),)))
        prev = f"p{backbone_max + 1}_conv"
        for level in range(backbone_max + 1, max_level + 1):
            nodes.append(Node(name=f"p{level}_in", inputs=(prev,), level=level))
            prev = current[level] = f"p{level}_in"
    for cell in range(cells):
        top_down: dict[int, str] = {max_level: current[max_level]}
        for level in range(max_level - 1, min_level - 1, -1):
            name = f"cell{cell}_td{level}"
            nodes.append(Node(name=name, inputs=(current[level], top_down[level + 1]), level=level,
                              combine=fusion, ops=(_sep(channels),)))
            top_down[level] = name
        out = {min_level: top_down[min_level]}
        for level in range(min_level + 1, max_level + 1):
            name = f"cell{cell}_bu{level}"
            inputs = (current[level], top_down[level], out[level - 1]) if level < max_level else \
                (current[level], out[level - 1])
            nodes.append(Node(name=name, inputs=inputs, level=level, combine=fusion, ops=(_sep(channels),)))
            out[level] = name
        current = out
    # the output node: every level resized to the finest and summed, then separable 3x3 + BN + ReLU6
    nodes.append(Node(name="fused", inputs=tuple(current[lv] for lv in range(min_level, max_level + 1)),
                      level=min_level, combine=fusion, ops=(_sep(channels),)))
    return nodes


def autoseg_edgetpu(variant: str, num_classes: int = ADE20K_32, fusion: str = "sum", cells: int = 4,
                    tail: str | None = None) -> Network:
    """Autoseg-EdgeTPU-{XS,S,M}: searched backbone, BiFPN P3-P8 of 96 channels, stride-8 class head."""
    backbone = autoseg_backbone(variant)
    widths = {lv.reduction.bit_length() - 1: lv.channels for lv in feature_levels(backbone)}
    head = SegmentationHead(source="fused", bias_init=-math.log(99),
                            classifier=SepConvOp(out_channels=num_classes, bias=True, norm=False, act=Act.NONE))
    return Network(name=f"autoseg_edgetpu_{variant}", input_size=512, backbone=backbone,
                   nodes=tuple(bifpn_nodes(fusion=fusion, cells=cells, in_channels=widths)), head=head,
                   tail=Tail(steps=tail) if tail else None)


# --- DeepLabv3+ (reference 4.2; Model Garden's ASPP and DeepLabv3+ fusion head) -------------------------
def deeplabv3plus_nodes(level: int = 5, low_level: int = 4, aspp_channels: int = 128, rates=(5, 10, 15),
                        pool_kernel: int | None = 16, dropout: float = 0.3, low_channels: int = 48,
                        head_channels: int = 256, head_convs: int = 2) -> list[Node]:
    """ASPP on ``C<level>`` (1x1, three depthwise-separable atrous branches, image pooling), projected and
    dropped out; fused with a 1x1 of ``C<low_level>`` by concatenation; then ``head_convs`` depthwise-separable
    convs. Google's 256-pixel pooling window is ``pool_kernel`` feature pixels (16 at stride 32 of 512: one
    window over the whole map)."""
    src = f"C{level}"
    relu = Act.RELU
    nodes = [Node(name="aspp_1x1", inputs=(src,), level=level, ops=(ConvOp(out_channels=aspp_channels, act=relu),))]
    for i, rate in enumerate(rates):
        # Model Garden's depthwise ASPP branch: depthwise 3x3 dilated (no BN) -> 1x1 -> BN -> ReLU
        nodes.append(Node(name=f"aspp_rate{i}", inputs=(src,), level=level,
                          ops=(SepConvOp(out_channels=aspp_channels, dilation=rate, act=relu),)))
    pool = PoolOp(kind="avg", kernel_size=pool_kernel, stride=pool_kernel) if pool_kernel else PoolOp()
    nodes.append(Node(name="aspp_pool", inputs=(src,), level=level,
                      ops=(pool, ConvOp(out_channels=aspp_channels, act=relu))))
    branches = ("aspp_1x1", *(f"aspp_rate{i}" for i in range(len(rates))), "aspp_pool")
    nodes.append(Node(name="aspp", inputs=branches, level=level, combine="concat",
                      ops=(ConvOp(out_channels=aspp_channels, act=relu), DropoutOp(rate=dropout))))
    nodes.append(Node(name="low", inputs=(f"C{low_level}",), level=low_level,
                      ops=(ConvOp(out_channels=low_channels, act=relu),)))
    convs = tuple(SepConvOp(out_channels=head_channels, dw_norm=True, dw_act=relu, act=relu)
                  for _ in range(head_convs))
    nodes.append(Node(name="decoder", inputs=("aspp", "low"), level=low_level, combine="concat", ops=convs))
    return nodes


def deeplabv3plus(backbone: Arch, name: str, num_classes: int = ADE20K_32, tail: str | None = None,
                  **kwargs) -> Network:
    """DeepLabv3+ over ``backbone`` with Google's EdgeTPU settings (BN eps 2e-3, decay 0.99)."""
    head = SegmentationHead(source="decoder", classifier=ConvOp(out_channels=num_classes, bias=True, norm=False,
                                                                act=Act.NONE))
    return Network(name=name, input_size=512, backbone=backbone.replace(input_size=512),
                   nodes=tuple(deeplabv3plus_nodes(**kwargs)), head=head, norm=Norm(eps=2e-3, momentum=0.01),
                   tail=Tail(steps=tail) if tail else None)


# --- EdgeTPU-DeepLab-slim (TF research/deeplab's model zoo; read from Google's Cityscapes file) ---------
CITYSCAPES = 19


def deeplab_edgetpu_slim(num_classes: int = CITYSCAPES, tail: str | None = None) -> Network:
    """EdgeTPU-DeepLab-slim as Google's Cityscapes TFLite holds it: MobileNet-EdgeTPU at depth multiplier 0.75
    (stem 24, widths 16-144) at output stride 16 (the last stride-2 block keeps stride 1, the blocks after it
    dilate by 2), its 1x1 conv to 1280 kept; a light ASPP on that: image pooling and a 1x1 branch, 128 each,
    concatenated and projected to 128; a 1x1 classifier with bias. Inputs (pixel - 128) / 128, at 513."""
    relu = Act.RELU
    half = 128 / 255  # the file's input: real = (q - 128) / 128
    backbone = mobilenet_edgetpu(0.75).replace(input_size=513, preprocess=Preprocess(mean=(half,) * 3,
                                                                                      std=(half,) * 3))
    nodes = (
        Node(name="conv_1", inputs=("C5",), level=5, ops=(ConvOp(out_channels=1280, act=relu),)),
        Node(name="aspp0", inputs=("conv_1",), level=5, ops=(ConvOp(out_channels=128, act=relu),)),
        Node(name="image_pooling", inputs=("conv_1",), level=5,
             ops=(PoolOp(), ConvOp(out_channels=128, act=relu))),
        Node(name="concat_projection", inputs=("image_pooling", "aspp0"), level=5, combine="concat",
             ops=(ConvOp(out_channels=128, act=relu), DropoutOp(rate=0.1))),
    )
    head = SegmentationHead(source="concat_projection", classifier=ConvOp(out_channels=num_classes, bias=True,
                                                                         norm=False, act=Act.NONE))
    return Network(name="deeplab_mobilenet_edgetpu_slim", input_size=513, backbone=backbone, output_stride=16,
                   nodes=nodes, head=head, norm=Norm(eps=1e-3, momentum=0.003),
                   tail=Tail(steps=tail) if tail else None)
