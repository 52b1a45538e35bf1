"""Non-maximum suppression and SSD post-processing, as TF OD API runs them for SSD.

* ``nms``: ``tf.image.non_max_suppression``. Greedy in decreasing score, equal scores taken lower index first;
  a box goes when its IoU with a box already kept exceeds ``iou_threshold`` (strictly); once ``max_output``
  are kept the rest go. Zero-area boxes overlap nothing.
* ``batched_nms``: the same within each class (``core/post_processing.py``
  ``multiclass_non_max_suppression``): boxes of different classes never suppress each other, and each class
  keeps at most ``max_per_class``.
* ``postprocess``: ``meta_architectures/ssd_meta_arch.py`` ``postprocess`` with
  ``batch_multiclass_non_max_suppression`` (``use_class_agnostic_nms: false``) and the config's numbers (score
  threshold 1e-8, IoU 0.6, 100 per class, 100 in all). Scores are the sigmoid of the logits, the background
  column 0 dropped; boxes are decoded against the anchors. Per class, the boxes scoring above
  ``score_threshold`` (strictly) go through ``nms`` keeping at most ``max_per_class``; the survivors of all
  classes are sorted by score (ties: lower class, then lower anchor), with ``clip`` clamped to the image
  [0, 1] and dropped when that leaves them empty (TF's clip window, which is the whole image for a fixed-shape
  resizer), and the first ``max_detections`` returned. Classes are 1..num_classes, the column index, as TF
  adds ``label_id_offset`` 1 to its 0-based output.

All three share one greedy pass over the boxes ranked best first, in blocks of 256: a block loses the boxes
that a box kept before it overlaps in the same class (or whose class is full), then settles greedy's choice
among the rest by iterating to the fixed point of "kept unless a kept box above in its class overlaps it or
fills the class", which is exact. Memory stays within kept x 256 IoUs. Since greedy decides a box from the
boxes ranked above it alone, ``postprocess`` ranks all N x C candidates in output order and stops the pass as
soon as it has ``max_detections``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import torch

from .boxes import box_area, decode, iou_matrix

_BLOCK = 256


class Detections(NamedTuple):
    """One image's detections, best first."""

    boxes: torch.Tensor  # [K, 4] normalized corners ymin, xmin, ymax, xmax
    scores: torch.Tensor  # [K]
    classes: torch.Tensor  # [K] long, 1..num_classes


def _check(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> None:
    if boxes.dim() != 2 or boxes.shape[1] != 4 or scores.shape != boxes.shape[:1]:
        raise ValueError(f"NMS takes boxes [K, 4] and scores [K], got {tuple(boxes.shape)} and "
                         f"{tuple(scores.shape)}")
    if not 0 <= iou_threshold <= 1:
        raise ValueError(f"iou_threshold must lie in [0, 1], got {iou_threshold}")


def _by_score(scores: torch.Tensor) -> torch.Tensor:
    return torch.sort(scores, descending=True, stable=True).indices


def _greedy(ranked: torch.Tensor, groups: torch.Tensor, iou_threshold: float,
            cap: int | None) -> Iterator[torch.Tensor]:
    """Greedy NMS of ``ranked`` boxes (best first) within ``groups`` (0..G-1), at most ``cap`` kept per group.

    Yields the kept positions block by block, in rank order, so a caller may stop once it has enough.
    """
    kept = torch.zeros(0, dtype=torch.long, device=ranked.device)
    room = torch.full((int(groups.max()) + 1 if len(groups) else 0,), len(ranked) if cap is None else cap,
                      dtype=torch.long, device=ranked.device)
    for start in range(0, len(ranked), _BLOCK):
        alive = torch.arange(start, min(start + _BLOCK, len(ranked)), device=ranked.device)
        hit = iou_matrix(ranked[kept], ranked[alive]) > iou_threshold
        alive = alive[~(hit & (groups[kept, None] == groups[alive])).any(0) & (room[groups[alive]] > 0)]
        above = (groups[alive, None] == groups[alive]).triu(1)  # [j, i]: j ranks above i, same group
        over = above & (iou_matrix(ranked[alive], ranked[alive]) > iou_threshold)
        keep = torch.ones_like(alive, dtype=torch.bool)
        while True:  # greedy's answer is the one fixed point of "kept unless a kept box above rules it out"
            settled = ~(over & keep[:, None]).any(0) & ((above & keep[:, None]).sum(0) < room[groups[alive]])
            if torch.equal(settled, keep):
                break
            keep = settled
        chosen = alive[keep]
        room -= torch.bincount(groups[chosen], minlength=len(room))
        kept = torch.cat([kept, chosen])
        yield chosen


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float,
        max_output: int | None = None) -> torch.Tensor:
    """Indices of the kept corner ``boxes`` [K, 4], by decreasing score; at most ``max_output`` of them."""
    return batched_nms(boxes, scores, torch.zeros_like(scores, dtype=torch.long), iou_threshold, max_output)


def batched_nms(boxes: torch.Tensor, scores: torch.Tensor, classes: torch.Tensor, iou_threshold: float,
                max_per_class: int | None = None) -> torch.Tensor:
    """NMS within each class of ``classes`` [K]: kept indices by decreasing score, equal scores by index."""
    _check(boxes, scores, iou_threshold)
    if classes.shape != scores.shape:
        raise ValueError(f"classes {tuple(classes.shape)} and scores {tuple(scores.shape)} differ in shape")
    if max_per_class is not None and max_per_class < 0:
        raise ValueError(f"the limit on kept boxes must be non-negative, got {max_per_class}")
    order = _by_score(scores)
    groups = torch.unique(classes, return_inverse=True)[1]
    kept = list(_greedy(boxes[order], groups[order], iou_threshold, max_per_class))
    return order[torch.cat([order[:0], *kept])]


@torch.no_grad()
def postprocess(cls_logits: torch.Tensor, box_deltas: torch.Tensor, anchors: torch.Tensor,
                score_threshold: float = 1e-8, iou_threshold: float = 0.6, max_detections: int = 100,
                max_per_class: int = 100, clip: bool = True) -> list[Detections]:
    """Detections per image from ``cls_logits`` [B, N, C+1] (column 0 background), ``box_deltas`` [B, N, 4]
    and corner ``anchors`` [N, 4]."""
    if cls_logits.dim() != 3 or cls_logits.shape[2] < 2:
        raise ValueError(f"cls_logits must be [B, N, C+1] with C >= 1, got {tuple(cls_logits.shape)}")
    if box_deltas.shape != (*cls_logits.shape[:2], 4) or anchors.shape != (cls_logits.shape[1], 4):
        raise ValueError(f"box_deltas must be [B, N, 4] and anchors [N, 4] for cls_logits "
                         f"{tuple(cls_logits.shape)}, got {tuple(box_deltas.shape)}, {tuple(anchors.shape)}")
    if max_detections < 1 or max_per_class < 1:
        raise ValueError(f"max_detections and max_per_class must be positive, got {max_detections} and "
                         f"{max_per_class}")
    if not 0 <= iou_threshold <= 1:
        raise ValueError(f"iou_threshold must lie in [0, 1], got {iou_threshold}")
    scores, boxes = torch.sigmoid(cls_logits[..., 1:]), decode(box_deltas, anchors)
    return [_detect(s, b, score_threshold, iou_threshold, max_detections, max_per_class, clip)
            for s, b in zip(scores, boxes)]


def _detect(scores: torch.Tensor, boxes: torch.Tensor, score_threshold: float, iou_threshold: float,
            max_detections: int, max_per_class: int, clip: bool) -> Detections:
    flat = scores.t().reshape(-1)  # class-major, so a stable sort breaks equal scores by class, then anchor
    ranked = (flat > score_threshold).nonzero()[:, 0]
    ranked = ranked[_by_score(flat[ranked])]
    anchor, cls = ranked % len(boxes), ranked // len(boxes)
    picked, found = [ranked[:0]], 0
    for chosen in _greedy(boxes[anchor], cls, iou_threshold, max_per_class):
        if clip:  # dropped after NMS, as TF clips the sorted survivors: an empty box still suppresses
            chosen = chosen[box_area(boxes[anchor[chosen]].clamp(0, 1)) != 0]
        picked.append(chosen)
        found += len(chosen)
        if found >= max_detections:
            break
    keep = torch.cat(picked)[:max_detections]
    out = boxes[anchor[keep]]
    return Detections(out.clamp(0, 1) if clip else out, flat[ranked[keep]], cls[keep] + 1)
