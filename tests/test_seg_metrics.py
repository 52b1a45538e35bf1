"""Segmentation metrics against a hand-computed confusion matrix and a brute-force numpy IoU."""

import math

import numpy as np
import pytest
import torch

from edgenas.eval.seg_metrics import SegConfusion

TARGET = torch.tensor([[0, 0, 1], [1, 2, 255]])
PRED = torch.tensor([[0, 1, 1], [2, 2, 0]])  # the 0 under 255 is not counted


def test_hand_computed_matrix():
    cm = SegConfusion(3)
    cm.update(PRED, TARGET)
    assert cm.matrix.dtype == torch.int64
    assert cm.matrix.tolist() == [[1, 1, 0], [0, 1, 1], [0, 0, 1]]
    # IoU: 1 / (2 + 1 - 1), 1 / (2 + 2 - 1), 1 / (1 + 2 - 1)
    assert torch.allclose(cm.iou(), torch.tensor([1 / 2, 1 / 3, 1 / 2], dtype=torch.float64))
    assert cm.miou() == pytest.approx(4 / 9)
    assert cm.pixel_accuracy() == pytest.approx(3 / 5)
    assert cm.mean_class_accuracy() == pytest.approx((1 / 2 + 1 / 2 + 1) / 3)
    s = cm.summary(["a", "b", "c"])
    assert s["miou"] == 44.44 and s["pixel_accuracy"] == 60.0
    assert s["iou"] == {"a": 50.0, "b": 33.33, "c": 50.0}
    assert s["pixels"] == 5


def test_absent_classes_are_nan_and_left_out():
    cm = SegConfusion(5)
    cm.update(PRED, TARGET)
    iou, acc = cm.iou(), cm.class_accuracy()
    assert math.isnan(iou[3]) and math.isnan(iou[4]) and math.isnan(acc[4])
    assert cm.miou() == pytest.approx(4 / 9) and cm.summary()["iou"]["4"] is None
    # predicted but never labelled: union > 0, IoU 0, and it counts in the mean
    cm.update(torch.tensor([4]), torch.tensor([2]))
    assert cm.iou()[4] == 0 and cm.miou() == pytest.approx((1 / 2 + 1 / 3 + 1 / 3 + 0) / 4)
    assert math.isnan(SegConfusion(2).miou()) and math.isnan(SegConfusion(2).pixel_accuracy())


def test_logits_are_argmaxed():
    logits = torch.nn.functional.one_hot(PRED, 3).permute(2, 0, 1)[None].float()
    a, b = SegConfusion(3), SegConfusion(3)
    a.update(logits, TARGET[None])
    b.update(PRED, TARGET)
    assert torch.equal(a.matrix, b.matrix)


def _brute_iou(pred: np.ndarray, target: np.ndarray, n: int, ignore: int) -> np.ndarray:
    valid = target != ignore
    out = np.full(n, np.nan)
    for c in range(n):
        union = (((pred == c) | (target == c)) & valid).sum()
        if union:
            out[c] = ((pred == c) & (target == c) & valid).sum() / union
    return out


@pytest.mark.parametrize("seed", range(5))
def test_random_arrays_match_brute_force_and_merge(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 12))
    target = rng.integers(0, n, (4, 17, 23))
    target[rng.random(target.shape) < 0.2] = 255
    target[target == n - 1] = 0  # the last class is never labelled, though it may be predicted
    pred = rng.integers(0, n, target.shape)
    whole = SegConfusion(n)
    whole.update(torch.from_numpy(pred), torch.from_numpy(target))
    want = _brute_iou(pred, target, n, 255)
    assert np.allclose(whole.iou().numpy(), want, equal_nan=True)
    assert whole.miou() == pytest.approx(np.nanmean(want))
    valid = target != 255
    assert whole.pixel_accuracy() == pytest.approx((pred == target)[valid].mean())
    # what two processes would hold, combined by plain addition
    parts = [SegConfusion(n), SegConfusion(n)]
    parts[0].update(torch.from_numpy(pred[:1]), torch.from_numpy(target[:1]))
    parts[1].update(torch.from_numpy(pred[1:]), torch.from_numpy(target[1:]))
    assert torch.equal((parts[0] + parts[1]).matrix, whole.matrix)
    assert torch.equal(parts[0].matrix + parts[1].matrix, whole.matrix)
    parts[0].merge(parts[1])
    assert torch.equal(parts[0].matrix, whole.matrix)
    parts[0].all_reduce()  # no process group: unchanged
    assert torch.equal(parts[0].matrix, whole.matrix)


def test_bad_input():
    cm = SegConfusion(3)
    with pytest.raises(ValueError, match="label holds class 3, outside 0..2"):
        cm.update(torch.tensor([0, 1]), torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="prediction holds class -1"):
        cm.update(torch.tensor([0, -1]), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="differ in shape"):
        cm.update(torch.tensor([0, 1, 2]), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="cannot merge 4 classes into 3"):
        cm.merge(SegConfusion(4))
    assert int(cm.matrix.sum()) == 0
    cm.update(torch.tensor([1]), torch.tensor([1]))
    cm.reset()
    assert int(cm.matrix.sum()) == 0
