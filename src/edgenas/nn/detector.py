"""A ``Detector`` spec built in PyTorch: SpaghettiNet's graph and the SSDLite head, following
``spec.detector_plan`` layer for layer (tested against its analytic counts).

``forward`` returns ``(cls_logits [B, N, C+1], box_deltas [B, N, 4])`` over the anchors in TF's order (source,
then row, column, anchor of a cell); ``anchors`` ([N, 4] normalized corners) is a buffer. ``edgenas.det``
turns these into losses and detections.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..det import detector_anchors
from ..spec import ConvOp, Detector, FusedGroupedOp, IbnOp, Tensor
from ..spec.detector_plan import plan_detector
from .backbone import Backbone, init_weights
from .graph import Fuse, GraphNode, SamePool, apply_padding, run_graph
from .layers import ConvNormAct


class Edge(nn.Module):
    """A resample edge: 1x1 conv + BN then nearest upsampling (finer target), max-pool then 1x1 conv + BN
    (coarser), or the 1x1 conv + BN alone."""

    def __init__(self, in_channels: int, width: int, step: int, norm):
        super().__init__()
        self.step = step  # target level - source level
        self.pool = SamePool("max", 2**step + 1, 2**step) if step > 0 else None
        self.conv = ConvNormAct(in_channels, width, norm=norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pool is not None:
            x = self.pool(x)
        x = self.conv(x)
        return F.interpolate(x, scale_factor=2 ** -self.step, mode="nearest") if self.step < 0 else x


class GraphOpModule(nn.Module):
    def __init__(self, op, in_channels: int, width: int, norm, gc_mode: str = "native"):
        super().__init__()
        k, s = op.kernel_size, op.stride
        if isinstance(op, IbnOp):
            mid = width * op.expansion
            self.body = nn.Sequential(ConvNormAct(in_channels, mid, act="relu6", norm=norm),
                                      ConvNormAct(mid, mid, k, s, groups=mid, act="relu6", norm=norm),
                                      ConvNormAct(mid, width, norm=norm))
        elif isinstance(op, FusedGroupedOp):
            mid = in_channels * op.expansion
            self.body = nn.Sequential(ConvNormAct(in_channels, mid, k, s, groups=op.groups, act="relu6", norm=norm,
                                                  gc_mode=gc_mode),
                                      ConvNormAct(mid, width, norm=norm))
        elif isinstance(op, ConvOp):
            self.body = ConvNormAct(in_channels, op.out_channels or width, k, s, act=op.act, norm=norm)
        elif op.dw_norm:
            self.body = nn.Sequential(ConvNormAct(in_channels, in_channels, k, s, groups=in_channels, act=op.dw_act,
                                                  norm=norm),
                                      ConvNormAct(in_channels, op.out_channels or width, act=op.act, norm=norm))
        else:
            self.body = nn.Sequential(nn.Conv2d(in_channels, in_channels, k, s, k // 2, groups=in_channels,
                                                bias=op.dw_bias),
                                      ConvNormAct(in_channels, op.out_channels or width, act=op.act, norm=norm))
        self.residual = op.residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return y + x if self.residual else y


def detector_node(node, levels: dict[str, int], channels: dict[str, int], norm, gc_mode: str) -> GraphNode:
    """A SpaghettiNet node as a graph node: one ``Edge`` per input (none when there is one), the edges cropped
    to the size of the edge whose source has the lowest level (Google's rule), summed, ReLU6, then the ops."""
    many = len(node.inputs) > 1
    edges = [Edge(channels[i], node.width, node.level - levels[i], norm) if many else nn.Identity()
             for i in node.inputs]
    finest = min(range(len(node.inputs)), key=lambda j: levels[node.inputs[j]])
    c, ops = node.width if many else channels[node.inputs[0]], []
    for op in node.ops:
        ops.append(GraphOpModule(op, c, node.width, norm, gc_mode))
        c = op.out_channels if isinstance(op, ConvOp) and op.out_channels else node.width
    return GraphNode(node.inputs, edges, Fuse("sum", len(node.inputs), node.width, crop=finest),
                     nn.ReLU6() if many else nn.Identity(), nn.Sequential(*ops))


class SSDLiteHead(nn.Module):
    """Per source: 3x3 depthwise + BN + ReLU6 -> biased 1x1, once for box codes and once for class logits."""

    def __init__(self, channels: list[int], anchors: list[int], num_classes: int, kernel: int, bias_init: float,
                 norm):
        super().__init__()
        self.num_classes = num_classes

        def tower(c, outs):
            return nn.Sequential(ConvNormAct(c, c, kernel, groups=c, act="relu6", norm=norm), nn.Conv2d(c, outs, 1))

        self.box = nn.ModuleList(tower(c, a * 4) for c, a in zip(channels, anchors))
        self.cls = nn.ModuleList(tower(c, a * (num_classes + 1)) for c, a in zip(channels, anchors))
        self.bias_init = bias_init

    def reset_bias(self) -> None:
        for t in self.cls:
            nn.init.constant_(t[-1].bias, self.bias_init)

    def forward(self, feats: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        def flat(x, k):  # NCHW [B, A*k, H, W] -> [B, H*W*A, k], TF's anchor order
            return x.permute(0, 2, 3, 1).reshape(x.shape[0], -1, k)

        cls = torch.cat([flat(t(f), self.num_classes + 1) for t, f in zip(self.cls, feats)], 1)
        box = torch.cat([flat(t(f), 4) for t, f in zip(self.box, feats)], 1)
        return cls, box


class BackboneFeatures(Backbone):
    """A classification backbone read at named taps (``spec.detector_plan.backbone_taps``): after a block,
    inside an inverted bottleneck after its expansion (the tap the block exposes), or after the final 1x1
    conv. Its state-dict keys are the classifier's (``backbone.stem``, ``backbone.stages``; its ``head.conv``
    is ``backbone.final``), so ImageNet weights load into it."""

    def __init__(self, arch, taps: dict[str, Tensor], used: set[str], gc_mode: str = "native"):
        super().__init__(arch, gc_mode=gc_mode)
        self.after = {t.block: name for name, t in taps.items() if name in used and not t.expansion}
        self.inside = {t.block: name for name, t in taps.items() if name in used and t.expansion}
        self.final = (ConvNormAct(arch.out_channels, arch.head.conv_channels, act=arch.head.act, norm=arch.norm)
                      if "final" in used else None)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x, out = self.forward_taps(x, self.after, self.inside)
        if self.final is not None:
            out["final"] = self.final(x)
        return out


class DetectorModel(nn.Module):
    """A ``Detector`` spec as modules; ``gc_mode`` and ``padding`` as for every family (``nn.build_model``),
    padding None meaning the spec's own."""

    def __init__(self, det: Detector, *, gc_mode: str = "native", padding: str | None = None):
        super().__init__()
        self.spec = det
        plan = plan_detector(det)
        norm = det.norm
        if det.backbone is not None:
            used = {i for n in det.nodes for i in n.inputs} | set(det.head.sources)
            self.stem_name, self.backbone = None, BackboneFeatures(det.backbone, plan.taps, used, gc_mode)
            levels = {name: t.level for name, t in plan.tensors.items() if name in plan.taps}
            channels = {name: t.channels for name, t in plan.tensors.items() if name in plan.taps}
        else:
            self.stem_name = det.stem.name
            self.stem = ConvNormAct(det.in_channels, det.stem.out_channels, det.stem.kernel_size, 2, act="relu6",
                                    norm=norm)
            levels, channels = {det.stem.name: 1}, {det.stem.name: det.stem.out_channels}
        levels.update({n.name: n.level for n in det.nodes})
        channels.update({n.name: n.width for n in det.nodes})
        self.nodes = nn.ModuleDict({n.name: detector_node(n, levels, channels, norm, gc_mode) for n in det.nodes})
        self.sources = det.head.sources
        self.num_classes = det.head.num_classes
        self.head = SSDLiteHead([channels[s] for s in self.sources], plan.anchors, det.num_classes,
                                det.head.kernel_size, det.head.class_bias_init, norm)
        self.register_buffer("anchors", detector_anchors(det, plan.source_sizes), persistent=False)
        init_weights(self)
        self.head.reset_bias()
        apply_padding(self, padding or det.padding)

    def features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return run_graph(self.nodes, self.backbone(x) if self.stem_name is None else {self.stem_name: self.stem(x)})

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        known = self.features(x)
        return self.head([known[s] for s in self.sources])
