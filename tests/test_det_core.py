"""SSD core: anchors pinned for SpaghettiNet at 320, box coder and IoU by hand, the argmax matcher's forced
matches, the focal loss by hand, NMS against a brute-force reference, post-processing against a literal
per-class reference."""

from __future__ import annotations

import importlib
import math

import pytest
import torch

from edgenas.det import (CLASS_BIAS_INIT, IGNORED, SPAGHETTINET_320_FEATURE_SIZES, UNMATCHED, SSDLoss,
                         anchor_specs, anchors_per_location, argmax_match, batched_nms, center_to_corners,
                         corners_to_center, decode, encode, iou_matrix, nms, postprocess, sigmoid_focal_loss,
                         smooth_l1, ssd_anchors, target_assign)

SQRT2 = math.sqrt(2)


def sizes(anchors: torch.Tensor) -> torch.Tensor:
    return corners_to_center(anchors)[:, 2:]


def centers(anchors: torch.Tensor) -> torch.Tensor:
    return corners_to_center(anchors)[:, :2]


# ---- anchors ----

def test_spaghettinet_320_anchor_count():
    assert anchors_per_location() == [3, 6, 6, 6, 6]
    assert sum(h * w * k for (h, w), k in zip(SPAGHETTINET_320_FEATURE_SIZES, anchors_per_location())) == 2058
    anchors = ssd_anchors(SPAGHETTINET_320_FEATURE_SIZES)
    assert anchors.shape == (2058, 4) and anchors.dtype == torch.float32
    plain = anchors_per_location(interpolated_scale_aspect_ratio=0, reduce_boxes_in_lowest_layer=False)
    assert plain == [5] * 5


def test_first_layer_boxes_and_centres():
    anchors = ssd_anchors(SPAGHETTINET_320_FEATURE_SIZES)
    expect = torch.tensor([[0.1, 0.1], [0.2 / SQRT2, 0.2 * SQRT2], [0.2 * SQRT2, 0.2 / SQRT2]])
    torch.testing.assert_close(sizes(anchors[:3]), expect)
    torch.testing.assert_close(centers(anchors[:3]), torch.full((3, 2), 0.5 / 20))
    torch.testing.assert_close(anchors[0], torch.tensor([-0.025, -0.025, 0.075, 0.075]))
    cell = (1 * 20 + 2) * 3  # row 1, column 2: rows first, then columns, then the boxes of a cell
    torch.testing.assert_close(centers(anchors[cell:cell + 3]), torch.tensor([[1.5 / 20, 2.5 / 20]] * 3))
    torch.testing.assert_close(sizes(anchors[cell:cell + 3]), expect)


def test_later_layers_scales_and_interpolated_box():
    anchors = ssd_anchors(SPAGHETTINET_320_FEATURE_SIZES)
    scales = [0.2, 0.3875, 0.575, 0.7625, 0.95]
    assert [s for s, _ in anchor_specs()[1]][:5] == pytest.approx([scales[1]] * 5)
    layer1 = anchors[1200:1206]  # first cell of the 10x10 map
    torch.testing.assert_close(centers(layer1), torch.full((6, 2), 0.05))
    s, mid = scales[1], math.sqrt(scales[1] * scales[2])
    root3 = math.sqrt(0.3333333)
    expect = [[s, s], [s / SQRT2, s * SQRT2], [s * SQRT2, s / SQRT2], [s / math.sqrt(3), s * math.sqrt(3)],
              [s / root3, s * root3], [mid, mid]]
    torch.testing.assert_close(sizes(layer1), torch.tensor(expect))
    last = anchors[-1]  # last box of the last cell of the last 3x3 map: scale sqrt(0.95 * 1.0)
    torch.testing.assert_close(centers(last[None])[0], torch.tensor([2.5 / 3, 2.5 / 3]))
    torch.testing.assert_close(sizes(last[None])[0], torch.full((2,), math.sqrt(0.95)))


def test_anchor_clip_and_non_square_image():
    anchors = ssd_anchors(SPAGHETTINET_320_FEATURE_SIZES)
    assert anchors.min() < 0 and anchors.max() > 1  # TF leaves SSD anchors unclipped
    clipped = ssd_anchors(SPAGHETTINET_320_FEATURE_SIZES, clip=True)
    assert clipped.min() >= 0 and clipped.max() <= 1
    inside = ((anchors >= 0) & (anchors <= 1)).all(1)
    torch.testing.assert_close(clipped[inside], anchors[inside])
    wide = ssd_anchors([(4, 8), (2, 4)], image_size=(320, 640))
    square = ssd_anchors([(4, 8), (2, 4)])
    torch.testing.assert_close(sizes(wide), sizes(square) * torch.tensor([1.0, 0.5]))


@pytest.mark.parametrize("kwargs", [dict(feature_sizes=[(4, 4)]), dict(feature_sizes=[(4, 4), (0, 2)]),
                                    dict(feature_sizes=[(4, 4), (2, 2)], aspect_ratios=()),
                                    dict(feature_sizes=[(4, 4), (2, 2)], image_size=(0, 4))])
def test_anchor_bad_input(kwargs):
    with pytest.raises(ValueError):
        ssd_anchors(**kwargs)


# ---- boxes ----

def random_boxes(n: int, generator: torch.Generator, spread: float = 1.0) -> torch.Tensor:
    lo = torch.rand(n, 2, generator=generator) * spread
    return torch.cat([lo, lo + 0.05 + 0.45 * torch.rand(n, 2, generator=generator)], 1)


def test_box_coder_hand_example():
    anchor = torch.tensor([[0.4, 0.4, 0.6, 0.6]])  # centre (0.5, 0.5), 0.2 x 0.2
    box = torch.tensor([[0.32, 0.41, 0.72, 0.51]])  # centre (0.52, 0.46), 0.4 x 0.1
    expect = torch.tensor([[1.0, -2.0, 5 * math.log(2), -5 * math.log(2)]])
    torch.testing.assert_close(encode(box, anchor), expect, atol=1e-5, rtol=0)
    torch.testing.assert_close(decode(expect, anchor), box, atol=1e-6, rtol=0)


def test_box_coder_round_trip_and_formats():
    g = torch.Generator().manual_seed(0)
    boxes, anchors = random_boxes(500, g), random_boxes(500, g)
    torch.testing.assert_close(decode(encode(boxes, anchors), anchors), boxes, atol=1e-5, rtol=0)
    torch.testing.assert_close(center_to_corners(corners_to_center(boxes)), boxes)
    codes = torch.randn(3, 500, 4, generator=g)  # batched codes against shared anchors
    torch.testing.assert_close(encode(decode(codes, anchors), anchors), codes, atol=1e-4, rtol=0)


def test_iou_hand_example():
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0], [5.0, 5.0, 6.0, 6.0]])
    b = torch.tensor([[1.0, 1.0, 3.0, 4.0], [0.0, 0.0, 2.0, 2.0], [2.0, 0.0, 3.0, 2.0]])
    expect = torch.tensor([[1 / 9, 1.0, 0.0], [0.0, 0.0, 0.0]])  # 1 / (4 + 6 - 1); touching edges: 0
    torch.testing.assert_close(iou_matrix(a, b), expect)
    assert iou_matrix(a, b[:0]).shape == (2, 0)
    with pytest.raises(ValueError):
        iou_matrix(a, b[:, :3])


ANCHORS = torch.tensor([[0.0, 0.0, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0], [0.0, 0.5, 0.5, 1.0]])


def test_matcher_forces_a_match_for_a_tiny_box():
    gt = torch.tensor([[0.0, 0.0, 0.5, 0.45], [0.7, 0.7, 0.72, 0.72]])  # IoU 0.9 with anchor 0; 0.0016 with 1
    similarity = iou_matrix(gt, ANCHORS)
    assert similarity[1, 1] < 0.01
    assert argmax_match(similarity).tolist() == [0, 1, UNMATCHED]
    assert argmax_match(similarity, force_match_for_each_row=False).tolist() == [0, UNMATCHED, UNMATCHED]
    assert argmax_match(similarity, 0.95, 0.5, False).tolist() == [IGNORED, UNMATCHED, UNMATCHED]


def test_matcher_conflicts_and_empty():
    gt = torch.tensor([[0.0, 0.0, 0.1, 0.1], [0.0, 0.0, 0.5, 0.45]])  # both claim anchor 0: the lower wins
    assert argmax_match(iou_matrix(gt, ANCHORS)).tolist() == [0, UNMATCHED, UNMATCHED]
    assert argmax_match(torch.zeros(0, 3)).tolist() == [UNMATCHED] * 3
    with pytest.raises(ValueError):
        argmax_match(torch.zeros(2, 3), 0.4, 0.5)


def test_target_assign():
    gt, labels = torch.tensor([[0.0, 0.0, 0.5, 0.45], [0.7, 0.7, 0.72, 0.72]]), torch.tensor([3, 1])
    t = target_assign(ANCHORS, gt, labels, num_classes=4)
    assert t.cls.shape == (3, 5) and t.matches.tolist() == [0, 1, UNMATCHED]
    assert t.cls.tolist() == [[0, 0, 0, 1, 0], [0, 1, 0, 0, 0], [0] * 5]
    assert t.cls_weights.tolist() == [1, 1, 1] and t.box_weights.tolist() == [1, 1, 0]
    torch.testing.assert_close(decode(t.boxes[:2], ANCHORS[:2]), gt, atol=1e-6, rtol=0)
    assert t.boxes[2].tolist() == [0, 0, 0, 0]
    with_background = target_assign(ANCHORS, gt, labels, 4, background_as_zeros=False)
    assert with_background.cls[:, 0].tolist() == [0, 0, 1]
    empty = target_assign(ANCHORS, torch.zeros(0, 4), torch.zeros(0, dtype=torch.long), 4)
    assert empty.cls.sum() == 0 and empty.box_weights.sum() == 0
    for bad in (torch.tensor([0, 1]), torch.tensor([3, 5])):
        with pytest.raises(ValueError, match="1..4"):
            target_assign(ANCHORS, gt, bad, 4)


# ---- loss ----

def test_focal_loss_hand_value():
    logits, targets = torch.tensor([[0.0, 2.0]]), torch.tensor([[1.0, 0.0]])
    p = 1 / (1 + math.exp(-2))
    expect = [0.75 * 0.5**2 * math.log(2), 0.25 * p**2 * math.log1p(math.exp(2))]
    torch.testing.assert_close(sigmoid_focal_loss(logits, targets), torch.tensor([expect]))
    assert float(sigmoid_focal_loss(logits, targets).sum()) == pytest.approx(0.5424846, abs=1e-6)


def test_focal_loss_without_gamma_is_weighted_bce():
    g = torch.Generator().manual_seed(1)
    logits, targets = torch.randn(4, 7, generator=g) * 3, (torch.rand(4, 7, generator=g) > 0.7).float()
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    torch.testing.assert_close(sigmoid_focal_loss(logits, targets, 0.75, 0.0), bce * (0.25 + 0.5 * targets))
    torch.testing.assert_close(sigmoid_focal_loss(logits, targets, None, 0.0), bce)


def test_smooth_l1():
    d = torch.tensor([0.0, 0.5, -1.0, 3.0])
    torch.testing.assert_close(smooth_l1(d, torch.zeros(4)), torch.tensor([0.0, 0.125, 0.5, 2.5]))


def test_ssd_loss_by_hand():
    gt, label = torch.tensor([[0.0, 0.0, 0.5, 0.45]]), torch.tensor([2])
    logits, deltas = torch.zeros(2, 3, 4, requires_grad=True), torch.zeros(2, 3, 4, requires_grad=True)
    targets = [(gt, label), (torch.zeros(0, 4), torch.zeros(0, dtype=torch.long))]
    out = SSDLoss(num_classes=3)(logits, deltas, ANCHORS, targets)
    # logit 0: p_t = 1/2 everywhere; one positive entry (alpha 0.75), 23 negatives (0.25); one match in all
    assert out["cls"].item() == pytest.approx(math.log(2) * 0.25 * (0.75 + 23 * 0.25), rel=1e-5)
    codes = [0.0, -0.5, 0.0, 5 * math.log(0.9)]  # gt against anchor 0, whose centre x is 0.25 and width 0.5
    huber = sum(0.5 * c * c for c in codes)  # all below delta 1
    assert out["box"].item() == pytest.approx(huber / 4, rel=1e-4)  # normalize_loc_loss_by_codesize
    assert int(out["num_matches"]) == 1
    torch.testing.assert_close(out["total"], out["cls"] + out["box"])
    out["total"].backward()
    assert torch.isfinite(logits.grad).all() and deltas.grad[:, 1:].abs().sum() == 0
    plain = SSDLoss(3, normalize_by_code_size=False)(logits, deltas, ANCHORS, targets)
    assert plain["box"].item() == pytest.approx(huber, rel=1e-4)
    assert CLASS_BIAS_INIT == -4.6


def test_ssd_loss_bad_input():
    loss = SSDLoss(num_classes=3)
    with pytest.raises(ValueError, match="cls_logits"):
        loss(torch.zeros(1, 3, 3), torch.zeros(1, 3, 4), ANCHORS, [(torch.zeros(0, 4), torch.zeros(0))])
    with pytest.raises(ValueError, match="targets"):
        loss(torch.zeros(1, 3, 4), torch.zeros(1, 3, 4), ANCHORS, [])


# ---- NMS ----

def py_iou(a: list[float], b: list[float]) -> float:
    h, w = min(a[2], b[2]) - max(a[0], b[0]), min(a[3], b[3]) - max(a[1], b[1])
    if h <= 0 or w <= 0:
        return 0.0
    return h * w / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - h * w)


def brute_nms(boxes: torch.Tensor, scores: torch.Tensor, threshold: float,
              limit: int | None = None) -> list[int]:
    """Every candidate against every kept box, in (score desc, index asc) order."""
    b, s = boxes.tolist(), scores.tolist()
    keep: list[int] = []
    for i in sorted(range(len(s)), key=lambda i: (-s[i], i)):
        if (limit is None or len(keep) < limit) and all(py_iou(b[i], b[j]) <= threshold for j in keep):
            keep.append(i)
    return keep


@pytest.fixture(params=[256, 8], ids=["block256", "block8"])
def block(request, monkeypatch):
    """NMS's block size: the default, and one small enough for many blocks per test."""
    monkeypatch.setattr(importlib.import_module("edgenas.det.nonmax"), "_BLOCK", request.param)
    return request.param


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("threshold", [0.0, 0.3, 0.5, 0.7, 1.0])
def test_nms_matches_brute_force(seed, threshold, block):
    g = torch.Generator().manual_seed(seed)
    n = 40 + 30 * seed
    boxes = random_boxes(n, g, spread=0.6)
    scores = torch.rand(n, generator=g) if seed % 2 else torch.randint(0, 5, (n,), generator=g) / 4  # ties
    assert nms(boxes, scores, threshold).tolist() == brute_nms(boxes, scores, threshold)
    assert nms(boxes, scores, threshold, max_output=3).tolist() == brute_nms(boxes, scores, threshold, 3)


def test_nms_chain_and_many_blocks(block):
    shift = torch.arange(300.0)[:, None] * 0.1  # each box overlaps the next ones: long suppression chains
    boxes = torch.cat([shift, torch.zeros(300, 1), shift + 1, torch.ones(300, 1)], 1)
    scores = torch.linspace(1, 0, 300)
    for threshold in (0.5, 0.8):
        assert nms(boxes, scores, threshold).tolist() == brute_nms(boxes, scores, threshold)
    g = torch.Generator().manual_seed(11)
    boxes, scores = random_boxes(400, g, spread=2.0), torch.rand(400, generator=g)
    assert nms(boxes, scores, 0.4).tolist() == brute_nms(boxes, scores, 0.4)
    assert nms(boxes, scores, 0.4, max_output=20).tolist() == brute_nms(boxes, scores, 0.4, 20)


def test_nms_ties_empty_and_bad_input():
    box = torch.tensor([[0.0, 0.0, 1.0, 1.0]])
    assert nms(box.repeat(3, 1), torch.ones(3), 0.5).tolist() == [0]  # equal scores: the lowest index wins
    assert nms(torch.zeros(3, 4), torch.tensor([0.1, 0.3, 0.3]), 0.5).tolist() == [1, 2, 0]  # zero area
    empty = nms(torch.zeros(0, 4), torch.zeros(0), 0.5)
    assert empty.dtype == torch.long and empty.numel() == 0
    assert batched_nms(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.long), 0.5).numel() == 0
    with pytest.raises(ValueError, match="iou_threshold"):
        nms(box, torch.ones(1), 1.5)
    with pytest.raises(ValueError, match="scores"):
        nms(box, torch.ones(2), 0.5)


def test_batched_nms_keeps_classes_apart(block):
    g = torch.Generator().manual_seed(7)
    boxes = torch.tensor([[0.0, 0.0, 1.0, 1.0]]).repeat(4, 1)
    same = batched_nms(boxes, torch.tensor([0.9, 0.8, 0.7, 0.6]), torch.tensor([0, 1, 2, 0]), 0.5)
    assert same.tolist() == [0, 1, 2]  # identical boxes: one per class
    boxes, scores = random_boxes(120, g, spread=0.5), torch.randint(0, 6, (120,), generator=g) / 5
    classes = torch.randint(0, 3, (120,), generator=g)
    expect = []
    for c in range(3):
        members = (classes == c).nonzero()[:, 0]
        expect += members[brute_nms(boxes[members], scores[members], 0.4, 5)].tolist()
    expect.sort(key=lambda i: (-float(scores[i]), i))
    assert batched_nms(boxes, scores, classes, 0.4, max_per_class=5).tolist() == expect


# ---- post-processing ----

def reference_postprocess(logits, deltas, anchors, score_threshold, iou, max_det, max_per_class):
    """TF's order of work: per class threshold and NMS, concatenate, sort by score, clip, prune, top-k."""
    scores, boxes = torch.sigmoid(logits[:, 1:]), decode(deltas, anchors)
    picked = []  # (score, class, box)
    for c in range(scores.shape[1]):
        cand = (scores[:, c] > score_threshold).nonzero()[:, 0]
        for i in brute_nms(boxes[cand], scores[cand, c], iou, max_per_class):
            picked.append((float(scores[cand[i], c]), c + 1, boxes[cand[i]].clamp(0, 1)))
    picked.sort(key=lambda p: -p[0])  # stable: class order, then NMS order
    picked = [p for p in picked if float((p[2][2] - p[2][0]) * (p[2][3] - p[2][1])) != 0]
    return picked[:max_det]


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("skew", [0.0, 3.0])
def test_postprocess_matches_per_class_reference(seed, skew, block):
    g = torch.Generator().manual_seed(seed)
    anchors = ssd_anchors([(5, 5), (3, 3)])  # 129 anchors, some reaching outside the image
    logits = torch.randint(-4, 3, (1, len(anchors), 5), generator=g).float()  # coarse: many equal scores
    logits += skew * torch.tensor([0.0, 2.0, 1.0, 0.0, -1.0])  # skewed: the best ones crowd into class 1
    deltas = torch.randn(1, len(anchors), 4, generator=g) * 2
    out = postprocess(logits, deltas, anchors, score_threshold=0.05, iou_threshold=0.5, max_detections=25,
                      max_per_class=8)[0]
    expect = reference_postprocess(logits[0], deltas[0], anchors, 0.05, 0.5, 25, 8)
    assert out.classes.tolist() == [c for _, c, _ in expect]
    assert out.scores.tolist() == [s for s, _, _ in expect]
    torch.testing.assert_close(out.boxes, torch.stack([b for _, _, b in expect]))


def test_postprocess_full_size_and_planted_box():
    anchors = ssd_anchors(SPAGHETTINET_320_FEATURE_SIZES)
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(2, 2058, 91, generator=g) * 2 - 4
    deltas = torch.randn(2, 2058, 4, generator=g) * 0.5
    gt = torch.tensor([0.2, 0.3, 0.6, 0.55])
    logits[1, 700, 17] = 9.0
    deltas[1, 700] = encode(gt[None], anchors[700:701])[0]
    dets = postprocess(logits, deltas, anchors)
    for d in dets:
        assert len(d.boxes) == len(d.scores) == len(d.classes) == 100
        assert (d.scores[:-1] >= d.scores[1:]).all() and d.classes.min() >= 1 and d.classes.max() <= 90
        assert d.boxes.min() >= 0 and d.boxes.max() <= 1
    assert dets[1].classes[0] == 17 and float(dets[1].scores[0]) == pytest.approx(1 / (1 + math.exp(-9)))
    torch.testing.assert_close(dets[1].boxes[0], gt, atol=1e-5, rtol=0)


def test_postprocess_nothing_above_threshold_and_bad_input():
    anchors = ssd_anchors([(2, 2), (1, 1)])
    out = postprocess(torch.full((1, len(anchors), 3), -30.0), torch.zeros(1, len(anchors), 4), anchors)[0]
    assert out.boxes.shape == (0, 4) and out.scores.numel() == 0 and out.classes.numel() == 0
    with pytest.raises(ValueError, match="box_deltas"):
        postprocess(torch.zeros(1, len(anchors), 3), torch.zeros(1, len(anchors), 3), anchors)
    with pytest.raises(ValueError, match="max_detections"):
        postprocess(torch.zeros(1, len(anchors), 3), torch.zeros(1, len(anchors), 4), anchors,
                    max_detections=0)
