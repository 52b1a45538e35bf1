"""Joint image + label transforms for segmentation, on plain torch (torchvision does not install here).

The image is normalised first (a float CxHxW tensor) and the label becomes an int64 HxW tensor, so every
geometric step moves both together as tensors: bilinear for the image, nearest for the label (a label is never
blended), and padding puts exactly 0 into the image (the mean, after normalisation) and the ignore index into
the label. Every random step draws from the ``torch.Generator`` that the dataset seeds per
(seed, epoch, index) (``datasets._Seeded``), so a resumed or re-sharded run sees the same crops.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .transforms import _randint, _uniform, to_tensor

IGNORE_INDEX = 255  # in every label this layer returns: pixels no class is scored on
SegTransform = Callable[[torch.Tensor, torch.Tensor, torch.Generator], tuple[torch.Tensor, torch.Tensor]]
PairTransform = Callable[[Image.Image, "np.ndarray | torch.Tensor", torch.Generator],
                         tuple[torch.Tensor, torch.Tensor]]


def _hw(size: int | tuple[int, int]) -> tuple[int, int]:
    h, w = (size, size) if isinstance(size, int) else size
    if h < 1 or w < 1:
        raise ValueError(f"size must be positive, got {size!r}")
    return int(h), int(w)


def to_tensors(img: Image.Image, label, mean, std) -> tuple[torch.Tensor, torch.Tensor]:
    """PIL image -> normalised float CxHxW; label array -> int64 HxW (values unchanged)."""
    x = to_tensor(img, mean, std)
    y = torch.as_tensor(np.asarray(label), dtype=torch.int64)
    if y.shape != x.shape[1:]:
        raise ValueError(f"label {tuple(y.shape)} and image {tuple(x.shape[1:])} differ in size")
    return x, y


def resize_pair(x: torch.Tensor, y: torch.Tensor,
                size: int | tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Image bilinear (antialiased when shrinking, as PIL does), label nearest."""
    h, w = _hw(size)
    if (h, w) == tuple(x.shape[1:]):
        return x, y
    x = F.interpolate(x[None], size=(h, w), mode="bilinear", align_corners=False, antialias=True)[0]
    # "nearest-exact" samples pixel centres like PIL; plain "nearest" shifts the label by up to a pixel
    y = F.interpolate(y[None, None].float(), size=(h, w), mode="nearest-exact")[0, 0].to(torch.int64)
    return x, y


def random_scale(lo: float = 0.5, hi: float = 2.0) -> SegTransform:
    """Scale jitter: both sides times one factor drawn uniformly from [lo, hi] (DeepLab's 0.5-2.0)."""
    if not 0 < lo <= hi:
        raise ValueError(f"scale range must satisfy 0 < lo <= hi, got ({lo}, {hi})")

    def apply(x, y, gen):
        s = _uniform(gen, lo, hi)
        h, w = x.shape[1:]
        return resize_pair(x, y, (max(1, round(h * s)), max(1, round(w * s))))
    return apply


def pad_to(x: torch.Tensor, y: torch.Tensor, size: int | tuple[int, int],
           ignore_index: int = IGNORE_INDEX) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad bottom and right up to at least ``size``: image 0 (the mean once normalised), label ignored."""
    h, w = _hw(size)
    ph, pw = max(0, h - x.shape[1]), max(0, w - x.shape[2])
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), value=0.0)
        y = F.pad(y, (0, pw, 0, ph), value=ignore_index)
    return x, y


def random_crop(size: int | tuple[int, int], ignore_index: int = IGNORE_INDEX) -> SegTransform:
    """A uniformly placed ``size`` window, after padding an image smaller than it (see ``pad_to``)."""
    h, w = _hw(size)

    def apply(x, y, gen):
        x, y = pad_to(x, y, (h, w), ignore_index)
        top, left = _randint(gen, x.shape[1] - h + 1), _randint(gen, x.shape[2] - w + 1)
        return x[:, top:top + h, left:left + w], y[top:top + h, left:left + w]
    return apply


def horizontal_flip(p: float = 0.5) -> SegTransform:
    def apply(x, y, gen):
        if torch.rand((), generator=gen).item() < p:
            return x.flip(-1), y.flip(-1)
        return x, y
    return apply


def resize(size: int | tuple[int, int]) -> SegTransform:
    """Evaluation: both to exactly ``size`` (an int is a square); scores then count the resized label."""
    hw = _hw(size)

    def apply(x, y, gen=None):
        return resize_pair(x, y, hw)
    return apply


def compose(steps: list[SegTransform], mean, std) -> PairTransform:
    """PIL image + label array + generator -> (normalised image, int64 label), through ``steps`` in order."""
    def apply(img: Image.Image, label, gen: torch.Generator):
        x, y = to_tensors(img, label, mean, std)
        for step in steps:
            x, y = step(x, y, gen)
        return x, y
    return apply


def build_seg_transform(train: bool, size: int | tuple[int, int] | None, mean, std, *,
                        scale: tuple[float, float] | None = (0.5, 2.0), flip: bool = True,
                        ignore_index: int = IGNORE_INDEX) -> PairTransform:
    """Training: scale jitter, a ``size`` crop (padded where the image is smaller), horizontal flip.
    Evaluation: resize to ``size``, or keep the native size when ``size`` is None. Both normalise."""
    steps: list[SegTransform] = []
    if train:
        if scale is not None:
            steps.append(random_scale(*scale))
        if size is not None:
            steps.append(random_crop(size, ignore_index))
        if flip:
            steps.append(horizontal_flip())
    elif size is not None:
        steps.append(resize(size))
    return compose(steps, mean, std)
