"""Google's released TFLite weights into our networks: ``from_tflite(name, path)``.

Every conv of the TFLite graph is mapped to one conv of ours: by position along the backbone (a chain, so
execution order is network order) and by the scope names Google's head builder writes (``resample_p3``,
``fpn_cell_2/fnode7``, ``seg_class_net/...``). The weights are dequantised; BatchNorm arrives folded into
each conv, so our BatchNorm is set to pass its input through plus the folded bias. The model is built with
TF's 'same' padding (the odd pixel after), which these weights were trained with. A shape that does not line
up, an unmapped conv, or one of ours left without a source, is refused with the layer named.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import EdgenasError
from ..nn import build_model
from .registry import get_arch
from .tflite_graph import read_tflite

SUPPORTED = ("autoseg_edgetpu_xs", "deeplab_mobilenet_edgetpu_slim", "mobilenet_edgetpu_100")


class TFLiteImportError(EdgenasError):
    """The TFLite file does not line up with the named network; the message names the layer."""


def _bifpn_target(name: str) -> str | None:
    """Our node for one of Google's head scopes (BiFPN P3-P8, 4 cells; reference 4.3)."""
    m = re.search(r"fpn_cell(?:_(\d+))?/fnode(\d+)/", name)
    if m:
        cell, n = int(m.group(1) or 0), int(m.group(2))
        return f"cell{cell}_td{7 - n}" if n < 5 else f"cell{cell}_bu{n - 1}"  # fnode0..4: P7'..P3'; 5..9: P4''..P8''
    m = re.search(r"resample_p(\d)/", name)
    if m:
        return f"p{m.group(1)}_in"
    if "/downsample_p3/" in name:  # Google's scope name; it makes P6 (a 1x1 of C5, then pooling)
        return "p6_conv"
    if "seg_class_fusion" in name:
        return "fused"
    if "seg-class-predict" in name:
        return "head"
    return None


def _deeplab_target(name: str) -> str | None:
    """Our node for one of EdgeTPU-DeepLab-slim's head scopes (``aspp0``, ``image_pooling``, ...)."""
    if "/Conv_1/" in name:  # the backbone's 1x1 to 1280, a node of ours
        return "conv_1"
    if name.startswith("logits/"):
        return "head"
    scope = name.split("/")[0]
    return scope if scope in ("aspp0", "image_pooling", "concat_projection") else None


# per network with a head: (is this file conv one of the backbone's?, our head node for the others)
_HEADS = {
    "autoseg_edgetpu_xs": (lambda n: "/mobilenet_edge_tpuv2/" in n, _bifpn_target),
    "deeplab_mobilenet_edgetpu_slim": (lambda n: n.startswith("MobilenetEdgeTPU/") and "/Conv_1/" not in n,
                                       _deeplab_target),
}


def _our_convs(model: nn.Module) -> tuple[list[tuple[str, nn.Conv2d]], dict[str, list[tuple[str, nn.Module]]]]:
    """Backbone convs in network order, and each head node's convs (with their modules) in order."""
    backbone = [(f"backbone.{n}", m) for n, m in model.backbone.named_modules() if isinstance(m, nn.Conv2d)]
    head: dict[str, list] = {}
    nodes = getattr(model, "nodes", {})
    for name, node in nodes.items():
        head[name] = [(f"nodes.{name}.{n}", m) for n, m in node.named_modules() if isinstance(m, nn.Conv2d)]
    if hasattr(model, "nodes"):
        head["head"] = [(f"head.{n}", m) for n, m in model.head.named_modules() if isinstance(m, nn.Conv2d)]
    return backbone, head


def _norm_after(model: nn.Module, path: str) -> nn.BatchNorm2d | None:
    """The BatchNorm that follows the conv at ``path`` (in its ConvNormAct, or next in a Sequential), if any."""
    parent_path, _, leaf = path.rpartition(".")
    parent = model.get_submodule(parent_path)
    if leaf == "conv" and isinstance(getattr(parent, "bn", None), nn.BatchNorm2d):
        return parent.bn
    if isinstance(parent, nn.Sequential):
        names = [n for n, _ in parent.named_children()]
        nxt = names.index(leaf) + 1
        if nxt < len(names) and isinstance(parent[nxt], nn.BatchNorm2d):
            return parent[nxt]
    return None


def _load_conv(model: nn.Module, path: str, conv: nn.Conv2d, weight: np.ndarray, bias: np.ndarray | None,
               depthwise: bool, where: str) -> None:
    w = torch.from_numpy(np.ascontiguousarray(weight.transpose(3, 0, 1, 2) if depthwise else
                                              weight.transpose(0, 3, 1, 2)))
    if tuple(w.shape) != tuple(conv.weight.shape):
        raise TFLiteImportError(f"{where}: weight {tuple(w.shape)} does not fit our {path} "
                                f"{tuple(conv.weight.shape)}")
    with torch.no_grad():
        conv.weight.copy_(w)
        b = torch.zeros(conv.out_channels) if bias is None else torch.from_numpy(bias.astype(np.float32))
        bn = _norm_after(model, path)
        if conv.bias is not None:
            conv.bias.copy_(b)
        elif bn is not None:  # BatchNorm folded away: ours passes through and adds the folded bias
            bn.weight.fill_(1.0)
            bn.bias.copy_(b)
            bn.running_mean.zero_()
            bn.running_var.fill_(1.0 - bn.eps)
        elif b.abs().max() > 0:
            raise TFLiteImportError(f"{where}: has a non-zero bias but our {path} has neither a bias nor a "
                                    "BatchNorm to hold it")


def _conv_entries(graph):
    out = []
    for op in graph.convolutions():
        w = graph.tensors[op.inputs[1]]
        b = graph.tensors[op.inputs[2]] if len(op.inputs) > 2 and op.inputs[2] >= 0 else None
        out.append((w.name, w.data, None if b is None else b.data, op.op == "DEPTHWISE_CONV_2D"))
    return out


def from_tflite(name: str, path: str | Path) -> nn.Module:
    """Our ``name`` network with the weights of Google's TFLite file at ``path`` (eval mode, TF padding)."""
    if name not in SUPPORTED:
        raise TFLiteImportError(f"from_tflite knows how {', '.join(SUPPORTED)} map onto Google's files, "
                                f"not {name!r}")
    graph = read_tflite(path)
    spec = get_arch(name)
    model = build_model(spec.replace(padding="tf")) if name in _HEADS else build_model(spec, padding="tf")
    entries = _conv_entries(graph)
    backbone, head = _our_convs(model)
    if name in _HEADS:
        in_backbone, target = _HEADS[name]
        in_bb = [e for e in entries if in_backbone(e[0])]
        rest = [e for e in entries if not in_backbone(e[0])]
    else:  # MobileNet-EdgeTPU: a chain; the top 1x1 conv and the logits follow the backbone
        in_bb, rest = entries[:len(backbone)], entries[len(backbone):]
    if len(in_bb) != len(backbone):
        raise TFLiteImportError(f"{path}: {len(in_bb)} backbone convs in the file, {len(backbone)} in our "
                                f"{name}")
    for (tname, w, b, dw), (ours, conv) in zip(in_bb, backbone):
        _load_conv(model, ours, conv, w, b, dw, f"{path}: {tname}")
    if name in _HEADS:
        queues = {k: list(v) for k, v in head.items()}
        for tname, w, b, dw in rest:
            node = target(tname)
            if node is None or not queues.get(node):
                raise TFLiteImportError(f"{path}: {tname} maps to no conv of our {name}")
            ours, conv = queues[node].pop(0)
            _load_conv(model, ours, conv, w, b, dw, f"{path}: {tname}")
        left = [p for q in queues.values() for p, _ in q]
        if left:
            raise TFLiteImportError(f"{path}: no weights for our {', '.join(left[:3])}"
                                    + (f" and {len(left) - 3} more" if len(left) > 3 else ""))
    else:
        _load_classifier_tail(model, rest, path)
    return model.eval()


def _load_classifier_tail(model: nn.Module, rest, path) -> None:
    if len(rest) != 2:
        raise TFLiteImportError(f"{path}: expected the top 1x1 conv and the logits after the backbone, "
                                f"found {len(rest)} convs")
    (top_name, w, b, _), (logit_name, lw, lb, _) = rest
    _load_conv(model, "head.conv.conv", model.head.conv.conv, w, b, False, f"{path}: {top_name}")
    linear = model.head.classifier
    weight = torch.from_numpy(np.ascontiguousarray(lw[:, 0, 0, :]))
    if tuple(weight.shape) != tuple(linear.weight.shape):
        raise TFLiteImportError(f"{path}: {logit_name}: weight {tuple(weight.shape)} does not fit our "
                                f"head.classifier {tuple(linear.weight.shape)}")
    with torch.no_grad():
        linear.weight.copy_(weight)
        linear.bias.copy_(torch.from_numpy(lb.astype(np.float32)))
