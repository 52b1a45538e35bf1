"""``autoseg-512``: Autoseg-EdgeTPU's backbone and BiFPN head searched together (reference 4.3).

Backbone: the 22 block positions of Autoseg-EdgeTPU-M, one block per stage (so each position has its own
width), strides fixed where M downsamples. Per position:

* the op: IBN, fused-IBN, GC-IBN, and skip at every position but a level's first;
* its kernel: {3, 5}; {1, 3, 5} for fused-IBN, whose kernel-1 form is Google's 1x1 expansion block, at stride
  1 only (SCALE-Sim maps a 1x1 stride-2 conv to the wrong output size). In the stride-32 level fused and GC
  kernels stop at 3: Google's models use 1x1 fused blocks there, and a full 5x5 conv on up to 480 channels
  would dominate the shared weights;
* its expansion: {1, 3, 6} for IBN; {3, 6} for GC-IBN, and for fused-IBN except at the first position, where
  expansion 1 with kernel 1 is Google's projection-only block;
* the GC group size, and whether the block keeps its residual where Google's models drop some;
* its width: the widths XS, S and M use there (a skipped position keeps the width before it).

Head: BiFPN cells {2, 3, 4}, width {64, 96, 128}, fusion (sum or EfficientDet's fast attention) and the finest
backbone level that feeds it (C3 or C4). Google published neither the search nor its choice sets; these are the
sets its released models use, and XS, S and M are points (a model with fewer blocks in a level than M fills the
level's last positions with skips).
"""

from __future__ import annotations

import itertools
import math
from typing import Literal

from ..models.segmentation import ADE20K_32, autoseg_backbone, bifpn_nodes
from ..spec import GCIBN, IBN, Act, Arch, FusedIBN, Network, SegmentationHead, SepConvOp, Skip, SpecError
from ..spec import Stage, feature_levels, parse_arch, parse_network
from ..spec.blocks import Spec
from .choice import Choice
from .space import SearchSpace

KERNELS, FUSED_KERNELS, EXPANSIONS, GROUP_SIZES = (3, 5), (1, 3, 5), (1, 3, 6), (12, 24)
CELLS, CHANNELS, FUSIONS, MIN_LEVELS = (2, 3, 4), (64, 96, 128), ("sum", "fastattn"), (3, 4)
MAX_LEVEL = 8  # Autoseg's BiFPN: P3-P8, levels above C5 pooled from it
ZOO = ("xs", "s", "m")


class BiFPN(Spec):
    """The template's stand-in for the BiFPN nodes: the head's searched settings; ``finish`` writes the nodes."""

    type: Literal["bifpn"] = "bifpn"
    min_level: int = 3
    channels: int = 96
    cells: int = 4
    fusion: str = "sum"

    def nodes(self, backbone: Arch):
        widths = {lv.reduction.bit_length() - 1: lv.channels for lv in feature_levels(backbone)}
        return bifpn_nodes(min_level=self.min_level, max_level=MAX_LEVEL, channels=self.channels, cells=self.cells,
                           fusion=self.fusion, in_channels=widths)


def _segments(strides: list[int]) -> list[list[int]]:
    """Positions grouped by level: a new group at every stride-2 position."""
    out: list[list[int]] = []
    for i, s in enumerate(strides):
        if s == 2 or not out:
            out.append([])
        out[-1].append(i)
    return out


def _flat(arch: Arch) -> list[tuple]:
    """(block, width) per block of an Autoseg-like backbone, in order."""
    return [(b, stage.out_channels) for stage in arch.stages for b in stage.blocks]


def _aligned(arch: Arch, strides: list[int]) -> list[tuple] | None:
    """The backbone's (block, width) on the template's positions: each level's blocks first, skips after
    them (at the width the level ends with). None when its levels do not fit."""
    blocks = _flat(arch)
    mine = _segments([b.stride for b, _ in blocks])
    theirs = _segments(strides)
    if len(mine) != len(theirs) or any(len(a) > len(b) for a, b in zip(mine, theirs)):
        return None
    out = []
    for a, b in zip(mine, theirs):
        picked = [blocks[i] for i in a]
        out += picked + [(Skip(), picked[-1][1])] * (len(b) - len(a))
    return out


def _template_backbone() -> tuple[Arch, list[int]]:
    m = autoseg_backbone("m")
    strides = [b.stride for b, _ in _flat(m)]
    zoo = [_aligned(autoseg_backbone(v), strides) for v in ZOO]
    segments = _segments(strides)
    last_level = set(segments[-1])
    stages = []
    for i, stride in enumerate(strides):
        widths = sorted({z[i][1] for z in zoo})
        residual_choice = any(not getattr(z[i][0], "id_skip", True) for z in zoo)
        id_skip = Choice((True, False)) if residual_choice else True
        kw = dict(stride=stride, id_skip=id_skip)
        expanding = Choice(EXPANSIONS[1:])  # expansion 1 is no GC-IBN, and a fused one only as the 1x1 first block
        full = KERNELS if i not in last_level else KERNELS[:1]  # full k x k convs: no 5x5 on 96-480 channels
        fused = (FUSED_KERNELS[:1] if stride == 1 else ()) + full
        options = [IBN.model_construct(kernel_size=Choice(KERNELS), expand_ratio=Choice(EXPANSIONS), **kw),
                   FusedIBN.model_construct(kernel_size=Choice(fused),
                                            expand_ratio=Choice(EXPANSIONS) if i == 0 else expanding, **kw),
                   GCIBN.model_construct(kernel_size=Choice(full), expand_ratio=expanding,
                                         group_size=Choice(GROUP_SIZES), **kw)]
        if not any(seg[0] == i for seg in segments):
            options.append(Skip.model_construct())
        stages.append(Stage.model_construct(out_channels=Choice(widths), blocks=(Choice(tuple(options)),)))
    template = Arch.model_construct(**{**dict(m), "name": "autoseg-512", "stages": tuple(stages),
                                       "drop_path_rate": 0.0})
    return template, strides


def _head(num_classes: int) -> SegmentationHead:
    return SegmentationHead(source="fused", bias_init=-math.log(99),
                            classifier=SepConvOp(out_channels=num_classes, bias=True, norm=False, act=Act.NONE))


def autoseg_512() -> SearchSpace:
    backbone, strides = _template_backbone()
    bifpn = BiFPN.model_construct(min_level=Choice(MIN_LEVELS), channels=Choice(CHANNELS), cells=Choice(CELLS),
                                  fusion=Choice(FUSIONS))
    template = Network.model_construct(name="autoseg-512", input_size=512, backbone=backbone, nodes=bifpn,
                                       head=_head(ADE20K_32))

    def finish(data: dict) -> Network:
        stages = data["backbone"]["stages"]
        for before, stage in zip(stages, stages[1:]):  # a skipped position has no width of its own
            if stage["blocks"][0]["type"] == "skip":
                stage["out_channels"] = before["out_channels"]
        try:
            arch = parse_arch(data["backbone"])
        except SpecError as err:  # keep the place: the search redraws the block it names
            raise SpecError(f"backbone.{err}", loc=("backbone",) + err.loc) from None
        nodes = BiFPN(**{k: v for k, v in data["nodes"].items() if k != "type"}).nodes(arch)
        return parse_network({**data, "backbone": arch, "nodes": nodes})

    def decode(net) -> Network | None:
        """``net`` in the template's form: blocks one per stage on the template's positions, BiFPN settings."""
        if not isinstance(net, Network) or net.tail is not None:
            return None
        aligned = _aligned(net.backbone, strides)
        if aligned is None:
            return None
        flat = net.backbone.replace(stages=tuple(Stage(out_channels=c, blocks=(b,)) for b, c in aligned))
        for values in itertools.product(MIN_LEVELS, CHANNELS, CELLS, FUSIONS):
            head = BiFPN(**dict(zip(("min_level", "channels", "cells", "fusion"), values)))
            if tuple(head.nodes(flat)) == net.nodes:
                return Network.model_construct(**{**dict(net), "backbone": flat, "nodes": head})
        return None

    return SearchSpace("autoseg-512", template, "Autoseg-EdgeTPU: backbone blocks and widths, BiFPN cells, width, "
                       "fusion and levels, 512x512x3, ADE20K-32", finish=finish, decode=decode)


__all__ = ["autoseg_512", "BiFPN"]
