"""Fashion-MNIST from its IDX files (Debian's ``dataset-fashion-mnist`` puts them in DEFAULT_DIR)."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from ..errors import DataError

DEFAULT_DIR = Path("/usr/share/datasets/fashion-mnist")
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
           "Ankle boot")
_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
          "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
HOW_TO_GET = ("install Debian's dataset-fashion-mnist (apt-get install dataset-fashion-mnist) or pass "
              "--data-dir with the four IDX files")


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (optionally gzipped): magic 0x0000 | dtype byte | ndim byte, big-endian dims."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as err:
        raise DataError(f"{path}: cannot read ({err})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _DTYPES:
        raise DataError(f"{path}: not an IDX file (bad magic number)")
    ndim = raw[3]
    dims = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_DTYPES[raw[2]])
    expected = int(np.prod(dims)) * dtype.itemsize
    body = raw[4 + 4 * ndim:]
    if len(body) != expected:
        raise DataError(f"{path}: header says {dims} ({expected} bytes) but {len(body)} bytes follow")
    return np.frombuffer(body, dtype=dtype).reshape(dims)


def _find(data_dir: Path, stem: str) -> Path:
    for name in (stem, f"{stem}.gz"):
        if (data_dir / name).is_file():
            return data_dir / name
    raise DataError(f"{data_dir / stem}[.gz]: not found; {HOW_TO_GET}")


def _check_type(path: Path, array: np.ndarray, fits: bool, wanted: str) -> None:
    if not fits:
        code = next(c for c, t in _DTYPES.items() if np.dtype(t) == array.dtype)
        raise DataError(f"{path}: holds {array.dtype.name} values (IDX type code 0x{code:02X}); Fashion-MNIST's "
                        f"{wanted}")


def load_fashion_mnist(split: str = "train", data_dir: str | Path = DEFAULT_DIR) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 28, 28) uint8 and labels (N,) int64 of one split."""
    if split not in _FILES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    data_dir = Path(data_dir)
    files = [_find(data_dir, stem) for stem in _FILES[split]]
    images, labels = (read_idx(f) for f in files)
    # a valid IDX file may hold another type, but images become 8-bit PIL images and labels class indices:
    # floats would fail deep in a transform (and is 1.0 white, or nearly black?)
    _check_type(files[0], images, images.dtype == np.uint8, "images are uint8 (IDX type code 0x08)")
    _check_type(files[1], labels, labels.dtype.kind in "ui", "labels are integers")
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise DataError(f"{data_dir}: {split} images {images.shape} and labels {labels.shape} do not pair up")
    return images, labels.astype(np.int64)
