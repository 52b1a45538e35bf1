"""Detection datasets: COCO instances JSON (COCO's 90-id label space), COCO128, and generated scenes.

Each item is (image float CxHxW, target) after a ``det_transforms`` transform: target = {"boxes": float32
[M, 4] normalised [ymin, xmin, ymax, xmax] (TF's order), "labels": int64 [M] class ids, "image_id": int,
"orig_size": (h, w) of the original image}. Before the transform (``target(i)``, ``scene(i)``) boxes are
absolute pixel corners (x0, y0, x1, y1). ``coco_ground_truth()`` gives the same ground truth as a pycocotools
COCO object in original pixels, for ``eval.det_metrics.DetectionMeter``.

COCO: the category ids are the class indices, 1..90 with COCO's 10 unused ids as empty slots and 0 the
background (TF OD API's mscoco_label_map: 90 foreground slots, so ``num_classes`` is 90). The JSON's
categories, where it lists them, must be COCO's (id and name), so a file numbered 0..79 fails at once.
Validation, when the JSON is read: an annotation must point to a listed image and a known category and have a
box [x, y, w, h] of finite numbers, w and h > 0, inside its image up to ``BOX_TOLERANCE`` (1 px; within it the
box is clipped to the image); every image's file must exist. A failure is a one-line DataError naming the JSON
and the annotation id (the image id for a missing file); with ``on_bad="skip"`` the annotation (the image with
its annotations, for a missing file) is dropped and counted in ``skipped[kind]``, kind one of ``SKIP_KINDS``.
Crowd regions (iscrowd=1) are validated but left out of the targets: one box around many objects would teach
the matcher a box of no single object. ``coco_ground_truth`` keeps them as crowds, so COCOeval ignores
detections on them as the official evaluation does.

Generated scenes (``composite_detection``): Fashion-MNIST glyphs, tinted and pasted on windows of real photos
as ``segmentation.composite_scenes`` makes them, with exact boxes: the tight box of an object's glyph pixels
>= ``threshold`` that are still visible after all pastes (a later object covers an earlier one), in pixel
corners. An object with less than ``min_visible`` of its pixels visible gets no box (its visible pixels stay
in the image, unlabelled). Class ids 1..10 = Fashion-MNIST class + 1. Scene ``i`` depends on (seed, i) alone.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image
from pycocotools.coco import COCO

from ..eval.det_metrics import coco_api
from .composite import check_layout, paste_objects, photo_window
from .datasets import _Seeded
from .det_transforms import MEAN, STD, build_det_transform
from .fashion_mnist import CLASSES as FASHION_CLASSES
from .fashion_mnist import DEFAULT_DIR as FASHION_DIR
from .fashion_mnist import DataError, load_fashion_mnist
from .segmentation import COMPOSITE_CLASSES, THRESHOLD, _open, default_backgrounds

# COCO 2017's 80 thing categories with their official ids (as instances_val2017.json lists them).
COCO_CATEGORIES: tuple[tuple[int, str], ...] = (
    (1, "person"), (2, "bicycle"), (3, "car"), (4, "motorcycle"), (5, "airplane"), (6, "bus"), (7, "train"),
    (8, "truck"), (9, "boat"), (10, "traffic light"), (11, "fire hydrant"), (13, "stop sign"),
    (14, "parking meter"), (15, "bench"), (16, "bird"), (17, "cat"), (18, "dog"), (19, "horse"),
    (20, "sheep"), (21, "cow"), (22, "elephant"), (23, "bear"), (24, "zebra"), (25, "giraffe"),
    (27, "backpack"), (28, "umbrella"), (31, "handbag"), (32, "tie"), (33, "suitcase"), (34, "frisbee"),
    (35, "skis"), (36, "snowboard"), (37, "sports ball"), (38, "kite"), (39, "baseball bat"),
    (40, "baseball glove"), (41, "skateboard"), (42, "surfboard"), (43, "tennis racket"), (44, "bottle"),
    (46, "wine glass"), (47, "cup"), (48, "fork"), (49, "knife"), (50, "spoon"), (51, "bowl"), (52, "banana"),
    (53, "apple"), (54, "sandwich"), (55, "orange"), (56, "broccoli"), (57, "carrot"), (58, "hot dog"),
    (59, "pizza"), (60, "donut"), (61, "cake"), (62, "chair"), (63, "couch"), (64, "potted plant"),
    (65, "bed"), (67, "dining table"), (70, "toilet"), (72, "tv"), (73, "laptop"), (74, "mouse"),
    (75, "remote"), (76, "keyboard"), (77, "cell phone"), (78, "microwave"), (79, "oven"), (80, "toaster"),
    (81, "sink"), (82, "refrigerator"), (84, "book"), (85, "clock"), (86, "vase"), (87, "scissors"),
    (88, "teddy bear"), (89, "hair drier"), (90, "toothbrush"))
COCO_NUM_CLASSES = 90
# names by class id: 0 background, the unused ids "N/A"
COCO_CLASSES = ("background",) + tuple(dict(COCO_CATEGORIES).get(i, "N/A")
                                        for i in range(1, COCO_NUM_CLASSES + 1))
BOX_TOLERANCE = 1.0  # px a box may stick out of its image (then it is clipped)
SKIP_KINDS = ("unknown_image", "unknown_category", "bad_box", "outside_image", "missing_file")
MIN_VISIBLE = 0.3  # a generated object keeps its box while at least this fraction of its pixels is visible


class _Image(NamedTuple):
    id: int
    path: Path
    width: int
    height: int


class _Box(NamedTuple):
    id: int
    category: int
    box: tuple[float, float, float, float]  # pixel corners, clipped to the image
    area: float  # the JSON's (COCO's is the mask's): COCOeval's size buckets use it
    crowd: bool


def _ground_truth(images: list[dict], annotations: list[dict], categories) -> COCO:
    return coco_api({"images": images, "annotations": annotations,
                     "categories": [{"id": i, "name": name} for i, name in categories]})


def _coco_bbox(box) -> list[float]:
    x0, y0, x1, y1 = (float(v) for v in box)
    return [x0, y0, x1 - x0, y1 - y0]


class CocoDetection(_Seeded):
    """A COCO instances JSON and its image folder (see the module docstring for labels and validation)."""

    def __init__(self, annotation_file, image_dir, transform=None, *, seed: int = 0, on_bad: str = "raise",
                 subset: int | None = None, mean=MEAN, std=STD):
        if on_bad not in ("raise", "skip"):
            raise ValueError(f"on_bad must be 'raise' or 'skip', got {on_bad!r}")
        super().__init__(transform if transform is not None else build_det_transform(False, 320, mean, std),
                         seed)
        self.annotation_file, self.image_dir, self.on_bad = Path(annotation_file), Path(image_dir), on_bad
        self.skipped = {kind: 0 for kind in SKIP_KINDS}
        self.classes, self.source = list(COCO_CLASSES), f"{annotation_file} (COCO, images in {image_dir})"
        self.images, self.boxes = self._read(subset)
        if any(self.skipped.values()):
            counts = ", ".join(f"{n} {kind}" for kind, n in self.skipped.items() if n)
            warnings.warn(f"{self.annotation_file}: skipped {counts}", stacklevel=2)

    @property
    def num_classes(self) -> int:
        return COCO_NUM_CLASSES

    def __len__(self) -> int:
        return len(self.images)

    def _bad(self, kind: str, message: str) -> None:
        if self.on_bad == "raise":
            raise DataError(message)
        self.skipped[kind] += 1

    def _read(self, subset: int | None) -> tuple[list[_Image], dict[int, list[_Box]]]:
        path = self.annotation_file
        try:
            data = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise DataError(f"{path}: cannot read the annotations ({type(err).__name__}: {err})") from None
        if not (isinstance(data, dict) and all(isinstance(data.get(k), list)
                                               for k in ("images", "annotations"))):
            raise DataError(f"{path}: not a COCO instances file (want 'images' and 'annotations' lists)")
        images: dict[int, _Image] = {}
        for k, entry in enumerate(data["images"]):
            try:
                image = _Image(int(entry["id"]), self.image_dir / str(entry["file_name"]),
                               int(entry["width"]), int(entry["height"]))
            except (KeyError, TypeError, ValueError):
                raise DataError(f"{path}: images[{k}]: want id, file_name, width and height") from None
            if image.id in images:
                raise DataError(f"{path}: image {image.id}: listed twice")
            if image.width < 1 or image.height < 1:
                raise DataError(f"{path}: image {image.id}: size {image.width}x{image.height}")
            images[image.id] = image
        known = self._categories(data)
        boxes: dict[int, list[_Box]] = {i: [] for i in images}
        seen: set[int] = set()
        for k, ann in enumerate(data["annotations"]):
            try:
                ann_id, image_id, category = int(ann["id"]), int(ann["image_id"]), int(ann["category_id"])
                bbox, area = ann["bbox"], float(ann["area"]) if "area" in ann else None
            except (KeyError, TypeError, ValueError):
                raise DataError(f"{path}: annotations[{k}]: want id, image_id, category_id, bbox and a "
                                "numeric area if any") from None
            if ann_id in seen:
                raise DataError(f"{path}: annotation {ann_id}: id used twice")
            seen.add(ann_id)
            box = self._check(ann_id, images.get(image_id), image_id, category, bbox, known)
            if box is not None:
                area = (box[2] - box[0]) * (box[3] - box[1]) if area is None else area
                boxes[image_id].append(_Box(ann_id, category, box, area, bool(ann.get("iscrowd", 0))))
        kept = []
        for image in list(images.values())[:subset or None]:
            if image.path.is_file():
                kept.append(image)
            else:
                self._bad("missing_file", f"{path}: image {image.id}: {image.path}: not found")
        if not kept:
            raise DataError(f"{path}: no images")
        return kept, {image.id: boxes[image.id] for image in kept}

    def _categories(self, data: dict) -> set[int]:
        """The category ids annotations may use: those the JSON lists, each checked to be COCO's."""
        coco = dict(COCO_CATEGORIES)
        if "categories" not in data:
            return set(coco)
        known = set()
        for k, entry in enumerate(data["categories"]):
            try:
                cat, name = int(entry["id"]), str(entry["name"])
            except (KeyError, TypeError, ValueError):
                raise DataError(f"{self.annotation_file}: categories[{k}]: want id and name") from None
            if coco.get(cat) != name:
                is_ = f"COCO's {cat} is {coco[cat]!r}" if cat in coco else f"{cat} is not a COCO id"
                raise DataError(f"{self.annotation_file}: category {cat} {name!r} is not COCO's ({is_}); "
                                "the label space is COCO's category ids")
            known.add(cat)
        return known

    def _check(self, ann_id: int, image: _Image | None, image_id: int, category: int, bbox,
               known: set[int]) -> tuple[float, float, float, float] | None:
        """The annotation's box as pixel corners clipped to its image, or None (skipped) where it is bad."""
        where = f"{self.annotation_file}: annotation {ann_id}"
        if image is None:
            return self._bad("unknown_image", f"{where}: image_id {image_id} is not among the images")
        if category not in known:
            return self._bad("unknown_category", f"{where}: category_id {category} is not one of the "
                                                 f"{len(known)} COCO categories listed")
        try:
            x, y, w, h = (float(v) for v in bbox)
        except (TypeError, ValueError):
            return self._bad("bad_box", f"{where}: bbox {bbox!r} is not [x, y, w, h]")
        if not all(math.isfinite(v) for v in (x, y, w, h)):
            return self._bad("bad_box", f"{where}: bbox {bbox} is not finite")
        if w <= 0 or h <= 0:
            return self._bad("bad_box", f"{where}: bbox {bbox} has a width or height <= 0")
        t, size = BOX_TOLERANCE, f"{image.path.name} ({image.width}x{image.height})"
        if x < -t or y < -t or x + w > image.width + t or y + h > image.height + t:
            return self._bad("outside_image", f"{where}: bbox {bbox} lies outside its image {size} by more "
                                              f"than {t:g} px")
        x0, y0, x1, y1 = max(x, 0.0), max(y, 0.0), min(x + w, image.width), min(y + h, image.height)
        if x1 <= x0 or y1 <= y0:
            return self._bad("outside_image", f"{where}: bbox {bbox} has nothing inside its image {size}")
        return x0, y0, x1, y1

    def target(self, index: int) -> dict:
        """Image ``index``'s target before the transform: pixel-corner boxes of its non-crowd annotations."""
        image = self.images[index]
        anns = [b for b in self.boxes[image.id] if not b.crowd]
        return {"boxes": torch.tensor([b.box for b in anns], dtype=torch.float32).reshape(-1, 4),
                "labels": torch.tensor([b.category for b in anns], dtype=torch.int64),
                "image_id": image.id, "orig_size": (image.height, image.width)}

    def load(self, index: int) -> Image.Image:
        """The RGB image, checked to have the size the JSON gives."""
        image = self.images[index]
        img = _open(image.path, "RGB")
        if img.size != (image.width, image.height):
            raise DataError(f"{image.path}: image is {img.size[0]}x{img.size[1]} but {self.annotation_file} "
                            f"gives image {image.id} as {image.width}x{image.height}")
        return img

    def __getitem__(self, index: int):
        return self.transform(self.load(index), self.target(index), self._generator(index))

    def coco_ground_truth(self) -> COCO:
        """The kept images and annotations (crowds included, as crowds) in original pixels."""
        images = [{"id": i.id, "file_name": i.path.name, "width": i.width, "height": i.height}
                  for i in self.images]
        anns = [{"id": b.id, "image_id": i.id, "category_id": b.category, "bbox": _coco_bbox(b.box),
                 "area": b.area, "iscrowd": int(b.crowd)} for i in self.images for b in self.boxes[i.id]]
        return _ground_truth(images, anns, COCO_CATEGORIES)


def coco128(root, split: str = "val", transform=None, *, seed: int = 0, subset: int | None = None,
            on_bad: str = "raise", mean=MEAN, std=STD) -> CocoDetection:
    """COCO128's layout: ``annotations/instances_<split>2017.json`` and ``images/<split>2017/``."""
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', got {split!r}")
    root = Path(root)
    return CocoDetection(root / "annotations" / f"instances_{split}2017.json",
                         root / "images" / f"{split}2017", transform, seed=seed, on_bad=on_bad, subset=subset,
                         mean=mean, std=std)


class CompositeDetection(_Seeded):
    """Seeded detection scenes (see the module docstring)."""

    def __init__(self, glyphs: np.ndarray, glyph_labels: np.ndarray, photos: list[np.ndarray], n: int,
                 size: int | tuple[int, int], transform, seed: int = 0, objects: tuple[int, int] = (1, 4),
                 object_scale: tuple[float, float] = (0.15, 0.5), threshold: int = THRESHOLD,
                 min_visible: float = MIN_VISIBLE, source: str = ""):
        super().__init__(transform, seed)
        check_layout(objects, object_scale)
        if not 0 <= min_visible <= 1:
            raise ValueError(f"min_visible must be in [0, 1], got {min_visible}")
        self.glyphs, self.glyph_labels, self.photos, self.n = glyphs, glyph_labels, photos, n
        self.size = (size, size) if isinstance(size, int) else tuple(size)
        self.objects, self.object_scale, self.threshold = objects, object_scale, threshold
        self.min_visible, self.classes, self.source = min_visible, list(COMPOSITE_CLASSES), source

    @property
    def num_classes(self) -> int:
        return len(self.classes) - 1

    def __len__(self) -> int:
        return self.n

    def scene(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Scene ``index`` as (RGB uint8 HxWx3, boxes float32 [M, 4] pixel corners, labels int64 [M])."""
        if not 0 <= index < self.n:
            raise IndexError(f"scene {index} of {self.n}")
        rng = np.random.default_rng([self.seed, index])
        h, w = self.size
        image = photo_window(rng, self.photos, h, w)
        owner = np.full((h, w), -1, np.int16)  # which object each pixel shows
        placed = []
        for j, o in enumerate(paste_objects(rng, image, self)):
            owner[o.y:o.y + o.side, o.x:o.x + o.side][o.inside] = j
            placed.append((o.y, o.x, o.side, int(o.inside.sum()), o.label))
        boxes, labels = [], []
        for j, (y, x, side, pixels, label) in enumerate(placed):
            visible = owner[y:y + side, x:x + side] == j
            shown = int(visible.sum())
            if shown == 0 or shown < self.min_visible * pixels:
                continue
            rows, cols = np.flatnonzero(visible.any(1)), np.flatnonzero(visible.any(0))
            boxes.append((x + cols[0], y + rows[0], x + cols[-1] + 1, y + rows[-1] + 1))
            labels.append(label)
        return image, np.array(boxes, np.float32).reshape(-1, 4), np.array(labels, np.int64)

    def __getitem__(self, index: int):
        image, boxes, labels = self.scene(index)
        target = {"boxes": torch.from_numpy(boxes), "labels": torch.from_numpy(labels), "image_id": index,
                  "orig_size": self.size}
        return self.transform(Image.fromarray(image), target, self._generator(index))

    def coco_ground_truth(self) -> COCO:
        """Every scene's boxes (generated again: scene ``i`` depends on (seed, i) alone), image id = index."""
        h, w = self.size
        images, anns = [], []
        for i in range(self.n):
            images.append({"id": i, "file_name": f"scene-{i}", "width": w, "height": h})
            _, boxes, labels = self.scene(i)
            for box, label in zip(boxes.tolist(), labels.tolist()):
                bbox = _coco_bbox(box)
                anns.append({"id": len(anns) + 1, "image_id": i, "category_id": label, "bbox": bbox,
                             "area": bbox[2] * bbox[3], "iscrowd": 0})
        return _ground_truth(images, anns, enumerate(FASHION_CLASSES, 1))


def composite_detection(n: int, size: int | tuple[int, int] = 320, seed: int = 0, *, split: str = "train",
                        data_dir=FASHION_DIR, backgrounds=None, objects: tuple[int, int] = (1, 4),
                        object_scale: tuple[float, float] = (0.15, 0.5), threshold: int = THRESHOLD,
                        min_visible: float = MIN_VISIBLE, transform=None, mean=MEAN,
                        std=STD) -> CompositeDetection:
    """``n`` generated scenes of Fashion-MNIST ``split`` objects on ``backgrounds`` (photo paths; default:
    matplotlib's photographs). The default transform keeps the scene's size. Use a different seed and split
    "test" for a validation set."""
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    paths = [Path(p) for p in backgrounds] if backgrounds is not None else default_backgrounds()
    if not paths:
        raise DataError("no background photos: install matplotlib (it ships "
                        "mpl-data/sample_data/grace_hopper.jpg) or pass backgrounds=[photo paths]")
    photos = [np.asarray(_open(p, "RGB")) for p in paths]
    glyphs, labels = load_fashion_mnist(split, data_dir)
    if transform is None:
        transform = build_det_transform(False, None, mean, std)
    source = f"composite detection scenes (Fashion-MNIST {split} from {data_dir} on " \
             f"{', '.join(p.name for p in paths)})"
    return CompositeDetection(glyphs, labels, photos, n, size, transform, seed, objects, object_scale,
                              threshold, min_visible, source)
