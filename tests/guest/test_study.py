"""The width/depth study's committed networks (study/weights/) on the device:
their accuracy on the committed test split equals the host's (PyTorch, same
weights), as recorded by study/train.py in study/weights/manifest.json."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "study"))
import digits  # noqa: E402
import guest_eval  # noqa: E402
import zoo  # noqa: E402

if not zoo.MANIFEST.exists():
    pytest.skip(f"{zoo.MANIFEST} is missing (make study writes it)", allow_module_level=True)
MANIFEST = zoo.manifest()
COMMITTED = [name for name, e in MANIFEST["networks"].items() if e["committed"]]


def test_committed_networks_are_in_the_manifest():
    assert COMMITTED
    for name in COMMITTED:
        assert zoo.by_name()[name].committed
        assert (zoo.TOP / MANIFEST["networks"][name]["weights"]).exists()


def test_test_split():
    pixels, labels = digits.load_test()
    assert pixels.dtype == np.uint8 and pixels.shape == (MANIFEST["n_test"], digits.SIZE,
                                                         digits.SIZE)
    assert sorted(set(labels.tolist())) == list(range(10))


@pytest.mark.parametrize("name", COMMITTED)
def test_device_accuracy_equals_host(dev, name):
    entry = MANIFEST["networks"][name]
    pixels, labels = digits.load_test()
    model = guest_eval.load(zoo.by_name()[name], zoo.TOP / entry["weights"])
    assert model.params == entry["params"] and model.macs == entry["macs"]
    preds = guest_eval.device_predictions(dev, model, pixels)
    host = np.array([int(c) for c in entry["host_predictions"]])
    differ = np.flatnonzero(preds != host)
    assert int((preds == labels).sum()) == entry["host_correct"], (
        f"device accuracy {(preds == labels).mean():.4f} vs host {entry['host_accuracy']:.4f}; "
        f"predictions differ from the host's at {differ.tolist()}")
