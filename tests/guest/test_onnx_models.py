"""Zoo networks from ONNX files, on the device, against onnxruntime.

The host writes build/guest-models/ before this suite boots
(tests/host/guest_models.py): every zoo family at two widths, depths or
resolutions as ONNX (float), and for MobileNet-v1, MobileNetV2, ResNet-18
and ShuffleNetV2 onnxruntime's QDQ quantization of it, with onnxruntime's
outputs on a seeded input. Here each file goes through pyaccel.onnx.load_model
and the compiler onto the device:

- float: the device's output is within 1e-4 of the output range of
  onnxruntime's;
- QDQ (int8): the device's output equals the golden model's bit for bit,
  and onnxruntime's int8 output (its optimized kernels) within 1 LSB on at
  least 99.9% of the elements, with the same top-1 for every image.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

TOP = Path(__file__).resolve().parents[2]
FOLDER = Path(os.environ.get("PYACCEL_GUEST_MODELS", TOP / "build" / "guest-models"))
MANIFEST = json.loads((FOLDER / "manifest.json").read_text()) \
    if (FOLDER / "manifest.json").exists() else None
MODELS = MANIFEST["models"] if MANIFEST else {}

pytestmark = pytest.mark.skipif(
    MANIFEST is None, reason=f"no exported models in {FOLDER}: the host writes them before "
    "the guest suite boots (python tests/host/guest_models.py)")


@pytest.fixture(scope="module")
def device():
    import pyaccel
    from conftest import load_module

    load_module()
    with pyaccel.open() as d:
        yield d


def run(device, model, x):
    with model.compile(device, batch=len(x)) as net:
        inf = net(x)
    return inf, np.asarray(inf.output)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_float_model_matches_onnxruntime(device, name):
    from pyaccel import onnx as ponnx

    data = np.load(FOLDER / name / "data.npz")
    model = ponnx.load_model(str(FOLDER / name / "model.onnx"))
    inf, y = run(device, model, data["x"])
    want = data["y"].reshape(y.shape)
    err = float(np.abs(y - want).max() / (want.max() - want.min()))
    where = {s.where for s in inf.layers}
    print(f"{name}: {len(inf.layers)} layers ({', '.join(sorted(where))}), "
          f"max |device - onnxruntime| = {err:.2e} of the output range")
    assert err <= 1e-4
    assert sum(s.where == "device" for s in inf.layers) >= 5


TORCH = MANIFEST.get("torch", {}) if MANIFEST else {}


@pytest.mark.parametrize("name", sorted(TORCH) or ["none"])
def test_torch_export_matches_onnxruntime(device, name):
    """torch.onnx.export's files (tests/host/torch_zoo.py, opsets 13 and 17)
    through pyaccel onto the device, within 1e-4 of the range of onnxruntime's
    output on the same file."""
    from pyaccel import onnx as ponnx

    if not TORCH:
        pytest.skip(MANIFEST.get("torch_missing", "no PyTorch exports"))
    d = FOLDER / "torch" / name
    data = np.load(d / "data.npz")
    inf, y = run(device, ponnx.load_model(str(d / "model.onnx")), data["x"])
    want = data["y"].reshape(y.shape)
    err = float(np.abs(y - want).max() / (want.max() - want.min()))
    print(f"torch {name}: {inf.where()}; max |device - onnxruntime| = {err:.2e} of the range")
    assert err <= 1e-4


@pytest.mark.parametrize("name", sorted(n for n, e in MODELS.items() if e["int8"]))
def test_qdq_model_matches_onnxruntime_int8(device, name):
    from pyaccel import onnx as ponnx
    from pyaccel.quantize import QuantizedModel

    entry, data = MODELS[name], np.load(FOLDER / name / "data.npz")
    qm = ponnx.load_model(str(FOLDER / name / "model-qdq.onnx"))
    assert isinstance(qm, QuantizedModel)
    assert sorted(qm.keep_float) == entry["float_layers"]
    inf, y = run(device, qm, data["x"])
    gold = data["y_golden"].reshape(y.shape)
    assert np.array_equal(y, gold), "the device differs from the golden model"
    lsb = np.abs(y - data["y_int8_ort"].reshape(y.shape)) / entry["out_scale"]
    exact = np.abs(y - data["y_int8_ref"].reshape(y.shape)) / entry["out_scale"]
    int8 = sum(s.where == "device" and "int8" in s.precision for s in inf.layers)
    print(f"{name}: {int8} int8 device layers, float {entry['float_layers']}; vs onnxruntime "
          f"int8: {np.mean(lsb <= 1.001):.4%} within 1 LSB (max {lsb.max():.2f}); vs its QDQ "
          f"reference: {np.mean(exact < 1e-3):.4%} equal")
    assert np.mean(lsb <= 1.001) >= 0.999
    assert np.array_equal(y.argmax(1), data["y_int8_ort"].reshape(y.shape).argmax(1))
    assert int8 >= 5
