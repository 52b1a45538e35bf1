"""``spaghetti-320``: SpaghettiNet-EdgeTPU's detection graph searched (reference 5.1-5.2).

The graph of ``models.detection.EDGES`` (a stem, backbone nodes n0-n5, head nodes c0n0-c0n5 feeding the SSD
head). Per node: its width, and up to four ops in order, each IbnOp, FusedGroupedOp (groups 1-4) or SepConvOp
with its kernel {3, 5} and expansion {4, 8}; a ``none`` op ends the node's list (depth 1-4; a backbone node's
first op downsamples). Ops after the first keep their residual, as in every released variant. Each head node
also chooses among a few input sets (MnasFPN-like cross-level connections; the released graph's set among
them). Widths per node: the widths S, M and L use there, one step of 16 narrower than the narrowest and one
wider than the widest. S, M and L are points of it. Google published neither the search nor its sets.
"""

from __future__ import annotations

from typing import Literal

from ..models.detection import COCO_CLASSES, EDGES, OUTPUTS, VARIANTS
from ..spec import Detector, FusedGroupedOp, GraphNode, GraphStem, IbnOp, Norm, Preprocess, SepConvOp, SSDHead
from ..spec.blocks import Spec
from .choice import Choice
from .space import SearchSpace

KERNELS, EXPANSIONS, GROUPS, DEPTH = (3, 5), (4, 8), (1, 2, 3, 4), 4
# head node -> input sets, the released graph's first; every input comes earlier in the node list
INPUT_SETS = {
    "c0n0": ("n3+n4", "n3+n4+n5", "n2+n3+n4"),
    "c0n1": ("n2+c0n0", "n1+n2+c0n0", "n2+n3+c0n0"),
    "c0n2": ("c0n1+c0n0", "c0n1+c0n0+n3", "c0n1+n4"),
    "c0n3": ("n5+c0n0", "n4+c0n0", "n5+c0n2"),
    "c0n4": ("n5+c0n0", "n5+c0n3", "c0n3+c0n0"),
    "c0n5": ("c0n4", "c0n3+c0n4"),
}


class NoOp(Spec):
    """The template's end of a node's op list: it and every op after it are left out."""

    type: Literal["none"] = "none"


def _widths(name: str) -> tuple[int, ...]:
    used = {VARIANTS[v][name][0] for v in VARIANTS}
    return tuple(sorted(used | {max(16, min(used) - 16), max(used) + 16}))


def _op_choice(stride: int, last: bool) -> Choice:
    k, e = Choice(KERNELS), Choice(EXPANSIONS)
    options = [IbnOp.model_construct(kernel_size=k, expansion=e, stride=stride),
               FusedGroupedOp.model_construct(kernel_size=k, expansion=e, stride=stride, groups=Choice(GROUPS)),
               SepConvOp.model_construct(kernel_size=k, stride=stride).settled("detector")]
    return Choice(tuple(options + ([NoOp()] if last else [])))


def _node(name: str) -> GraphNode:
    level, inputs = EDGES[name]
    stride = 2 if name.startswith("n") else 1  # backbone nodes downsample in their first op
    ops = tuple(_op_choice(stride if j == 0 else 1, j > 0) for j in range(DEPTH))
    joined = Choice(INPUT_SETS[name]) if name in INPUT_SETS else "+".join(inputs)
    return GraphNode.model_construct(name=name, level=level, width=Choice(_widths(name)), inputs=joined, ops=ops)


def finish(data: dict) -> dict:
    """Inputs split at '+'; each node's ops up to its first ``none``, every op after the first residual."""
    nodes = []
    for node in data["nodes"]:
        ops = []
        for op in node["ops"]:
            if op["type"] == "none":
                break
            ops.append({**op, "residual": bool(ops)})
        nodes.append({**node, "inputs": tuple(node["inputs"].split("+")), "ops": ops})
    return {**data, "nodes": nodes}


def decode(det) -> Detector | None:
    """``det`` in the template's form: joined inputs, op lists padded with ``none``, residual flags cleared."""
    if not isinstance(det, Detector) or det.backbone is not None or len(det.nodes) != len(EDGES):
        return None
    nodes = []
    for node in det.nodes:
        if len(node.ops) > DEPTH:
            return None
        ops = tuple(op.model_copy(update={"residual": False}) for op in node.ops) + (NoOp(),) * (DEPTH - len(node.ops))
        nodes.append(GraphNode.model_construct(**{**dict(node), "inputs": "+".join(node.inputs), "ops": ops}))
    return Detector.model_construct(**{**dict(det), "nodes": tuple(nodes)})


def spaghetti_320() -> SearchSpace:
    template = Detector.model_construct(name="spaghetti-320", input_size=320, stem=GraphStem(),
                                        nodes=tuple(_node(n) for n in EDGES),
                                        head=SSDHead(sources=OUTPUTS, num_classes=COCO_CLASSES),
                                        norm=Norm(eps=1e-3, momentum=0.03), preprocess=Preprocess())
    return SearchSpace("spaghetti-320", template, "SpaghettiNet-EdgeTPU: per node width, ops (type, kernel, "
                       "expansion, groups, depth) and head-node inputs, 320x320x3, COCO", finish=finish,
                       decode=decode)


__all__ = ["spaghetti_320", "NoOp"]
