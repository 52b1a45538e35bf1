"""Classification datasets: Fashion-MNIST from IDX arrays, and ImageFolder (ImageNet layout) for users' data.

Each item is (image tensor, label). Augmentation is seeded per (seed, epoch, index) through ``set_epoch``.
An unreadable image raises an error naming the file, or, with ``skip_corrupt``, is replaced by the next
readable one and counted (``skipped``) with a warning.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from .fashion_mnist import CLASSES, DataError, load_fashion_mnist

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".webp", ".tif", ".tiff"}


class _Seeded(torch.utils.data.Dataset):
    def __init__(self, transform, seed: int):
        self.transform, self.seed, self.epoch = transform, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _generator(self, index: int) -> torch.Generator:
        return torch.Generator().manual_seed((self.seed * 1_000_003 + self.epoch) * 10_000_019 + index)


class ArrayDataset(_Seeded):
    """Grayscale uint8 images (N, H, W) and labels; Fashion-MNIST's form."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform, seed: int = 0, classes=None,
                 source: str = "arrays"):
        super().__init__(transform, seed)
        self.images, self.labels, self.source = images, labels, source
        self.classes = list(classes) if classes is not None else [str(c) for c in sorted(set(labels.tolist()))]

    def __len__(self) -> int:
        return len(self.labels)

    def label_range(self) -> tuple[int, int]:
        return int(self.labels.min()), int(self.labels.max())

    def __getitem__(self, index: int):
        img = Image.fromarray(self.images[index], mode="L")
        return self.transform(img, self._generator(index)), int(self.labels[index])


def fashion_mnist(split: str, data_dir, transform, seed: int = 0, subset: int | None = None) -> ArrayDataset:
    images, labels = load_fashion_mnist(split, data_dir)
    if subset:
        images, labels = images[:subset], labels[:subset]
    return ArrayDataset(images, labels, transform, seed, CLASSES, source=f"{data_dir} (Fashion-MNIST {split})")


class ImageFolder(_Seeded):
    """``root/<class>/<image>``, classes sorted by name (ImageNet style)."""

    def __init__(self, root, transform, seed: int = 0, skip_corrupt: bool = False, subset: int | None = None,
                 channels: int = 3):
        super().__init__(transform, seed)
        root = self.source = Path(root)
        if not root.is_dir():
            raise DataError(f"{root}: not a folder (ImageFolder wants root/<class>/<image>)")
        self.classes = sorted(p.name for p in root.iterdir() if p.is_dir())
        if not self.classes:
            raise DataError(f"{root}: no class folders")
        self.samples = [(p, i) for i, c in enumerate(self.classes) for p in sorted((root / c).rglob("*"))
                        if p.suffix.lower() in IMAGE_SUFFIXES]
        if subset:
            self.samples = self.samples[:subset]
        if not self.samples:
            raise DataError(f"{root}: no images with suffixes {', '.join(sorted(IMAGE_SUFFIXES))}")
        self.skip_corrupt, self.mode, self.skipped = skip_corrupt, "L" if channels == 1 else "RGB", 0

    def __len__(self) -> int:
        return len(self.samples)

    def label_range(self) -> tuple[int, int]:
        labels = [label for _, label in self.samples]
        return min(labels), max(labels)

    def _open(self, path: Path) -> Image.Image:
        # PIL only warns between its pixel limit and twice it, then decodes gigabytes: refuse both
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            try:
                with Image.open(path) as img:
                    return img.convert(self.mode)
            except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
                raise DataError(f"{path}: too large to decode safely ({str(err).split(', could')[0]}; "
                                "PIL.Image.MAX_IMAGE_PIXELS sets the limit)") from None
            except (OSError, UnidentifiedImageError, ValueError) as err:
                raise DataError(f"{path}: cannot read the image ({type(err).__name__}: {err})") from None

    def __getitem__(self, index: int):
        for step in range(len(self.samples)):  # bounded: at most one pass over the data
            path, label = self.samples[(index + step) % len(self.samples)]
            try:
                img = self._open(path)
            except DataError as err:
                if not self.skip_corrupt:
                    raise
                self.skipped += 1
                warnings.warn(f"skipping {err}", stacklevel=2)
                continue
            return self.transform(img, self._generator(index)), label
        raise DataError(f"{self.source}: no readable image")
