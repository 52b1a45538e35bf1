"""SpaghettiNet-EdgeTPU S/M/L (reference 5.2) with the SSDLite head of Google's TF1 config (5.3), as data.

Node lists as in TF OD API's ``ssd_spaghettinet_feature_extractor.py``. Written compactly: ``FG(k, e, s, g)`` is
``fused_grouped``, ``I(k, e, s)`` ``ibn``, ``Sp(k, s)`` ``sep``; ``r`` marks a residual. Outputs c0n1..c0n5
feed the head; at 320 they are 20x20, 10x10, 5x5, 3x3, 3x3 (c0n5 is nominally level 8 but has no stride).
"""

from __future__ import annotations

from ..spec import Detector, FusedGroupedOp, GraphNode, IbnOp, SepOp, SSDHead

COCO_CLASSES = 90
OUTPUTS = ("c0n1", "c0n2", "c0n3", "c0n4", "c0n5")


def FG(k, e, s, g, r=False):  # noqa: N802 - the reference's notation
    return FusedGroupedOp(kernel_size=k, expansion=e, stride=s, groups=g, residual=r)


def I(k, e, s=1, r=False):  # noqa: E741,N802
    return IbnOp(kernel_size=k, expansion=e, stride=s, residual=r)


def Sp(k, s=1, r=False):  # noqa: N802
    return SepOp(kernel_size=k, stride=s, residual=r)


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
