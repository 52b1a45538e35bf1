"""Segmentation data: ADE20K-32 and CamVid on real labels, joint transforms, generated scenes, bad input."""

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from edgenas.data.fashion_mnist import DEFAULT_DIR as FASHION_DIR
from edgenas.data.fashion_mnist import DataError
from edgenas.data.seg_transforms import (build_seg_transform, compose, horizontal_flip, random_crop,
                                         random_scale, to_tensors)
from edgenas.data.segmentation import (CAMVID_CLASSES, COMPOSITE_CLASSES, THRESHOLD, ade20k, camvid,
                                       composite_scenes, mask_folder, read_label)
from edgenas.errors import EdgenasError

from conftest import need, need_shared

ADE = Path(__file__).parent / "fixtures" / "ade20k-tiny"
MEAN, STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)


@pytest.fixture
def camvid_root() -> Path:
    return need_shared("data/camvid/val.txt", "the shared CamVid copy").parent


def save(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


# -- real labels --

def test_data_error_is_an_edgenas_error():
    assert issubclass(DataError, EdgenasError)


def test_ade20k_32_mapping_on_the_real_labels():
    data = ade20k(ADE, "validation")
    assert len(data) == 2 and data.num_classes == 32 and data.label_range() == (0, 31)
    assert data.classes[0] == "other (ignored)" and data.classes[1:4] == ["wall", "building", "sky"]
    assert data.classes[31] == "armchair"
    for index, ignored in ((0, 0.261), (1, 0.395)):  # the README's "% ignored under ADE-32"
        raw = read_label(data.samples[index][1])
        x, y = data[index]
        assert x.shape == (3, 512, 512) and x.dtype == torch.float32 and y.dtype == torch.int64
        assert np.array_equal(y.numpy(), np.where((raw >= 1) & (raw <= 31), raw, 255))
        assert abs(float((y == 255).float().mean()) - ignored) < 0.0006
        assert int((y == 0).sum()) == 0  # channel 0 is never a target
    y = data[0][1]
    assert sorted(set(y.unique().tolist()) - {255}) == [1, 2, 3, 5, 7, 10, 18]
    assert abs(float((y == 3).float().mean()) - 0.287) < 0.0006  # sky 28.7 %
    assert abs(float((y == 2).float().mean()) - 0.264) < 0.0006  # building 26.4 %


def test_ade20k_image_is_normalised():
    img = np.asarray(Image.open(ADE / "images/validation/ADE_val_00000001.jpg").convert("RGB"), np.float32)
    x, _ = ade20k(ADE, mean=(0.1, 0.2, 0.3), std=(0.5, 0.25, 2.0))[0]
    want = (torch.from_numpy(img).permute(2, 0, 1) / 255 - torch.tensor([0.1, 0.2, 0.3])[:, None, None]) \
        / torch.tensor([0.5, 0.25, 2.0])[:, None, None]
    assert torch.allclose(x, want, atol=1e-6)


def test_camvid_ids_and_void(camvid_root):
    assert len(camvid(camvid_root, "train")) == 367
    data = camvid(camvid_root, "val")
    assert len(data) == 101 and data.classes == list(CAMVID_CLASSES) and data.num_classes == 11
    seen = set()
    for index in (0, 50, 100):
        raw = read_label(data.samples[index][1])
        x, y = data[index]
        assert x.shape == (3, 360, 480) and y.shape == (360, 480)
        assert np.array_equal(y.numpy(), np.where(raw == 11, 255, raw))
        seen |= set(y.unique().tolist())
    assert seen <= set(range(11)) | {255} and 255 in seen


# -- transforms --

def test_transforms_are_deterministic_per_seed_epoch_and_index():
    tf = build_seg_transform(True, 200, MEAN, STD)
    a, b = ade20k(ADE, transform=tf, seed=3), ade20k(ADE, transform=tf, seed=3)
    xa, ya = a[0]
    xb, yb = b[0]
    assert xa.shape == (3, 200, 200) and torch.equal(xa, xb) and torch.equal(ya, yb)
    b.set_epoch(1)
    assert not torch.equal(b[0][1], ya)
    assert not torch.equal(ade20k(ADE, transform=tf, seed=4)[0][1], ya)


def _encoded_pair(rng, h=40, w=56):
    """A label of random blocks and an image whose red value encodes the label (10 * id + 5, never 0)."""
    label = np.kron(rng.integers(0, 20, (h // 8, w // 8)), np.ones((8, 8), np.int64)).astype(np.uint8)
    label[rng.random((h, w)) < 0.05] = 255
    img = np.zeros((h, w, 3), np.uint8)
    img[..., 0] = np.where(label == 255, 3, label.astype(np.int64) * 10 + 5)
    return Image.fromarray(img), label


@pytest.mark.parametrize("seed", range(6))
def test_crop_pad_and_flip_keep_image_and_label_aligned(seed):
    img, label = _encoded_pair(np.random.default_rng(seed))
    tf = compose([random_crop((48, 48)), horizontal_flip()], mean=(0, 0, 0), std=(1, 1, 1))
    x, y = tf(img, label, torch.Generator().manual_seed(seed))
    assert x.shape == (3, 48, 48) and y.shape == (48, 48)
    red = torch.round(x[0] * 255).to(torch.int64)
    padded = red == 0
    assert torch.all(y[padded] == 255) and torch.all(x[:, padded] == 0)  # image 0 (the mean), label ignored
    assert int(padded.sum()) == 48 * 8  # 40 rows of 48 pad to 48: 8 rows
    scored = (y != 255)
    assert torch.equal(red[scored], y[scored] * 10 + 5)


@pytest.mark.parametrize("seed", range(6))
def test_box_stays_aligned_through_scale_crop_and_flip(seed):
    img = np.zeros((60, 80, 3), np.uint8)
    label = np.zeros((60, 80), np.uint8)
    img[12:40, 30:70] = 240
    label[12:40, 30:70] = 7
    tf = build_seg_transform(True, 64, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), scale=(0.5, 2.0))
    x, y = tf(Image.fromarray(img), label, torch.Generator().manual_seed(seed))
    box_label = torch.nonzero(y == 7)
    box_image = torch.nonzero(x[0] > 0.5)  # half of the box's brightness
    if len(box_label) == 0:
        assert len(box_image) == 0
        return
    assert (box_label.min(0).values - box_image.min(0).values).abs().max() <= 1
    assert (box_label.max(0).values - box_image.max(0).values).abs().max() <= 1


def test_scale_jitter_range_and_nearest_labels():
    img, label = _encoded_pair(np.random.default_rng(0))
    x, y = to_tensors(img, label, MEAN, STD)
    sizes = set()
    for seed in range(20):
        xs, ys = random_scale(0.5, 2.0)(x, y, torch.Generator().manual_seed(seed))
        assert 20 <= xs.shape[1] <= 80 and xs.shape[1:] == ys.shape
        assert set(ys.unique().tolist()) <= set(np.unique(label).tolist())  # nearest: no blended ids
        sizes.add(xs.shape[1])
    assert len(sizes) > 5


def test_eval_transform_resizes_or_keeps_size():
    x, y = ade20k(ADE, transform=build_seg_transform(False, (128, 96), MEAN, STD))[0]
    assert x.shape == (3, 128, 96) and y.shape == (128, 96)
    assert ade20k(ADE)[0][1].shape == (512, 512)


# -- generated scenes --

def _fake_fashion(folder: Path, n: int = 12) -> None:
    rng = np.random.default_rng(1)
    glyphs = np.zeros((n, 28, 28), np.uint8)
    for k in range(n):  # a blob with faint pixels around it, like a real glyph's edge
        glyphs[k, 4:24, 6:22] = rng.integers(THRESHOLD, 256, (20, 16))
        glyphs[k, 3, 6:22] = THRESHOLD - 1
    labels = np.arange(n) % 10
    for split, prefix in (("train", "train"), ("test", "t10k")):
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", glyphs)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", labels)


def test_composite_scenes_have_exact_labels(tmp_path):
    _fake_fashion(tmp_path)
    green = save(tmp_path / "green.png", np.tile(np.array([0, 255, 0], np.uint8), (50, 70, 1)))
    data = composite_scenes(12, (48, 64), seed=5, data_dir=tmp_path, backgrounds=[green], objects=(1, 5))
    assert data.classes == list(COMPOSITE_CLASSES) and data.num_classes == 11
    assert data.classes[0] == "background"
    for index in range(len(data)):
        image, label = data.scene(index)
        assert image.shape == (48, 64, 3) and label.shape == (48, 64)
        background = np.all(image == [0, 255, 0], axis=-1)  # no tinted glyph pixel has red 0
        assert np.array_equal(background, label == 0)
        assert set(np.unique(label)) - {0} <= set(range(1, 11)) and label.max() > 0


def test_composite_scenes_are_deterministic(tmp_path):
    _fake_fashion(tmp_path)
    tf = build_seg_transform(True, 32, MEAN, STD)
    a = composite_scenes(4, 40, seed=7, data_dir=tmp_path, transform=tf)
    b = composite_scenes(4, 40, seed=7, data_dir=tmp_path, transform=tf)
    for i in range(4):
        assert all(np.array_equal(u, v) for u, v in zip(a.scene(i), b.scene(i)))
        assert all(torch.equal(u, v) for u, v in zip(a[i], b[i]))
    c = composite_scenes(4, 40, seed=8, data_dir=tmp_path)
    assert not np.array_equal(a.scene(0)[0], c.scene(0)[0])
    with pytest.raises(IndexError):
        a.scene(4)


def test_composite_scenes_on_real_fashion_mnist_and_photo():
    need(FASHION_DIR, "Debian's dataset-fashion-mnist")
    data = composite_scenes(6, 96, seed=0, split="test")
    x, y = data[0]
    assert x.shape == (3, 96, 96) and y.dtype == torch.int64
    assert "grace_hopper.jpg" in data.source
    labels = set().union(*(set(data[i][1].unique().tolist()) for i in range(6)))
    assert 0 in labels and labels <= set(range(11)) and len(labels) > 2


# -- bad input: one line naming the file --

def _folder(tmp_path, names=("a", "b"), size=(6, 8), label_size=None, value=1):
    for name in names:
        save(tmp_path / "img" / f"{name}.jpg", np.zeros((*size, 3), np.uint8))
        save(tmp_path / "ann" / f"{name}.png", np.full(label_size or size, value, np.uint8))
    return tmp_path / "img", tmp_path / "ann"


def _message(fn) -> str:
    with pytest.raises(DataError) as err:
        fn()
    assert "\n" not in str(err.value)
    return str(err.value)


def test_label_of_another_size(tmp_path):
    images, labels = _folder(tmp_path, ("a",), label_size=(5, 8))
    msg = _message(lambda: mask_folder(images, labels, 3)[0])
    assert msg.startswith(str(labels / "a.png")) and "label is 8x5 but its image" in msg
    assert "a.jpg is 8x6" in msg


def test_camvid_value_outside_the_class_map(tmp_path):
    save(tmp_path / "val" / "x.png", np.zeros((4, 4, 3), np.uint8))
    save(tmp_path / "valannot" / "x.png", np.array([[0, 11, 12, 3]] * 4, np.uint8))
    (tmp_path / "val.txt").write_text("val/x.png valannot/x.png\n")
    msg = _message(lambda: camvid(tmp_path, "val")[0])
    assert msg.startswith(str(tmp_path / "valannot" / "x.png")) and "label values 12 are outside" in msg


def test_ade20k_raw_id_above_150(tmp_path):
    save(tmp_path / "images/validation/p.jpg", np.zeros((4, 4, 3), np.uint8))
    save(tmp_path / "annotations/validation/p.png", np.array([[1, 151, 200, 255]] * 4, np.uint8))
    assert "p.png: label values 151, 200 are outside" in _message(lambda: ade20k(tmp_path)[0])


def test_missing_annotation(tmp_path):
    images, labels = _folder(tmp_path)
    (labels / "b.png").unlink()
    assert _message(lambda: mask_folder(images, labels, 3)).startswith(f"{images / 'b.jpg'}: no annotation")


def test_unreadable_files(tmp_path):
    images, labels = _folder(tmp_path)
    (images / "a.jpg").write_bytes(b"not a jpeg")
    assert _message(lambda: mask_folder(images, labels, 3)[0]).startswith(f"{images / 'a.jpg'}: cannot read")
    save(labels / "b.png", np.zeros((6, 8, 3), np.uint8))  # a colour label
    assert _message(lambda: mask_folder(images, labels, 3)[1]).startswith(f"{labels / 'b.png'}: a label must")


def test_empty_splits(tmp_path):
    (tmp_path / "images/training").mkdir(parents=True)
    (tmp_path / "annotations/training").mkdir(parents=True)
    assert "images/training: empty split" in _message(lambda: ade20k(tmp_path, "training"))
    assert _message(lambda: ade20k(tmp_path)) == f"{tmp_path / 'images/validation'}: not a folder"
    (tmp_path / "val.txt").write_text("\n")
    listing = tmp_path / "val.txt"
    assert _message(lambda: camvid(tmp_path, "val")) == f"{listing}: empty split: no 'image label' lines"
    assert _message(lambda: camvid(tmp_path, "train")) == (f"{tmp_path / 'train.txt'}: no such split list "
                                                          "('train'); this folder lists val")
    (tmp_path / "val.txt").write_text("val/x.png valannot/x.png\n")
    missing = f"{listing}:1: {tmp_path / 'val/x.png'}: not found"
    assert _message(lambda: camvid(tmp_path, "val")) == missing


def test_mask_folder_id_map_and_ignore_index(tmp_path):
    save(tmp_path / "img/sub/q.png", np.zeros((2, 4, 3), np.uint8))
    save(tmp_path / "ann/sub/q.png", np.array([[10, 20, 30, 11], [11, 10, 255, 20]], np.uint8))
    data = mask_folder(tmp_path / "img", tmp_path / "ann", 2, ignore_index=11,
                       id_map={10: 0, 20: 1, 30: None}, classes=["road", "car"])
    assert data[0][1].tolist() == [[0, 1, 255, 255], [255, 0, 255, 1]] and data.classes == ["road", "car"]
    plain = mask_folder(tmp_path / "img", tmp_path / "ann", 2, ignore_index=11)
    assert "label values 10, 20, 30 are outside the class map (0..1, 11 and 255 = ignore)" in \
        _message(lambda: plain[0])
