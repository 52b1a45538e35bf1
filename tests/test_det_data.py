"""Detection data: COCO128 counts, exact box geometry, TF's ssd_random_crop, bad annotations, generated
scenes."""

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from edgenas.data.det_transforms import (SSD_COVERED, build_det_transform, collate_detection, compose,
                                         crop_to_window, random_horizontal_flip, resize, sample_window,
                                         ssd_random_crop)
from edgenas.data.detection import (COCO_CATEGORIES, SKIP_KINDS, CocoDetection, coco128,
                                    composite_detection)
from edgenas.data.fashion_mnist import DEFAULT_DIR as FASHION_DIR
from edgenas.data.fashion_mnist import DataError
from edgenas.data.segmentation import COMPOSITE_CLASSES, THRESHOLD

from conftest import need, need_shared

PLAIN = {"mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0)}  # image values stay pixel / 255


@pytest.fixture
def coco_root() -> Path:
    found = need_shared("data/coco128/annotations/instances_val2017.json", "the shared COCO128 copy")
    return found.parents[1]


def _box_count(data) -> int:
    return sum(len(data.target(i)["boxes"]) for i in range(len(data)))


# -- COCO128 --

def test_coco128_counts_match_its_readme(coco_root):
    val, train = coco128(coco_root, "val"), coco128(coco_root, "train")
    assert len(val) == 128 and len(train) == 128
    assert _box_count(val) == 898 and _box_count(train) == 929
    assert sum(len(train.target(i)["boxes"]) > 0 for i in range(128)) == 126
    present = {s: set().union(*(d.target(i)["labels"].tolist() for i in range(128)))
               for s, d in (("val", val), ("train", train))}
    assert len(present["val"]) == 73 and len(present["train"]) == 71
    assert present["val"] <= {i for i, _ in COCO_CATEGORIES}
    assert val.num_classes == 90 and len(val.classes) == 91 and val.classes[0] == "background"
    assert val.classes[1] == "person" and val.classes[12] == "N/A" and val.classes[90] == "toothbrush"
    assert not any(val.skipped.values())
    target = val.target(0)  # 000000000139: the README's first val image
    assert target["image_id"] == 139 and target["orig_size"] == (426, 640) and len(target["boxes"]) == 20
    assert torch.allclose(target["boxes"][0], torch.tensor([236.98, 142.51, 236.98 + 24.7, 142.51 + 69.5]))


def test_coco128_items_train_and_eval(coco_root):
    train = coco128(coco_root, "train", build_det_transform(True), seed=1, subset=6)
    images, targets = collate_detection([train[i] for i in range(len(train))])
    assert images.shape == (6, 3, 320, 320) and images.dtype == torch.float32
    assert -1.0 <= float(images.min()) and float(images.max()) <= 1.0
    for target in targets:
        boxes = target["boxes"]
        assert boxes.dtype == torch.float32 and boxes.shape == (len(target["labels"]), 4)
        assert bool(((boxes >= 0) & (boxes <= 1)).all())
        assert bool((boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all())
    val = coco128(coco_root, "val", subset=3)
    for i in range(3):
        x, target = val[i]
        h, w = target["orig_size"]
        raw = val.target(i)["boxes"]
        want = raw[:, [1, 0, 3, 2]] / torch.tensor([h, w, h, w])  # resizing keeps normalised boxes
        assert x.shape == (3, 320, 320) and torch.allclose(target["boxes"], want, atol=1e-6)
        assert torch.equal(target["labels"], val.target(i)["labels"])


def test_every_coco128_val_box_survives_the_train_transform(coco_root):
    """All 898 real boxes through the training steps (on a blank one-channel image: only boxes count)."""
    steps = [random_horizontal_flip(), ssd_random_crop(), resize(64)]
    data, kept = coco128(coco_root, "val"), 0
    for i in range(len(data)):
        target, gen = data.target(i), torch.Generator().manual_seed(i)
        x, boxes, labels = torch.zeros(1, *target["orig_size"]), target["boxes"], target["labels"]
        for step in steps:
            x, boxes, labels = step(x, boxes, labels, gen)
        assert x.shape == (1, 64, 64) and len(boxes) == len(labels) <= len(target["labels"])
        assert bool(((boxes >= 0) & (boxes <= 64 * (1 + 1e-6))).all())  # inside, up to float rounding
        assert bool((boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all())
        kept += len(boxes)
    assert 0.3 * 898 < kept < 898  # crops drop some, not most


def test_train_transform_is_seeded_by_seed_epoch_and_index(coco_root):
    tf = build_det_transform(True)
    a, b = (coco128(coco_root, "val", tf, seed=3, subset=4) for _ in range(2))
    for i in range(4):
        (xa, ta), (xb, tb) = a[i], b[i]
        assert torch.equal(xa, xb) and torch.equal(ta["boxes"], tb["boxes"])
    b.set_epoch(1)
    assert any(not torch.equal(a[i][1]["boxes"], b[i][1]["boxes"]) for i in range(4))


# -- exact geometry --

def _marked(h: int, w: int, box: tuple[int, int, int, int]) -> Image.Image:
    img = np.zeros((h, w, 3), np.uint8)
    x0, y0, x1, y1 = box
    img[y0:y1, x0:x1] = 255
    return Image.fromarray(img)


def test_flip_and_resize_are_exact_on_a_hand_example():
    img, given = _marked(4, 8, (1, 0, 3, 2)), {"boxes": torch.tensor([[1.0, 0.0, 3.0, 2.0]]), "labels": [5]}
    x, target = compose([random_horizontal_flip(1.0)], **PLAIN)(img, given, None)
    # mirrored in an 8-wide image: columns 1..2 -> 5..6, so x0 = 8 - 3 = 5, x1 = 8 - 1 = 7
    assert torch.nonzero(x[0] > 0.5).tolist() == [[0, 5], [0, 6], [1, 5], [1, 6]]
    assert target["boxes"].tolist() == [[0.0, 5 / 8, 2 / 4, 7 / 8]] and target["labels"].tolist() == [5]
    x, boxes, _ = resize((6, 10))(x, torch.tensor([[5.0, 0.0, 7.0, 2.0]]), torch.tensor([5]))
    assert x.shape == (3, 6, 10) and boxes.tolist() == [[6.25, 0.0, 8.75, 3.0]]  # x * 10/8, y * 6/4
    x, target = compose([random_horizontal_flip(1.0), resize((6, 10))], **PLAIN)(img, given, None)
    assert target["boxes"].tolist() == [[0.0, 0.625, 0.5, 0.875]]  # unchanged by the resize
    x, target = compose([random_horizontal_flip(0.0)], **PLAIN)(img, given, None)
    assert target["boxes"].tolist() == [[0.0, 1 / 8, 0.5, 3 / 8]]


def test_crop_keeps_boxes_by_tf_rule():
    x = torch.zeros(3, 20, 30)
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0],   # 25 of 100 px inside the window below
                          [6.0, 6.0, 8.0, 8.0],     # inside
                          [20.0, 0.0, 25.0, 5.0],   # touches the window's right edge only: outside
                          [4.0, 10.0, 8.0, 18.0]])  # 15 of 32 px inside, its centre (6, 14) too
    labels = torch.tensor([1, 2, 3, 4])
    window = (5, 5, 10, 15)  # top, left, h, w: x 5..20, y 5..15
    out, kept, kept_labels = crop_to_window(x, boxes, labels, window, 0.0)
    assert out.shape == (3, 10, 15) and kept_labels.tolist() == [1, 2, 4]
    assert kept.tolist() == [[0.0, 0.0, 5.0, 5.0], [1.0, 1.0, 3.0, 3.0], [0.0, 5.0, 3.0, 10.0]]
    assert crop_to_window(x, boxes, labels, window, 0.3)[2].tolist() == [2, 4]  # 0.25 < 0.3 <= 15 / 32
    assert crop_to_window(x, boxes, labels, window, 0.5)[2].tolist() == [2]


def _coordinate_image(h: int, w: int) -> torch.Tensor:
    """Channel 0 holds the column, channel 1 the row (as pixel / 255): a crop shows where it was taken."""
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    return torch.stack([xs, ys, torch.zeros_like(xs)]).float() / 255


@pytest.mark.parametrize("seed", range(12))
def test_ssd_random_crop_follows_tf(seed):
    rng = np.random.default_rng(seed)
    h, w = 120, 160
    corners = rng.uniform(0, 1, (5, 2, 2)) * [w, h]
    boxes = torch.tensor(np.concatenate([corners.min(1), corners.max(1) + 4], 1).clip(0, [w, h, w, h]),
                         dtype=torch.float32)
    labels = torch.arange(1, 6)
    x = _coordinate_image(h, w)
    step = ssd_random_crop()
    out, kept, kept_labels = step(x, boxes, labels, torch.Generator().manual_seed(seed))
    again = step(x, boxes, labels, torch.Generator().manual_seed(seed))
    assert torch.equal(out, again[0]) and torch.equal(kept, again[1]) and torch.equal(kept_labels, again[2])
    ch, cw = out.shape[1:]
    left, top = round(float(out[0, 0, 0]) * 255), round(float(out[1, 0, 0]) * 255)
    if (ch, cw) != (h, w):
        # area 10-100 %; width = round(height * aspect) for an aspect in [0.5, 2]
        assert 0.1 * h * w <= ch * cw and (cw + 0.5) / ch >= 0.5 and (cw - 0.5) / ch <= 2
    assert bool(((kept >= 0) & (kept <= torch.tensor([cw, ch, cw, ch]))).all())
    assert bool((kept[:, 2] > kept[:, 0]).all() and (kept[:, 3] > kept[:, 1]).all())
    # the boxes kept are those TF's rule keeps at one of the seven thresholds, clipped and shifted
    rules = [crop_to_window(x, boxes, labels, (top, left, ch, cw), t)[1:] for t in SSD_COVERED]
    assert any(torch.equal(kept, b) and torch.equal(kept_labels, lab) for b, lab in rules)


def test_ssd_random_crop_varies_and_sometimes_keeps_the_image():
    x, boxes, labels = torch.zeros(3, 90, 120), torch.tensor([[30.0, 20.0, 80.0, 60.0]]), torch.tensor([1])
    shapes = [tuple(ssd_random_crop()(x, boxes, labels, torch.Generator().manual_seed(s))[0].shape[1:])
              for s in range(60)]
    assert len(set(shapes)) > 20 and 3 <= shapes.count((90, 120)) <= 25  # 15 % no crop, plus fall-backs


def test_sample_window_covers_a_box_as_asked():
    boxes = torch.tensor([[10.0, 10.0, 40.0, 30.0], [60.0, 5.0, 100.0, 70.0]])
    for seed in range(20):
        top, left, h, w = sample_window(80, 120, boxes, torch.Generator().manual_seed(seed), 1.0)
        inside = (boxes[:, 0] >= left) & (boxes[:, 1] >= top) & (boxes[:, 2] <= left + w) & \
            (boxes[:, 3] <= top + h)
        assert bool(inside.any()) and 0 <= top and top + h <= 80 and 0 <= left and left + w <= 120


# -- bad annotations: one line naming the JSON and the annotation --

CATEGORIES = [{"id": 1, "name": "person"}, {"id": 3, "name": "car"}]


def _coco(tmp_path: Path, annotations: list[dict], categories=CATEGORIES) -> Path:
    for name in ("a.jpg", "b.jpg"):
        Image.fromarray(np.zeros((10, 20, 3), np.uint8)).save(tmp_path / name)
    path = tmp_path / "instances.json"
    path.write_text(json.dumps({"images": [{"id": 1, "file_name": "a.jpg", "width": 20, "height": 10},
                                           {"id": 2, "file_name": "b.jpg", "width": 20, "height": 10}],
                                "annotations": annotations, "categories": categories}))
    return path


def _ann(ann_id: int, bbox, image_id: int = 1, category_id: int = 1, **extra) -> dict:
    return {"id": ann_id, "image_id": image_id, "category_id": category_id, "bbox": bbox, **extra}


BAD = {
    "outside_image": (_ann(7, [15, 2, 7, 3]),
                      "bbox [15, 2, 7, 3] lies outside its image a.jpg (20x10) by more than 1 px"),
    "bad_box": (_ann(7, [1, 1, 0, 3]), "bbox [1, 1, 0, 3] has a width or height <= 0"),
    "unknown_category": (_ann(7, [1, 1, 2, 3], category_id=12),
                         "category_id 12 is not one of the 2 COCO categories listed"),
    "unknown_image": (_ann(7, [1, 1, 2, 3], image_id=99), "image_id 99 is not among the images"),
}


def _message(fn) -> str:
    with pytest.raises(DataError) as err:
        fn()
    assert "\n" not in str(err.value)
    return str(err.value)


@pytest.mark.parametrize("kind", sorted(BAD))
def test_each_bad_annotation_names_the_file_and_annotation(tmp_path, kind):
    ann, text = BAD[kind]
    path = _coco(tmp_path, [_ann(1, [0, 0, 5, 5]), ann])
    assert _message(lambda: CocoDetection(path, tmp_path)) == f"{path}: annotation 7: {text}"
    with pytest.warns(UserWarning, match=f"{path}: skipped 1 {kind}"):
        data = CocoDetection(path, tmp_path, on_bad="skip")
    assert data.skipped == {k: int(k == kind) for k in SKIP_KINDS}
    assert data.target(0)["boxes"].tolist() == [[0, 0, 5, 5]]


def test_negative_size_and_missing_image_file(tmp_path):
    path = _coco(tmp_path, [_ann(4, [1, 1, 3, -2])])
    assert _message(lambda: CocoDetection(path, tmp_path)) == \
        f"{path}: annotation 4: bbox [1, 1, 3, -2] has a width or height <= 0"
    path = _coco(tmp_path, [_ann(5, [20.5, 0, 0.4, 5])])  # within the tolerance, but nothing inside
    assert _message(lambda: CocoDetection(path, tmp_path)) == \
        f"{path}: annotation 5: bbox [20.5, 0, 0.4, 5] has nothing inside its image a.jpg (20x10)"
    path = _coco(tmp_path, [_ann(4, [1, 1, 3, 2], image_id=2)])
    (tmp_path / "b.jpg").unlink()
    assert _message(lambda: CocoDetection(path, tmp_path)) == \
        f"{path}: image 2: {tmp_path / 'b.jpg'}: not found"


def test_skip_mode_counts_and_drops(tmp_path):
    good = [_ann(1, [0, 0, 5, 5]), _ann(2, [15.5, 2, 5.3, 8.6], category_id=3)]  # sticks out 0.8 px: clipped
    path = _coco(tmp_path, good + [BAD[kind][0] | {"id": 10 + k} for k, kind in enumerate(sorted(BAD))]
                 + [_ann(20, [1, 1, 2, 2], image_id=2)])
    (tmp_path / "b.jpg").unlink()
    with pytest.warns(UserWarning, match="skipped 1 unknown_image, 1 unknown_category, 1 bad_box"):
        data = CocoDetection(path, tmp_path, on_bad="skip")
    assert data.skipped == {kind: 1 for kind in SKIP_KINDS}
    assert len(data) == 1 and data.target(0)["labels"].tolist() == [1, 3]
    assert data.target(0)["boxes"].tolist() == [[0, 0, 5, 5], [15.5, 2, 20, 10]]
    x, target = data[0]
    assert x.shape == (3, 320, 320) and target["boxes"][1].tolist() == pytest.approx([0.2, 0.775, 1.0, 1.0])


def test_crowds_are_left_out_of_targets_but_kept_for_evaluation(tmp_path):
    path = _coco(tmp_path, [_ann(1, [0, 0, 5, 5]), _ann(2, [2, 2, 9, 6], iscrowd=1, area=30.0)])
    data = CocoDetection(path, tmp_path)
    assert data.target(0)["labels"].tolist() == [1]
    gt = data.coco_ground_truth()
    anns = gt.loadAnns(gt.getAnnIds())
    assert [(a["id"], a["iscrowd"], a["area"]) for a in anns] == [(1, 0, 25.0), (2, 1, 30.0)]
    assert gt.imgs[1]["width"] == 20 and len(gt.getCatIds()) == 80


def test_structural_errors(tmp_path):
    path = _coco(tmp_path, [], categories=[{"id": 0, "name": "person"}])
    assert _message(lambda: CocoDetection(path, tmp_path)) == (
        f"{path}: category 0 'person' is not COCO's (0 is not a COCO id); "
        "the label space is COCO's category ids")
    path = _coco(tmp_path, [_ann(3, [0, 0, 1, 1]), _ann(3, [0, 0, 2, 2])])
    assert _message(lambda: CocoDetection(path, tmp_path)) == f"{path}: annotation 3: id used twice"
    path.write_text("{")
    assert _message(lambda: CocoDetection(path, tmp_path)).startswith(f"{path}: cannot read the annotations")
    path = _coco(tmp_path, [])
    Image.fromarray(np.zeros((10, 21, 3), np.uint8)).save(tmp_path / "a.jpg")
    assert _message(lambda: CocoDetection(path, tmp_path)[0]) == (
        f"{tmp_path / 'a.jpg'}: image is 21x10 but {path} gives image 1 as 20x10")
    with pytest.raises(ValueError, match="on_bad"):
        CocoDetection(path, tmp_path, on_bad="ignore")


# -- generated scenes --

def _write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture
def scenes_dir(tmp_path) -> Path:
    """Fake Fashion-MNIST (blobs with a faint rim below the threshold) and a pure green photo."""
    rng = np.random.default_rng(1)
    glyphs = np.zeros((12, 28, 28), np.uint8)
    for k in range(12):
        glyphs[k, 4:24, 6:22] = rng.integers(THRESHOLD, 256, (20, 16))
        glyphs[k, 3, 6:22] = THRESHOLD - 1
    for prefix in ("train", "t10k"):
        _write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", glyphs)
        _write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", np.arange(12) % 10)
    Image.fromarray(np.tile(np.array([0, 255, 0], np.uint8), (50, 70, 1))).save(tmp_path / "green.png")
    return tmp_path


def _scenes(folder: Path, n: int = 12, **kw):
    return composite_detection(n, kw.pop("size", (48, 64)), kw.pop("seed", 5), data_dir=folder,
                               backgrounds=[folder / "green.png"], **kw)


def test_composite_boxes_are_tight_around_the_glyph(scenes_dir):
    data = _scenes(scenes_dir, objects=(1, 1))
    assert data.classes == list(COMPOSITE_CLASSES) and data.num_classes == 10
    for i in range(len(data)):
        image, boxes, labels = data.scene(i)
        ys, xs = np.nonzero(np.any(image != [0, 255, 0], axis=-1))  # no tinted glyph pixel has red 0
        assert boxes.tolist() == [[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]]
        assert 1 <= labels[0] <= 10


def test_composite_boxes_with_occlusion(scenes_dir):
    visible = _scenes(scenes_dir, 30, objects=(2, 5), object_scale=(0.3, 0.6), min_visible=0.0)
    whole = _scenes(scenes_dir, 30, objects=(2, 5), object_scale=(0.3, 0.6), min_visible=1.0)
    dropped = 0
    for i in range(30):
        image, boxes, _ = visible.scene(i)
        glyph = np.any(image != [0, 255, 0], axis=-1)
        covered = np.zeros_like(glyph)
        for x0, y0, x1, y1 in boxes.astype(int):
            covered[y0:y1, x0:x1] = True
            window = glyph[y0:y1, x0:x1]  # every edge of a box touches a glyph pixel
            assert window[0].any() and window[-1].any() and window[:, 0].any() and window[:, -1].any()
        assert not (glyph & ~covered).any()
        kept = whole.scene(i)[1]
        assert {tuple(b) for b in kept.tolist()} <= {tuple(b) for b in boxes.tolist()}
        dropped += len(boxes) - len(kept)
    assert dropped > 0


def test_composite_scenes_are_deterministic(scenes_dir):
    tf = build_det_transform(True, 32)
    a, b = _scenes(scenes_dir, 4, seed=7, transform=tf), _scenes(scenes_dir, 4, seed=7, transform=tf)
    for i in range(4):
        assert all(np.array_equal(u, v) for u, v in zip(a.scene(i), b.scene(i)))
        (xa, ta), (xb, tb) = a[i], b[i]
        assert xa.shape == (3, 32, 32) and torch.equal(xa, xb) and torch.equal(ta["boxes"], tb["boxes"])
        assert ta["image_id"] == i and ta["orig_size"] == (48, 64)
    assert not np.array_equal(a.scene(0)[0], _scenes(scenes_dir, 4, seed=8).scene(0)[0])
    with pytest.raises(IndexError):
        a.scene(4)
    gt = a.coco_ground_truth()
    assert sorted(gt.imgs) == [0, 1, 2, 3] and len(gt.anns) == sum(len(a.scene(i)[1]) for i in range(4))
    assert gt.cats[1]["name"] == "T-shirt/top" and gt.cats[10]["name"] == "Ankle boot"


def test_composite_detection_on_real_fashion_mnist_and_photo():
    need(FASHION_DIR, "Debian's dataset-fashion-mnist")
    data = composite_detection(4, 320, seed=0, split="test")
    assert "grace_hopper.jpg" in data.source
    for i in range(4):
        x, target = data[i]
        boxes = target["boxes"]
        assert x.shape == (3, 320, 320) and target["orig_size"] == (320, 320)
        assert len(boxes) >= 1 and bool(((boxes >= 0) & (boxes <= 1)).all())
        assert set(target["labels"].tolist()) <= set(range(1, 11))
