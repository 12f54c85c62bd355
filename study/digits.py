"""The study's data: scikit-learn's 8x8 handwritten digits, upscaled.

Images are upscaled bilinearly (align_corners=False, like PyTorch's
interpolate) from 8x8 to SIZE x SIZE and stored as uint8 (0..255); a
network's input is `pixels / 255` as float32, on the host and in the guest
alike. The split is fixed: a stratified 20% test split (random_state=0).

The host builds both splits from scikit-learn (`load_splits`); the guest,
which has no scikit-learn, reads the test split from TEST_FILE, committed.
Numpy only (1.24 or newer) apart from `load_splits`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

SIZE = 32
TEST_FILE = Path(__file__).resolve().parent / "digits_test.npz"
TEST_FRACTION = 0.2
SEED = 0


def _bilinear_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) weights of 1-D bilinear resampling, align_corners=False."""
    src = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
    lo = np.floor(src).astype(int)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = src - lo
    m = np.zeros((n_out, n_in))
    m[np.arange(n_out), lo] += 1 - frac
    m[np.arange(n_out), hi] += frac
    return m


def upscale(images: np.ndarray, size: int = SIZE, max_value: float = 16.0) -> np.ndarray:
    """(N, 8, 8) digits with values 0..max_value -> (N, size, size) uint8."""
    m = _bilinear_matrix(images.shape[-1], size)
    big = np.einsum("oh,nhw,pw->nop", m, images.astype(np.float64), m)
    return np.clip(np.rint(big * 255.0 / max_value), 0, 255).astype(np.uint8)


def to_input(pixels: np.ndarray) -> np.ndarray:
    """uint8 (N, H, W) -> the network's float32 input (N, 1, H, W)."""
    return (pixels.astype(np.float32) / np.float32(255.0))[:, None]


def load_splits() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train, y_train, x_test, y_test) from scikit-learn; x uint8 (N, SIZE, SIZE)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x_tr, x_te, y_tr, y_te = train_test_split(d.images, d.target, test_size=TEST_FRACTION,
                                              random_state=SEED, stratify=d.target)
    return upscale(x_tr), y_tr.astype(np.uint8), upscale(x_te), y_te.astype(np.uint8)


def save_test(x: np.ndarray, y: np.ndarray, path: Path = TEST_FILE) -> None:
    np.savez_compressed(path, x=x, y=y)


def load_test(path: Path = TEST_FILE) -> tuple[np.ndarray, np.ndarray]:
    """The committed test split: x uint8 (N, SIZE, SIZE), y uint8 (N,)."""
    with np.load(path) as f:
        return f["x"], f["y"]
