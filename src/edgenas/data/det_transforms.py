"""Joint image + box transforms for detection: TF Object Detection API's SSD input pipeline on plain torch.

Between steps an item is (image, boxes, labels): the image a normalised float CxHxW tensor, the boxes a
float32 [M, 4] tensor of absolute pixel corners (x0, y0, x1, y1) on the continuous pixel grid (a box over
pixel columns a..b has x0 = a, x1 = b + 1), the labels int64 [M]. Geometry moves boxes exactly: a flip maps x
to W - x, a resize multiplies by the size ratio, a crop subtracts its corner and clips. The last step gives
the target the SSD core takes: ``boxes`` normalised [ymin, xmin, ymax, xmax] (TF's order) in [0, 1] of the
output image.
Every random step draws from the ``torch.Generator`` the dataset seeds per (seed, epoch, index)
(``datasets._Seeded``).

Training is the ssd_mobilenet_v2 COCO configs' pipeline (TF OD API, research/object_detection/core/
preprocessor.py and samples/configs): ``random_horizontal_flip``, ``ssd_random_crop`` with its defaults, then
``fixed_shape_resizer`` (320x320, aspect not kept) and Google's [-1, 1] normalisation (mean = std = 0.5).
``ssd_random_crop`` as TF does it:

* one of seven choices, uniformly: min_object_covered = overlap_thresh = 0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0,
  aspect_ratio_range 0.5-2.0 and area_range 0.1-1.0 for each; then with probability random_coef = 0.15 the
  image is kept whole (TF's "no crop" option: one per choice, not an eighth choice);
* the window is ``tf.image.sample_distorted_bounding_box`` (sample_distorted_bounding_box_op.cc): up to 100
  tries of an aspect ratio drawn uniformly, an integer height in the range the area allows, a width of
  round(height * aspect), a corner drawn uniformly (TF's draw excludes the last offset, so a window never
  touches the bottom/right edge unless it spans the image); a window qualifies when it covers at least
  min_object_covered of the area of at least one box (the whole image stands in when there are no boxes);
  after 100 failures the whole image;
* boxes are kept by TF's rule, not the SSD paper's centre rule: a box completely outside the window goes
  (``prune_completely_outside_window``), and so does one whose fraction of its own area inside the window is
  below overlap_thresh (``prune_non_overlapping_boxes``: intersection over the box's area); the rest are
  clipped to the window. So a box whose centre is outside can stay (clipped), and one whose centre is inside
  can go (at overlap_thresh 0.9 or 1.0).

One difference: TF measures coverage on boxes rounded to whole pixels; here it is on the exact boxes. The
image is resized bilinearly with half-pixel centres and no antialiasing (``tf.image.resize``'s defaults).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from PIL import Image

from .seg_transforms import _hw
from .transforms import _randint, _uniform, to_tensor

MEAN = STD = (0.5, 0.5, 0.5)  # Google's: RGB scaled to [-1, 1]
SSD_COVERED = (0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0)  # ssd_random_crop's min_object_covered = overlap_thresh
Item = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # image, boxes (x0, y0, x1, y1) pixels, labels
DetStep = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Generator], Item]
DetTransform = Callable[[Image.Image, dict, torch.Generator], tuple[torch.Tensor, dict]]


def flip_boxes(boxes: torch.Tensor, width: float) -> torch.Tensor:
    """Pixel corners mirrored left-right in an image ``width`` wide."""
    return torch.stack([width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], 1)


def random_horizontal_flip(p: float = 0.5) -> DetStep:
    def apply(x, boxes, labels, gen):
        if torch.rand((), generator=gen).item() < p:
            return x.flip(-1), flip_boxes(boxes, x.shape[2]), labels
        return x, boxes, labels
    return apply


def resize(size: int | tuple[int, int]) -> DetStep:
    """To exactly ``size`` (h, w; an int is a square), aspect not kept (``fixed_shape_resizer``)."""
    h, w = _hw(size)

    def apply(x, boxes, labels, gen=None):
        if (h, w) == tuple(x.shape[1:]):
            return x, boxes, labels
        scale = torch.tensor([w / x.shape[2], h / x.shape[1]] * 2, dtype=boxes.dtype)
        x = F.interpolate(x[None], size=(h, w), mode="bilinear", align_corners=False, antialias=False)[0]
        return x, boxes * scale, labels
    return apply


def crop_to_window(x: torch.Tensor, boxes: torch.Tensor, labels: torch.Tensor,
                   window: tuple[int, int, int, int], overlap_thresh: float) -> Item:
    """Cut ``window`` (top, left, height, width) out; keep the boxes TF's ``_strict_random_crop_image`` keeps
    (not completely outside, at least ``overlap_thresh`` of their area inside), clipped and in its frame."""
    top, left, h, w = window
    x0, y0, x1, y1 = boxes.unbind(1)
    inside = (x0 < left + w) & (x1 > left) & (y0 < top + h) & (y1 > top)
    inter = (x1.clamp(max=left + w) - x0.clamp(min=left)).clamp(min=0) * \
        (y1.clamp(max=top + h) - y0.clamp(min=top)).clamp(min=0)
    area = (x1 - x0) * (y1 - y0)
    keep = inside & (inter >= overlap_thresh * area)
    shift = torch.tensor([left, top, left, top], dtype=boxes.dtype)
    limit = torch.tensor([w, h, w, h], dtype=boxes.dtype)
    kept = torch.minimum((boxes[keep] - shift).clamp(min=0), limit)
    return x[:, top:top + h, left:left + w], kept, labels[keep]


def _crop_size(height: int, width: int, area_range: tuple[float, float], aspect: float,
               gen: torch.Generator) -> tuple[int, int] | None:
    """TF's ``GenerateRandomCrop``: (h, w) of area within ``area_range`` of the image and w / h ~ ``aspect``,
    or None where rounding leaves no size that fits."""
    min_area, max_area = area_range[0] * height * width, area_range[1] * height * width
    h, max_h = round((min_area / aspect) ** 0.5), round((max_area / aspect) ** 0.5)
    if round(max_h * aspect) > width:
        max_h = int((width + 0.5 - 1e-7) / aspect)
        if round(max_h * aspect) > width:
            max_h -= 1
    max_h = min(max_h, height)
    h = min(h, max_h)
    if h < max_h:
        h += _randint(gen, max_h - h + 1)
    w = round(h * aspect)
    if w * h < min_area:
        h += 1
        w = round(h * aspect)
    if w * h > max_area:
        h -= 1
        w = round(h * aspect)
    if not (min_area <= w * h <= max_area and 0 < w <= width and 0 < h <= height):
        return None
    return h, w


def sample_window(height: int, width: int, boxes: torch.Tensor, gen: torch.Generator,
                  min_object_covered: float, aspect_ratio_range: tuple[float, float] = (0.5, 2.0),
                  area_range: tuple[float, float] = (0.1, 1.0),
                  max_attempts: int = 100) -> tuple[int, int, int, int]:
    """(top, left, h, w) as ``tf.image.sample_distorted_bounding_box`` draws it (see the module docstring)."""
    if len(boxes) == 0:
        boxes = torch.tensor([[0.0, 0.0, width, height]])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    for _ in range(max_attempts):
        size = _crop_size(height, width, area_range, _uniform(gen, *aspect_ratio_range), gen)
        if size is None:
            continue
        h, w = size
        top = _randint(gen, height - h) if h < height else 0
        left = _randint(gen, width - w) if w < width else 0
        inter = (boxes[:, 2].clamp(max=left + w) - boxes[:, 0].clamp(min=left)).clamp(min=0) * \
            (boxes[:, 3].clamp(max=top + h) - boxes[:, 1].clamp(min=top)).clamp(min=0)
        valid = areas > 0
        if bool((inter[valid] >= min_object_covered * areas[valid]).any()):
            return top, left, h, w
    return 0, 0, height, width


def ssd_random_crop(min_object_covered: tuple[float, ...] = SSD_COVERED,
                    overlap_thresh: tuple[float, ...] = SSD_COVERED,
                    aspect_ratio_range: tuple[float, float] = (0.5, 2.0),
                    area_range: tuple[float, float] = (0.1, 1.0), random_coef: float = 0.15,
                    max_attempts: int = 100) -> DetStep:
    """TF OD API's ``ssd_random_crop`` with its defaults (one aspect and area range for every choice)."""
    if len(min_object_covered) != len(overlap_thresh) or not min_object_covered:
        raise ValueError(f"want one overlap_thresh per min_object_covered, got {len(overlap_thresh)} for "
                         f"{len(min_object_covered)}")

    def apply(x, boxes, labels, gen):
        choice = _randint(gen, len(min_object_covered))
        if torch.rand((), generator=gen).item() <= random_coef:
            return x, boxes, labels
        window = sample_window(x.shape[1], x.shape[2], boxes, gen, min_object_covered[choice],
                               aspect_ratio_range, area_range, max_attempts)
        return crop_to_window(x, boxes, labels, window, overlap_thresh[choice])
    return apply


def to_normalized(boxes: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Pixel corners (x0, y0, x1, y1) inside the image -> normalised [ymin, xmin, ymax, xmax] (TF's order),
    clamped to [0, 1] against float rounding (a corner at W * (320 / W) can land a hair past 320)."""
    scale = torch.tensor([height, width, height, width], dtype=boxes.dtype)
    return (boxes[:, [1, 0, 3, 2]] / scale).clamp(0, 1)


def compose(steps: list[DetStep], mean=MEAN, std=STD) -> DetTransform:
    """PIL image + target (``boxes`` pixel corners, ``labels``, ...) + generator -> (normalised image, target
    with normalised TF-order ``boxes`` and the labels that are left; other keys unchanged)."""
    def apply(img: Image.Image, target: dict, gen: torch.Generator):
        x = to_tensor(img, mean, std)
        boxes = torch.as_tensor(target["boxes"], dtype=torch.float32).reshape(-1, 4)
        labels = torch.as_tensor(target["labels"], dtype=torch.int64).reshape(-1)
        for step in steps:
            x, boxes, labels = step(x, boxes, labels, gen)
        return x, {**target, "boxes": to_normalized(boxes, x.shape[1], x.shape[2]), "labels": labels}
    return apply


def build_det_transform(train: bool, size: int | tuple[int, int] | None = 320, mean=MEAN, std=STD, *,
                        flip: bool = True, crop: bool = True) -> DetTransform:
    """Training: horizontal flip, ``ssd_random_crop``, resize to ``size``. Evaluation: resize to ``size`` only
    (None keeps the native size), so normalised boxes stay those of the original image. Both normalise."""
    steps: list[DetStep] = []
    if train:
        steps += ([random_horizontal_flip()] if flip else []) + ([ssd_random_crop()] if crop else [])
    if size is not None:
        steps.append(resize(size))
    return compose(steps, mean, std)


def collate_detection(batch: list[tuple[torch.Tensor, dict]]) -> tuple[torch.Tensor, list[dict]]:
    """(images stacked N x C x H x W, the targets as a list): boxes differ in number per image."""
    images, targets = zip(*batch)
    return torch.stack(images), list(targets)
