"""The IDX reader on files the tests write."""

import gzip

import numpy as np
import pytest

from edgenas.data.fashion_mnist import DataError, load_fashion_mnist, read_idx


def write_idx(path, array: np.ndarray, compress: bool = False) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    (gzip.open if compress else open)(path, "wb").write(data)


def write_fashion_mnist(folder, n: int = 6, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for split, prefix in (("train", "train"), ("test", "t10k")):
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)), compress=True)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte", rng.integers(0, 10, (n,)))


def test_reads_plain_and_gzipped_files(tmp_path):
    write_fashion_mnist(tmp_path)
    images, labels = load_fashion_mnist("test", tmp_path)
    assert images.shape == (6, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (6,) and labels.dtype == np.int64


def test_errors_name_the_file(tmp_path):
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(DataError, match="bad: not an IDX file"):
        read_idx(tmp_path / "bad")
    arr = np.zeros((2, 3), np.uint8)
    write_idx(tmp_path / "short", arr)
    (tmp_path / "short").write_bytes((tmp_path / "short").read_bytes()[:-1])
    with pytest.raises(DataError, match=r"short: header says \(2, 3\) \(6 bytes\) but 5 bytes follow"):
        read_idx(tmp_path / "short")
    with pytest.raises(DataError, match="not found; install Debian's dataset-fashion-mnist"):
        load_fashion_mnist("train", tmp_path)


def test_float_images_are_refused_with_their_file_and_type(tmp_path):
    """IDX type 0x0D (float32) is valid IDX, but not Fashion-MNIST's 8-bit images: one line, not PIL's
    "Invalid mode for data type" from inside a transform."""
    write_fashion_mnist(tmp_path)
    floats = np.zeros((6, 28, 28), ">f4")
    header = bytes([0, 0, 0x0D, 3]) + b"".join(int(d).to_bytes(4, "big") for d in floats.shape)
    (tmp_path / "t10k-images-idx3-ubyte.gz").unlink()
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(header + floats.tobytes())
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte: holds float32 values \(IDX type code 0x0D\); "
                                        r"Fashion-MNIST's images are uint8"):
        load_fashion_mnist("test", tmp_path)
