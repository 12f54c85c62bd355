"""The study's data: Fashion-MNIST (Xiao et al., 2017) from Debian's package
`dataset-fashion-mnist` (scripts/setup-host.sh installs it): 60,000
training and 10,000 test images, 28x28 uint8, 10 classes.

A network's input is `pixels / 255` as float32 (N, 1, 28, 28), on the host
and in the guest alike. Numpy only.

- `load(split)`: "train" or "test" from the package's idx files;
- `subset(y, n, seed)`: a fixed stratified subset of n training images;
- `write_eval_file(path)`: the 10,000 test images as one npz for the guest,
  which sees the repo (build/ included) but not /usr/share;
- TEST_SUBSET (study/fashion_test1000.npz, committed): the first 100 test
  images of each class, for make test's fast check.
"""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

PACKAGE = "dataset-fashion-mnist"
DATA_DIR = Path("/usr/share/datasets/fashion-mnist")
FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
         "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}
HERE = Path(__file__).resolve().parent
TEST_SUBSET = HERE / "fashion_test1000.npz"
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
           "Sneaker", "Bag", "Ankle boot")
SIZE = 28


class DataMissingError(FileNotFoundError):
    """The package's files are not there: the message says how to get them."""


def _idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def available() -> bool:
    return all((DATA_DIR / f).exists() for pair in FILES.values() for f in pair)


def load(split: str) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (N, 28, 28), labels uint8 (N,)) of "train" or "test"."""
    if split not in FILES:
        raise ValueError(f"split must be one of {sorted(FILES)}, got {split!r}")
    if not available():
        raise DataMissingError(f"{DATA_DIR} has no Fashion-MNIST: install the Debian package "
                               f"{PACKAGE} (make setup does)")
    images, labels = (_idx(DATA_DIR / f) for f in FILES[split])
    return images, labels


def to_input(pixels: np.ndarray) -> np.ndarray:
    """uint8 (N, H, W) -> the network's float32 input (N, 1, H, W)."""
    return (pixels.astype(np.float32) / np.float32(255.0))[:, None]


def subset(labels: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """Indices of a fixed stratified subset of n images (n/10 per class), sorted."""
    if n >= len(labels):
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    per = n // CLASSES.__len__()
    idx = [rng.permutation(np.flatnonzero(labels == c))[:per] for c in range(len(CLASSES))]
    return np.sort(np.concatenate(idx))


def test_subset_indices(labels: np.ndarray, per_class: int = 100) -> np.ndarray:
    """The first per_class test images of each class (sorted)."""
    return np.sort(np.concatenate([np.flatnonzero(labels == c)[:per_class]
                                   for c in range(len(CLASSES))]))


def save(path: Path, x: np.ndarray, y: np.ndarray, **extra: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, x=x, y=y, **extra)


def load_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """An npz written by save: x uint8 (N, 28, 28), y uint8 (N,)."""
    with np.load(path) as f:
        return f["x"], f["y"]
