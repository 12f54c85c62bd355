"""The width/depth study's committed networks (study/weights/) on the device:
on the committed 1,000 Fashion-MNIST test images (study/fashion_test1000.npz)
every float32 prediction equals the host's (PyTorch, same weights) and every
int8 prediction equals the golden model's (pyaccel.reference_int8), as
study/freeze.py recorded them in study/weights/manifest.json. No training."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

TOP = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(TOP / "study"))
import fashion  # noqa: E402
import guest_eval  # noqa: E402
from pyaccel.compiler.builder import GraphModel  # noqa: E402

MANIFEST_PATH = TOP / "study" / "weights" / "manifest.json"
MANIFEST = json.loads(MANIFEST_PATH.read_text())
NETS = sorted(MANIFEST["networks"])


def _subset():
    return fashion.load_npz(TOP / MANIFEST["test_file"])


def test_manifest_names_committed_files():
    assert len(NETS) >= 3
    for e in MANIFEST["networks"].values():
        for kind in ("float", "int8"):
            assert (TOP / e[f"{kind}_weights"]).exists(), e[f"{kind}_weights"]


def test_test_subset():
    pixels, labels = _subset()
    assert pixels.dtype == np.uint8 and pixels.shape == (MANIFEST["n_test"], 28, 28)
    assert np.bincount(labels, minlength=10).tolist() == [100] * 10


@pytest.mark.parametrize("kind", ["float", "int8"])
@pytest.mark.parametrize("name", NETS)
def test_device_predictions_equal_host(dev, name, kind):
    e = MANIFEST["networks"][name]
    pixels, labels = _subset()
    model = GraphModel.load(TOP / e[f"{kind}_weights"])
    assert (model.params, model.macs) == (e[f"{kind}_params"], e[f"{kind}_macs"])
    preds = guest_eval.device_predictions(dev, model, guest_eval.as_input(pixels, model))
    key = "host" if kind == "float" else "golden_int8"
    want = np.array([int(c) for c in e[f"{key}_predictions"]])
    differ = np.flatnonzero(preds != want)
    assert differ.size == 0 and int((preds == labels).sum()) == e[f"{key}_correct"], (
        f"{kind}: device accuracy {(preds == labels).mean():.4f} vs recorded "
        f"{e[f'{key}_correct'] / len(labels):.4f}; predictions differ at {differ.tolist()}")
