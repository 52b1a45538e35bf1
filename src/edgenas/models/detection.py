"""SpaghettiNet-EdgeTPU S/M/L (reference 5.2) with the SSDLite head of Google's TF1 config (5.3), as data, and
the SSDLite baselines on classification backbones (MobileNetV2, MobileNetEdgeTPUV2-S).

Node lists as in TF OD API's ``ssd_spaghettinet_feature_extractor.py``. Written compactly: ``FG(k, e, s, g)`` is
``fused_grouped``, ``I(k, e, s)`` ``ibn``, ``Sp(k, s)`` ``sep``; ``r`` marks a residual. Outputs c0n1..c0n5
feed the head; at 320 they are 20x20, 10x10, 5x5, 3x3, 3x3 (c0n5 is nominally level 8 but has no stride).
"""

from __future__ import annotations

from .edgetpu_v2 import mobilenet_edgetpu_v2
from .mobilenet import mobilenet_v2
from ..spec import Arch, ConvOp, Detector, FusedGroupedOp, GraphNode, IbnOp, Norm, SepConvOp, SSDHead

COCO_CLASSES = 90
OUTPUTS = ("c0n1", "c0n2", "c0n3", "c0n4", "c0n5")


def FG(k, e, s, g, r=False):  # noqa: N802 - the reference's notation
    return FusedGroupedOp(kernel_size=k, expansion=e, stride=s, groups=g, residual=r)


def I(k, e, s=1, r=False):  # noqa: E741,N802
    return IbnOp(kernel_size=k, expansion=e, stride=s, residual=r)


def Sp(k, s=1, r=False):  # noqa: N802
    return SepConvOp(kernel_size=k, stride=s, residual=r)


# name -> (level, inputs); the same graph for S, M and L
EDGES = {"n0": (2, ("s0",)), "n1": (3, ("n0",)), "n2": (4, ("n1",)), "n3": (5, ("n2",)), "n4": (6, ("n3",)),
         "n5": (7, ("n4",)), "c0n0": (5, ("n3", "n4")), "c0n1": (4, ("n2", "c0n0")), "c0n2": (5, ("c0n1", "c0n0")),
         "c0n3": (6, ("n5", "c0n0")), "c0n4": (7, ("n5", "c0n0")), "c0n5": (8, ("c0n4",))}

# name -> (width, ops)
VARIANTS = {
    "s": {
        "n0": (48, [FG(3, 8, 2, 3)]),
        "n1": (64, [FG(3, 4, 2, 4), FG(3, 4, 1, 4, True), FG(3, 4, 1, 4, True)]),
        "n2": (72, [I(3, 8, 2), FG(3, 8, 1, 4, True), I(3, 8, r=True), I(3, 4, r=True)]),
        "n3": (88, [I(3, 8, 2), I(3, 8, r=True), I(3, 4, r=True), I(3, 4, r=True)]),
        "n4": (88, [I(3, 8, 2), Sp(5, r=True), Sp(5, r=True), Sp(5, r=True)]),
        "n5": (88, [Sp(5, 2), Sp(3, r=True)]),
        "c0n0": (144, [I(3, 4), I(3, 4, r=True), I(3, 4, r=True), I(3, 4, r=True)]),
        "c0n1": (120, [I(3, 8), I(3, 4, r=True), I(3, 4, r=True), I(3, 4, r=True)]),
        "c0n2": (168, [I(3, 4)]),
        "c0n3": (136, [I(3, 4), Sp(3, r=True)]),
        "c0n4": (136, [I(3, 4)]),
        "c0n5": (64, [Sp(3), Sp(3, r=True)]),
    },
    "m": {
        "n0": (48, [FG(3, 8, 2, 3)]),
        "n1": (64, [FG(3, 8, 2, 4), FG(3, 4, 1, 4, True), FG(3, 4, 1, 4, True), FG(3, 4, 1, 4, True)]),
        "n2": (72, [I(3, 8, 2), FG(3, 8, 1, 4, True), I(3, 8, r=True), I(3, 8, r=True)]),
        "n3": (96, [I(3, 8, 2), I(3, 8, r=True), I(3, 8, r=True), I(3, 4, r=True)]),
        "n4": (104, [I(3, 8, 2), I(3, 4, r=True), Sp(5, r=True), I(3, 4, r=True)]),
        "n5": (56, [Sp(5, 2), Sp(3, r=True)]),
        "c0n0": (152, [I(3, 8), I(3, 4, r=True), I(3, 4, r=True), I(3, 4, r=True)]),
        "c0n1": (120, [I(3, 8), I(3, 4, r=True), I(3, 4, r=True), I(3, 4, r=True)]),
        "c0n2": (168, [I(3, 4), Sp(3, r=True)]),
        "c0n3": (136, [Sp(3), Sp(3, r=True), Sp(3, r=True)]),
        "c0n4": (136, [I(3, 4), Sp(5, r=True)]),
        "c0n5": (64, [Sp(3), Sp(3, r=True)]),
    },
    "l": {
        "n0": (48, [FG(3, 8, 2, 3)]),
        "n1": (64, [FG(3, 8, 2, 4), FG(3, 8, 1, 4, True), FG(3, 8, 1, 4, True), FG(3, 4, 1, 4, True)]),
        "n2": (80, [I(3, 8, 2), I(3, 8, r=True), I(3, 8, r=True), I(3, 4, r=True)]),
        "n3": (104, [I(3, 8, 2), I(3, 8, r=True), I(3, 8, r=True), I(3, 8, r=True)]),
        "n4": (88, [I(3, 8, 2), I(5, 4, r=True), I(3, 4, r=True), I(3, 8, r=True)]),
        "n5": (56, [I(5, 4, 2), Sp(5, r=True)]),
        "c0n0": (160, [I(3, 8), I(3, 4, r=True), I(3, 4, r=True), I(3, 4, r=True)]),
        "c0n1": (120, [I(3, 8), I(3, 4, r=True), I(3, 4, r=True), I(3, 8, r=True)]),
        "c0n2": (168, [I(3, 4), I(3, 4, r=True), I(3, 4, r=True), I(3, 4, r=True)]),
        "c0n3": (112, [I(3, 8), I(3, 4, r=True), Sp(3, r=True)]),
        "c0n4": (128, [I(3, 4), I(3, 4, r=True)]),
        "c0n5": (64, [Sp(5), Sp(5, r=True)]),
    },
}


def spaghettinet_edgetpu(variant: str, num_classes: int = COCO_CLASSES, input_size: int = 320) -> Detector:
    nodes = tuple(GraphNode(name=name, level=EDGES[name][0], inputs=EDGES[name][1], width=width, ops=tuple(ops))
                  for name, (width, ops) in VARIANTS[variant].items())
    return Detector(name=f"spaghettinet_edgetpu_{variant}", input_size=input_size, nodes=nodes,
                    head=SSDHead(sources=OUTPUTS, num_classes=num_classes))


# SSDLite (Sandler et al. 2018, TF OD API's ``ssd_mobilenet_v2_feature_extractor`` with ``use_depthwise``): the
# backbone read at the expansion of the block that leaves stride 16 and after its final 1x1 conv, then four
# extra layers, each 1x1 to half the depth + BN + ReLU6, then 3x3 depthwise stride 2 + BN + ReLU6 and 1x1 to
# the depth + BN + ReLU6. At 320: 20x20, 10x10, 5x5, 3x3, 2x2, 1x1, 2034 anchors.
SSDLITE_TAPS = ("E4", "final")
SSDLITE_EXTRA = (512, 256, 256, 128)
SSDLITE_NORM = Norm(eps=1e-3, momentum=0.0003)  # the TF configs' BN: decay 0.9997, eps 1e-3


def ssdlite(name: str, backbone: Arch, num_classes: int = COCO_CLASSES, input_size: int = 320) -> Detector:
    """SSDLite over ``backbone``, which takes the detector's input size and BN settings (in one validation)."""
    nodes, previous = [], SSDLITE_TAPS[-1]
    for i, depth in enumerate(SSDLITE_EXTRA):
        nodes.append(GraphNode(name=f"extra{i + 1}", level=6 + i, width=depth, inputs=(previous,),
                               ops=(ConvOp(out_channels=depth // 2), SepConvOp(stride=2, dw_norm=True))))
        previous = nodes[-1].name
    return Detector(name=name, input_size=input_size, backbone=backbone.replace(input_size=input_size,
                                                                                norm=SSDLITE_NORM),
                    nodes=tuple(nodes), head=SSDHead(sources=SSDLITE_TAPS + tuple(n.name for n in nodes),
                                                     num_classes=num_classes),
                    norm=SSDLITE_NORM)


def ssdlite_mobilenet_v2(num_classes: int = COCO_CLASSES, input_size: int = 320) -> Detector:
    return ssdlite("ssdlite_mobilenet_v2", mobilenet_v2(), num_classes, input_size)


def ssdlite_mobilenet_edgetpu_v2_s(num_classes: int = COCO_CLASSES, input_size: int = 320) -> Detector:
    """As TF's ``ssd_mobilenet_edgetpu_feature_extractor`` reads MobileNetEdgeTPU (v1): the expansion of the
    first stride-32 block and the final 1x1 conv; Google released no detector on the V2 backbone."""
    return ssdlite("ssdlite_mobilenet_edgetpu_v2_s", mobilenet_edgetpu_v2("s"), num_classes, input_size)
