"""The SSD training loss of TF OD API as ``ssd_spaghettinet_edgetpu_320x320_coco17_sync_4x4.config`` sets it.

Per entry (``core/losses.py``):

* ``sigmoid_focal_loss`` (``SigmoidFocalClassificationLoss``, alpha 0.75, gamma 2): for logit ``x``, target
  ``t`` and ``p = sigmoid(x)``, ``(t alpha + (1 - t)(1 - alpha)) (1 - p_t)^gamma BCE(x, t)`` with
  ``p_t = t p + (1 - t)(1 - p)``; ``alpha=None`` drops the alpha factor, gamma 0 the modulating one.
* ``smooth_l1`` (``WeightedSmoothL1LocalizationLoss``, delta 1): the Huber loss of ``tf.losses.huber_loss``.

``SSDLoss`` combines them as ``meta_architectures/ssd_meta_arch.py`` ``loss`` does: targets from
``boxes.target_assign`` per image; the focal loss summed over every anchor and every class column, the
background column included (weight 0 only on ignored anchors); the Huber loss summed over the four codes of
matched anchors. Both sums run over the whole batch and are divided by the batch's number of matched anchors,
at least 1 (``normalize_loss_by_num_matches``); the box term also by the code size 4
(``normalize_loc_loss_by_codesize: true`` in the config). Both loss weights are 1 there: ``total`` is the sum.

Classification logits have ``num_classes + 1`` columns, column 0 the background, as TF's predictor with
``add_background_class``; the config's ``encode_background_as_zeros`` makes column 0's target always 0.
``CLASS_BIAS_INIT`` is the config's ``class_prediction_bias_init`` for the head's class convolutions.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .boxes import target_assign

CLASS_BIAS_INIT = -4.6
CODE_SIZE = 4


def sigmoid_focal_loss(logits: torch.Tensor, targets: torch.Tensor, alpha: float | None = 0.75,
                       gamma: float = 2.0) -> torch.Tensor:
    """The focal loss of each entry (no reduction)."""
    if logits.shape != targets.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and targets {tuple(targets.shape)} differ in shape")
    loss = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    if gamma:
        p = torch.sigmoid(logits)
        p_t = targets * p + (1 - targets) * (1 - p)
        loss = loss * (1 - p_t).pow(gamma)
    if alpha is not None:
        loss = loss * (targets * alpha + (1 - targets) * (1 - alpha))
    return loss


def smooth_l1(pred: torch.Tensor, target: torch.Tensor, delta: float = 1.0) -> torch.Tensor:
    """The Huber loss of each entry: ``0.5 d^2`` for ``|d| <= delta``, else ``delta (|d| - 0.5 delta)``."""
    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")
    return F.huber_loss(pred, target, reduction="none", delta=delta)


class SSDLoss(nn.Module):
    def __init__(self, num_classes: int, alpha: float | None = 0.75, gamma: float = 2.0, delta: float = 1.0,
                 matched_threshold: float = 0.5, unmatched_threshold: float = 0.5,
                 background_as_zeros: bool = True, normalize_by_code_size: bool = True):
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be at least 1, got {num_classes}")
        self.num_classes, self.alpha, self.gamma, self.delta = num_classes, alpha, gamma, delta
        self.matched_threshold, self.unmatched_threshold = matched_threshold, unmatched_threshold
        self.background_as_zeros, self.normalize_by_code_size = background_as_zeros, normalize_by_code_size

    def forward(self, cls_logits: torch.Tensor, box_deltas: torch.Tensor, anchors: torch.Tensor,
                targets: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """``cls_logits`` [B, N, C+1], ``box_deltas`` [B, N, 4], ``anchors`` [N, 4]; ``targets``: per image,
        (corner boxes [M, 4], labels [M] in 1..C). Returns ``total``, ``cls``, ``box`` and ``num_matches``."""
        if cls_logits.dim() != 3 or cls_logits.shape[2] != self.num_classes + 1:
            raise ValueError(f"cls_logits must be [B, N, {self.num_classes + 1}], got "
                             f"{tuple(cls_logits.shape)}")
        b, n = cls_logits.shape[:2]
        if box_deltas.shape != (b, n, CODE_SIZE) or anchors.shape != (n, CODE_SIZE):
            raise ValueError(f"box_deltas must be [{b}, {n}, 4] and anchors [{n}, 4], got "
                             f"{tuple(box_deltas.shape)} and {tuple(anchors.shape)}")
        if len(targets) != b:
            raise ValueError(f"{len(targets)} targets for a batch of {b}")
        assigned = [target_assign(anchors, boxes, labels, self.num_classes, self.matched_threshold,
                                  self.unmatched_threshold, self.background_as_zeros)
                    for boxes, labels in targets]
        cls_t, cls_w, box_t, box_w = (torch.stack(parts).to(cls_logits) for parts in list(zip(*assigned))[:4])
        cls = (sigmoid_focal_loss(cls_logits, cls_t, self.alpha, self.gamma) * cls_w[..., None]).sum()
        box = (smooth_l1(box_deltas, box_t, self.delta).sum(-1) * box_w).sum()
        num_matches = box_w.sum()
        normalizer = num_matches.clamp(min=1)
        cls = cls / normalizer
        box = box / (normalizer * CODE_SIZE if self.normalize_by_code_size else normalizer)
        return {"total": cls + box, "cls": cls, "box": box, "num_matches": num_matches.detach().long()}
