"""int8 networks end to end on the device: zoo models at 32x32, quantized in
the guest (pyaccel.quantize, 2 calibration images: the emulated CPU is slow)
and run on the device; the device's output equals the golden model's
(pyaccel.compiler.golden over the quantized graph) bit for bit. Mixed
precision: a layer kept in float32 (DEQUANTIZE before it, QUANTIZE after)."""
from __future__ import annotations

import numpy as np
import pytest

from pyaccel import models
from pyaccel.compiler.builder import GraphModel
from pyaccel.quantize import quantize

CASES = {
    "mobilenet_v1": lambda: GraphModel(models.mobilenet_v1(0.25, 32, 10, seed=3).to_graph()),
    "mobilenet_v2": lambda: models.mobilenet_v2(0.35, 32, 10, seed=3, depth_mult=0.5),
    "resnet18": lambda: models.resnet(18, 0.25, 32, 10, seed=3),
    "shufflenet_v2": lambda: models.shufflenet_v2(0.5, 32, 10, seed=3, repeats=(2, 2, 1)),
}


def images(model, n, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n,) + model.input_shape, dtype=np.float32)


def run_device(dev, qm, x):
    with qm.compile(dev, batch=len(x)) as net:
        return net(x)


@pytest.mark.parametrize("name", list(CASES))
def test_int8_model_equals_the_golden_model(dev, name):
    model = CASES[name]()
    qm = quantize(model, images(model, 2))
    x = images(model, 2, seed=1)
    inf = run_device(dev, qm, x)
    want = qm.reference(x)
    assert np.array_equal(inf.output.reshape(want.shape), want)
    dev_nodes = [s for s in inf.layers if s.where == "device"]
    assert sum(s.precision == "int8" for s in dev_nodes) >= 10
    assert any(s.precision == "f32->int8" for s in dev_nodes)


def test_mixed_precision_is_bit_exact_against_its_golden_path(dev):
    model = CASES["resnet18"]()
    qm = quantize(model, images(model, 2), keep_float=("maxpool",))
    assert qm.precision["maxpool"] == "f32" and qm.precision["conv1"] == "int8"
    x = images(model, 2, seed=1)
    inf = run_device(dev, qm, x)
    assert np.array_equal(inf.output.reshape(-1), qm.reference(x).reshape(-1))
    where = {s.name: s.precision for s in inf.layers}
    assert where["maxpool"] == "f32" and where["layer1.0.conv1"] == "int8"
