"""Box arithmetic for SSD: formats, IoU, TF's Faster R-CNN box coder, the argmax matcher, target assignment.

Boxes are normalized corners ``[ymin, xmin, ymax, xmax]``, TF OD API's order (``core/box_list.py``), unless a
name says ``center``: ``[ycenter, xcenter, h, w]``. Semantics follow TF OD API:

* ``iou_matrix``: ``core/box_list_ops.py`` ``iou``, intersection over union, 0 where boxes do not meet.
* ``encode``/``decode``: ``box_coders/faster_rcnn_box_coder.py`` with scale factors (10, 10, 5, 5). On
  centres and sizes, a box's code against its anchor is
  ``[ty, tx, th, tw] = [10 (y - ya) / ha, 10 (x - xa) / wa, 5 log(h / ha), 5 log(w / wa)]``; encoding first
  adds 1e-8 to all four sizes, as TF does, so empty boxes stay finite.
* ``argmax_match``: ``matchers/argmax_matcher.py`` with ``negatives_lower_than_unmatched``. An anchor takes
  the ground truth it overlaps most when that IoU is at least ``matched_threshold``; below
  ``unmatched_threshold`` it is ``UNMATCHED`` (-1), in between ``IGNORED`` (-2). With
  ``force_match_for_each_row`` every ground-truth box then claims its best anchor whatever the IoU; an anchor
  claimed by several goes to the lowest index. Ties in an argmax also go to the lowest index, as
  ``tf.argmax``.
* ``target_assign``: ``core/target_assigner.py`` as ``meta_architectures/ssd_meta_arch.py`` drives it. Class
  targets have ``num_classes + 1`` columns, column 0 the background (``add_background_class``), so label ``k``
  (1..num_classes) is column ``k``. Anchors without a match get all zeros when ``background_as_zeros`` (the
  SpaghettiNet config's ``encode_background_as_zeros: true``), else a 1 in column 0. Class weights are 1
  except on ignored anchors; box targets and weights are non-zero on matched anchors only.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

SCALE_FACTORS = (10.0, 10.0, 5.0, 5.0)
UNMATCHED, IGNORED = -1, -2
_EPS = 1e-8  # faster_rcnn_box_coder.EPSILON


def _check_boxes(boxes: torch.Tensor, name: str) -> None:
    if boxes.shape[-1:] != (4,):
        raise ValueError(f"{name} must end in 4 coordinates, got shape {tuple(boxes.shape)}")


def corners_to_center(boxes: torch.Tensor) -> torch.Tensor:
    """``[..., ymin, xmin, ymax, xmax]`` -> ``[..., ycenter, xcenter, h, w]``."""
    _check_boxes(boxes, "boxes")
    lo, hi = boxes[..., :2], boxes[..., 2:]
    return torch.cat([(lo + hi) / 2, hi - lo], -1)


def center_to_corners(boxes: torch.Tensor) -> torch.Tensor:
    """``[..., ycenter, xcenter, h, w]`` -> ``[..., ymin, xmin, ymax, xmax]``."""
    _check_boxes(boxes, "boxes")
    center, half = boxes[..., :2], boxes[..., 2:] / 2
    return torch.cat([center - half, center + half], -1)


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    _check_boxes(boxes, "boxes")
    return (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])


def iou_matrix(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pairwise IoU of corner boxes ``a`` [M, 4] and ``b`` [N, 4]: [M, N], 0 where they do not meet."""
    if a.dim() != 2 or b.dim() != 2:
        raise ValueError(f"iou_matrix takes boxes [M, 4] and [N, 4], got {tuple(a.shape)}, {tuple(b.shape)}")
    _check_boxes(a, "a")
    _check_boxes(b, "b")
    lo = torch.maximum(a[:, None, :2], b[None, :, :2])
    hi = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (hi - lo).clamp(min=0).prod(-1)
    union = box_area(a)[:, None] + box_area(b)[None, :] - inter
    return torch.where(inter > 0, inter / union, torch.zeros_like(inter))


def encode(boxes: torch.Tensor, anchors: torch.Tensor,
           scale_factors: tuple[float, float, float, float] = SCALE_FACTORS) -> torch.Tensor:
    """Codes ``[ty, tx, th, tw]`` of corner ``boxes`` against corner ``anchors`` (broadcasting shapes)."""
    y, x, h, w = corners_to_center(boxes).unbind(-1)
    ya, xa, ha, wa = corners_to_center(anchors).unbind(-1)
    ha, wa, h, w = ha + _EPS, wa + _EPS, h + _EPS, w + _EPS
    sy, sx, sh, sw = scale_factors
    codes = [(y - ya) / ha * sy, (x - xa) / wa * sx, torch.log(h / ha) * sh, torch.log(w / wa) * sw]
    return torch.stack(codes, -1)


def decode(codes: torch.Tensor, anchors: torch.Tensor,
           scale_factors: tuple[float, float, float, float] = SCALE_FACTORS) -> torch.Tensor:
    """Corner boxes from ``codes`` against corner ``anchors`` (broadcasting shapes): ``encode``'s inverse."""
    _check_boxes(codes, "codes")
    ty, tx, th, tw = codes.unbind(-1)
    ya, xa, ha, wa = corners_to_center(anchors).unbind(-1)
    sy, sx, sh, sw = scale_factors
    center = [ty / sy * ha + ya, tx / sx * wa + xa, torch.exp(th / sh) * ha, torch.exp(tw / sw) * wa]
    return center_to_corners(torch.stack(center, -1))


def argmax_match(similarity: torch.Tensor, matched_threshold: float = 0.5, unmatched_threshold: float = 0.5,
                 force_match_for_each_row: bool = True) -> torch.Tensor:
    """Per column (anchor) of ``similarity`` [num_gt, num_anchors]: its row, ``UNMATCHED`` or ``IGNORED``."""
    if similarity.dim() != 2:
        raise ValueError(f"similarity must be [num_gt, num_anchors], got shape {tuple(similarity.shape)}")
    if unmatched_threshold > matched_threshold:
        raise ValueError(f"unmatched_threshold {unmatched_threshold} exceeds matched_threshold "
                         f"{matched_threshold}")
    rows, cols = similarity.shape
    if rows == 0 or cols == 0:
        return torch.full((cols,), UNMATCHED, dtype=torch.long, device=similarity.device)
    matches = similarity.argmax(0)
    best = similarity.gather(0, matches[None]).squeeze(0)
    matches = torch.where(best < unmatched_threshold, UNMATCHED, matches)
    matches = torch.where((best >= unmatched_threshold) & (best < matched_threshold), IGNORED, matches)
    if force_match_for_each_row:
        claimed = torch.full((cols,), rows, dtype=torch.long, device=similarity.device)
        row_ids = torch.arange(rows, device=similarity.device)
        claimed.scatter_reduce_(0, similarity.argmax(1), row_ids, reduce="amin")
        matches = torch.where(claimed < rows, claimed, matches)
    return matches


class Targets(NamedTuple):
    """One image's training targets, per anchor."""

    cls: torch.Tensor  # [N, num_classes + 1], column 0 the background
    cls_weights: torch.Tensor  # [N]
    boxes: torch.Tensor  # [N, 4] codes against the anchor
    box_weights: torch.Tensor  # [N]
    matches: torch.Tensor  # [N] long: ground-truth index, UNMATCHED or IGNORED


def target_assign(anchors: torch.Tensor, gt_boxes: torch.Tensor, gt_labels: torch.Tensor, num_classes: int,
                  matched_threshold: float = 0.5, unmatched_threshold: float = 0.5,
                  background_as_zeros: bool = True) -> Targets:
    """Targets for corner ``anchors`` [N, 4] from corner ``gt_boxes`` [M, 4] labelled 1..num_classes."""
    if anchors.dim() != 2 or gt_boxes.dim() != 2:
        raise ValueError(f"anchors and gt_boxes must be [N, 4] and [M, 4], got {tuple(anchors.shape)} "
                         f"and {tuple(gt_boxes.shape)}")
    if gt_labels.shape != gt_boxes.shape[:1]:
        raise ValueError(f"gt_labels {tuple(gt_labels.shape)} do not match gt_boxes {tuple(gt_boxes.shape)}")
    if gt_labels.numel() and not (1 <= int(gt_labels.min()) and int(gt_labels.max()) <= num_classes):
        raise ValueError(f"gt_labels must lie in 1..{num_classes}, got {int(gt_labels.min())}.."
                         f"{int(gt_labels.max())}")
    gt_boxes, gt_labels = gt_boxes.to(anchors), gt_labels.to(anchors.device, torch.long)
    matches = argmax_match(iou_matrix(gt_boxes, anchors), matched_threshold, unmatched_threshold)
    pos = matches >= 0
    matched = matches[pos]
    cls = anchors.new_zeros(len(anchors), num_classes + 1)
    cls[pos, gt_labels[matched]] = 1
    if not background_as_zeros:
        cls[~pos, 0] = 1
    boxes = anchors.new_zeros(len(anchors), 4)
    boxes[pos] = encode(gt_boxes[matched], anchors[pos])
    return Targets(cls, (matches != IGNORED).to(anchors.dtype), boxes, pos.to(anchors.dtype), matches)
