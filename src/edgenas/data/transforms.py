"""Image transforms on PIL and plain torch (torchvision does not install beside the pinned CPU torch).

Every random transform draws from an explicit ``torch.Generator``; the datasets seed one per (seed, epoch,
index), so an image's augmentation does not depend on worker scheduling and a resumed run sees the same data.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch
from PIL import Image, ImageEnhance, ImageOps

Transform = Callable[[Image.Image, torch.Generator], Image.Image]


def _uniform(gen: torch.Generator, lo: float, hi: float) -> float:
    return lo + (hi - lo) * torch.rand((), generator=gen).item()


def _randint(gen: torch.Generator, n: int) -> int:
    return int(torch.randint(n, (), generator=gen).item())


def random_resized_crop(size: int, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), resample=Image.BILINEAR) -> Transform:
    """Inception-style crop: a random area and aspect ratio, resized to ``size``; 10 tries, then the center."""
    def apply(img: Image.Image, gen: torch.Generator) -> Image.Image:
        w, h = img.size
        area = w * h
        for _ in range(10):
            target = area * _uniform(gen, *scale)
            aspect = math.exp(_uniform(gen, math.log(ratio[0]), math.log(ratio[1])))
            cw, ch = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
            if 0 < cw <= w and 0 < ch <= h:
                x, y = _randint(gen, w - cw + 1), _randint(gen, h - ch + 1)
                return img.resize((size, size), resample, box=(x, y, x + cw, y + ch))
        side = min(w, h)
        x, y = (w - side) // 2, (h - side) // 2
        return img.resize((size, size), resample, box=(x, y, x + side, y + side))
    return apply


def horizontal_flip(p: float = 0.5) -> Transform:
    def apply(img, gen):
        return img.transpose(Image.FLIP_LEFT_RIGHT) if torch.rand((), generator=gen).item() < p else img
    return apply


def resize_center_crop(size: int, crop_pct: float = 0.875, resample=Image.BILINEAR) -> Transform:
    """Evaluation: resize the shorter side to size / crop_pct, then take the central size x size."""
    def apply(img, gen=None):
        w, h = img.size
        short = max(size, round(size / crop_pct))
        nw, nh = (short, max(1, round(h * short / w))) if w <= h else (max(1, round(w * short / h)), short)
        img = img.resize((nw, nh), resample)
        x, y = (nw - size) // 2, (nh - size) // 2
        return img.crop((x, y, x + size, y + size))
    return apply


def _ops(magnitude: int):
    m = magnitude / 30.0  # RandAugment's magnitude scale, 0..30
    fill = 0
    return {
        "identity": lambda img, s: img,
        "autocontrast": lambda img, s: ImageOps.autocontrast(img),
        "equalize": lambda img, s: ImageOps.equalize(img),
        "rotate": lambda img, s: img.rotate(30 * m * s, fillcolor=fill),
        "solarize": lambda img, s: ImageOps.solarize(img, 256 - int(256 * m)),
        "posterize": lambda img, s: ImageOps.posterize(img, max(1, 8 - int(4 * m))),
        "contrast": lambda img, s: ImageEnhance.Contrast(img).enhance(1 + 0.9 * m * s),
        "brightness": lambda img, s: ImageEnhance.Brightness(img).enhance(1 + 0.9 * m * s),
        "sharpness": lambda img, s: ImageEnhance.Sharpness(img).enhance(1 + 0.9 * m * s),
        "shear_x": lambda img, s: img.transform(img.size, Image.AFFINE, (1, 0.3 * m * s, 0, 0, 1, 0), fillcolor=fill),
        "shear_y": lambda img, s: img.transform(img.size, Image.AFFINE, (1, 0, 0, 0.3 * m * s, 1, 0), fillcolor=fill),
        "translate_x": lambda img, s: img.transform(img.size, Image.AFFINE,
                                                    (1, 0, 0.45 * m * s * img.size[0], 0, 1, 0), fillcolor=fill),
        "translate_y": lambda img, s: img.transform(img.size, Image.AFFINE,
                                                    (1, 0, 0, 0, 1, 0.45 * m * s * img.size[1]), fillcolor=fill),
    }


def randaugment(num_ops: int = 2, magnitude: int = 9) -> Transform:
    """RandAugment (Cubuk et al. 2020): ``num_ops`` ops drawn uniformly, each at one global magnitude."""
    ops = _ops(magnitude)
    names = sorted(ops)

    def apply(img, gen):
        for _ in range(num_ops):
            sign = 1.0 if torch.rand((), generator=gen).item() < 0.5 else -1.0
            img = ops[names[_randint(gen, len(names))]](img, sign)
        return img
    return apply


def to_tensor(img: Image.Image, mean, std) -> torch.Tensor:
    arr = np.asarray(img, dtype=np.float32) / 255.0
    x = torch.from_numpy(arr.copy())
    x = x.unsqueeze(0) if x.ndim == 2 else x.permute(2, 0, 1)
    return (x - torch.tensor(mean).view(-1, 1, 1)) / torch.tensor(std).view(-1, 1, 1)


def build_transform(train: bool, size: int, mean, std, *, crop_pct: float = 0.875, augment: str = "basic",
                    ops: int = 2, magnitude: int = 9, min_scale: float = 0.08, interpolation: str = "bilinear"):
    """The training or evaluation pipeline: PIL image + generator -> normalized CHW float tensor."""
    resample = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC}[interpolation]
    steps: list[Transform] = []
    if train and augment != "none":
        steps += [random_resized_crop(size, scale=(min_scale, 1.0), resample=resample), horizontal_flip()]
        if augment == "randaugment":
            steps.append(randaugment(ops, magnitude))
    else:
        steps.append(resize_center_crop(size, crop_pct, resample))

    def apply(img: Image.Image, gen: torch.Generator) -> torch.Tensor:
        for step in steps:
            img = step(img, gen)
        return to_tensor(img, mean, std)
    return apply
