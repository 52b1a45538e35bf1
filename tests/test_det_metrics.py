"""COCO box mAP through pycocotools: hand-made IoUs, ground truth fed back, jitter, no detections."""

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from edgenas.data.det_transforms import to_normalized
from edgenas.data.detection import coco128, composite_detection
from edgenas.eval.det_metrics import DetectionMeter

from conftest import need_shared

FIGURES = ("map", "ap50", "ap75", "ap_small", "ap_medium", "ap_large")


@pytest.fixture(scope="module")
def coco_val():
    found = need_shared("data/coco128/annotations/instances_val2017.json", "the shared COCO128 copy")
    return coco128(found.parents[1], "val")


def _feed_back(data, indices, jitter: float = 0.0, seed: int = 0):
    """Each image's ground truth as detections (score 1), its corners moved by up to ``jitter`` of the box."""
    rng = np.random.default_rng(seed)
    detections, targets = [], []
    for i in indices:
        target = data.target(i)
        boxes = target["boxes"]
        size = (boxes[:, 2:] - boxes[:, :2]).repeat(1, 2)
        boxes = boxes + size * torch.from_numpy(rng.uniform(-jitter, jitter, boxes.shape)).float()
        h, w = target["orig_size"]
        detections.append((to_normalized(boxes, h, w), torch.ones(len(boxes)), target["labels"]))
        targets.append(target)
    return detections, targets


def _gt(boxes: list[list[float]], categories=((1, "a"), (2, "b"))) -> dict:
    """One 200x100 image per box, [x, y, w, h] of class 1."""
    return {"images": [{"id": i, "width": 200, "height": 100, "file_name": f"{i}.jpg"}
                       for i in range(len(boxes))],
            "annotations": [{"id": i + 1, "image_id": i, "category_id": 1, "bbox": b, "area": b[2] * b[3],
                             "iscrowd": 0} for i, b in enumerate(boxes)],
            "categories": [{"id": c, "name": n} for c, n in categories]}


def _targets(n: int) -> list[dict]:
    return [{"image_id": i, "orig_size": (100, 200)} for i in range(n)]


def test_hand_made_iou_scores_half_the_thresholds(capsys):
    meter = DetectionMeter(_gt([[0, 0, 100, 50]]))
    # detection [x 0..100, y 0..36]: IoU 0.72, a match at IoU thresholds 0.50..0.70, none from 0.75
    meter.update([(torch.tensor([[0.0, 0.0, 0.36, 0.5]]), torch.tensor([0.9]), torch.tensor([1]))],
                 _targets(1))
    s = meter.summary()
    assert s["map"] == 50.0 and s["quality"] == 50.0 and s["ap50"] == 100.0 and s["ap75"] == 0.0
    assert s["ap_medium"] == 50.0 and s["ap_small"] is None and s["ap_large"] is None  # 32² < 5000 < 96²
    assert s["ap"] == {"a": 50.0, "b": None} and s["images"] == 1 and s["ar100"] == 50.0
    assert capsys.readouterr().out == ""  # pycocotools' prints are swallowed


def test_wrong_class_background_and_dict_detections():
    gt = _gt([[0, 0, 100, 50], [20, 10, 40, 40]])
    meter = DetectionMeter(gt)
    full = torch.tensor([[0.0, 0.0, 0.5, 0.5]])
    meter.update([{"boxes": full, "scores": torch.tensor([0.9]), "classes": torch.tensor([2])},
                  {"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0)}],
                 _targets(2))
    assert meter.summary()["map"] == 0.0
    meter = DetectionMeter(gt)
    second = torch.tensor([[0.1, 0.1, 0.5, 0.3], [0.0, 0.0, 1.0, 1.0]])  # the box, and class 0 (dropped)
    meter.update([(full, [0.9], [1]), (second, [0.8, 1.0], [1, 0])], _targets(2))
    assert meter.summary()["map"] == 100.0


def test_no_detections_scores_zero():
    gt = _gt([[0, 0, 100, 50]])
    meter = DetectionMeter(gt)
    s = meter.summary()
    assert s["quality"] == 0.0 and s["map"] is None and s["images"] == 0 and s["ap"] == {}
    meter.update([(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.int64))], _targets(1),
                 loss=2.5)
    s = meter.summary()
    assert s["quality"] == 0.0 and s["map"] == 0.0 and s["ap50"] == 0.0
    assert s["images"] == 1 and s["loss"] == 2.5
    meter.all_reduce()  # not distributed: nothing changes
    assert meter.summary()["images"] == 1


def test_bad_updates():
    meter = DetectionMeter(_gt([[0, 0, 100, 50]]))
    empty = (torch.zeros(0, 4), torch.zeros(0), torch.zeros(0))
    with pytest.raises(ValueError, match="image 5 is not in the ground truth"):
        meter.update([empty], [{"image_id": 5, "orig_size": (100, 200)}])
    with pytest.raises(ValueError, match=r"orig_size 200x100 \(h x w\) but the ground truth has 100x200"):
        meter.update([empty], [{"image_id": 0, "orig_size": (200, 100)}])
    with pytest.raises(ValueError, match="2 detections for 1 targets"):
        meter.update([empty, empty], _targets(1))
    with pytest.raises(ValueError, match="want boxes"):
        meter.update([(torch.zeros(2, 4), torch.zeros(3), torch.zeros(2))], _targets(1))


def test_coco128_ground_truth_fed_back_scores_100(coco_val):
    meter = DetectionMeter(coco_val.coco_ground_truth())
    detections, targets = _feed_back(coco_val, range(len(coco_val)))
    meter.update(detections[:64], targets[:64])
    meter.update(detections[64:], targets[64:])
    meter.update(detections[:3], targets[:3])  # repeated images count once
    s = meter.summary()
    assert all(s[k] == 100.0 for k in FIGURES) and s["quality"] == 100.0 and s["images"] == 128
    assert s["ap"]["person"] == 100.0 and s["ap"]["hair drier"] is None  # absent from val


def test_coco128_jittered_boxes_score_less(coco_val):
    gt = coco_val.coco_ground_truth()
    scores = []
    for jitter in (0.05, 0.2):
        meter = DetectionMeter(gt)
        meter.update(*_feed_back(coco_val, range(40), jitter))
        scores.append(meter.summary())
    assert 0 < scores[1]["map"] < scores[0]["map"] < 100.0
    assert scores[0]["ap50"] == 100.0 and scores[1]["ap50"] > scores[1]["ap75"]


def test_coco128_through_the_eval_transform(coco_val):
    """Transformed targets (normalised, 320x320) fed back map to the original pixels exactly."""
    meter = DetectionMeter(coco_val.coco_ground_truth())
    for i in range(4):
        _, target = coco_val[i]
        meter.update([(target["boxes"], torch.ones(len(target["boxes"])), target["labels"])], [target])
    s = meter.summary([f"class {k}" for k in range(91)])
    assert s["map"] == 100.0 and s["images"] == 4 and s["ap"]["class 1"] == 100.0


def _write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def test_composite_scenes_score_100_and_less_when_boxes_are_missed(tmp_path):
    rng = np.random.default_rng(2)
    glyphs = np.zeros((10, 28, 28), np.uint8)
    for k in range(10):
        glyphs[k, 5:23, 4 + k // 2:24 - k // 2] = rng.integers(64, 256)
    _write_idx(tmp_path / "train-images-idx3-ubyte.gz", glyphs)
    _write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.arange(10))
    Image.fromarray(np.full((40, 40, 3), 90, np.uint8)).save(tmp_path / "grey.png")
    data = composite_detection(12, 96, seed=3, data_dir=tmp_path, backgrounds=[tmp_path / "grey.png"])
    gt = data.coco_ground_truth()
    targets = [data[i][1] for i in range(len(data))]
    meter = DetectionMeter(gt)
    meter.update([(t["boxes"], torch.ones(len(t["boxes"])), t["labels"]) for t in targets], targets)
    assert meter.summary()["map"] == 100.0 and meter.summary()["images"] == 12
    meter = DetectionMeter(gt.dataset)  # the dict works too
    meter.update([(t["boxes"][:1], torch.ones(1), t["labels"][:1]) for t in targets], targets)
    assert meter.summary()["map"] < 100.0
