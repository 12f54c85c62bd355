"""Post-training quantization (pyaccel.quantize) on the host: calibration
ranges, shared concat/view scales, ADD's own scale, save/load, the golden
model (pyaccel.compiler.golden) equal to the simulated device bit for bit,
mixed precision, and the quantized output close to the float one."""
from __future__ import annotations

import numpy as np
import pytest

from pyaccel import models
from pyaccel import quant
from pyaccel.compiler import execute
from pyaccel.compiler.builder import Builder, GraphModel
from pyaccel.compiler.simulate import HostDevice
from pyaccel.quantize import (QuantizedModel, QuantizeError, calibrate, float_passes,
                              quantize)


def data(model, n, seed=0):
    return np.random.default_rng(seed).standard_normal((n,) + model.input_shape,
                                                       dtype=np.float32)


def small():
    b = Builder("small", (3, 16, 16), seed=4)
    x = b.conv(b.input, 8, 3, stride=2)
    y = b.conv(x, 8, 3, act="hard_swish")
    x = b.add(x, y, act="relu")
    left = b.conv(x, 4, 1, act="relu6")
    right = b.maxpool(x, 3, 1, 1)
    y = b.concat([left, right])
    y = b.conv(y, 12, 3, act="leaky_relu")
    return b.finish(b.fc(b.flatten(b.global_avgpool(y)), 10))


def on_device(qm, x):
    with qm.compile(HostDevice(), batch=len(x)) as net:
        return net(x)


def test_minmax_ranges_are_the_observed_extremes():
    m = small()
    x = data(m, 6)
    g = float_passes(m.graph)
    cal = calibrate(g, x, chunk=4)
    assert cal.ranges["input"] == (float(x.min()), float(x.max()))
    conv = g.nodes[0]
    out = execute.run(g, x)  # noqa: F841 - the graph runs
    first = execute.evaluate(g, conv, [x] + [g.constants[t] for t in conv.inputs[1:]])[0]
    lo, hi = cal.ranges[conv.outputs[0]]
    assert lo == pytest.approx(float(first.min()), abs=1e-6) and lo >= 0.0   # ReLU
    assert hi == pytest.approx(float(first.max()), rel=1e-6)
    assert conv.outputs[0] in cal.pre and cal.pre[conv.outputs[0]][0] < 0


def test_percentile_clips_outliers():
    m = small()
    x = data(m, 4)
    x[0, 0, 0, 0] = 1000.0
    g = float_passes(m.graph)
    mm = calibrate(g, x, "minmax").ranges["input"]
    pc = calibrate(g, x, "percentile", 99.9).ranges["input"]
    assert mm[1] == 1000.0 and pc[1] < 5.0
    with pytest.raises(QuantizeError, match="method must be one of"):
        calibrate(g, x, "kl")


def test_concat_inputs_share_the_concats_scale_and_add_has_its_own():
    qm = quantize(small(), data(small(), 4))
    g = qm.graph
    cat = next(n for n in g.nodes if n.op == "concat")
    qs = {g.tensors[t].quant for t in cat.inputs + cat.outputs}
    assert len(qs) == 1
    # the max pool cannot rescale: an ACT requantizing copy feeds the concat
    prods = g.producers()
    assert {prods[t].op for t in cat.inputs} == {"conv", "copy"}
    add = next(n for n in g.nodes if n.op == "add")
    q0, q1, qo = (g.tensors[t].quant for t in add.inputs + add.outputs)
    assert qo != q0 and qo != q1
    assert np.array_equal(g.constants[add.attrs["int8"]["requant"]],
                          quant.add_requant(q0.scale, q1.scale, qo.scale))
    mp = next(n for n in g.nodes if n.op == "maxpool")
    assert g.tensors[mp.inputs[0]].quant == g.tensors[mp.outputs[0]].quant
    # a table for hard-swish and leaky ReLU, the clamp for ReLU6
    luts = {n.attrs["int8"]["act"] for n in g.nodes if n.attrs.get("int8", {}).get("lut")}
    assert luts == {"hard_swish", "leaky_relu"}
    relu6 = next(n for n in g.nodes if n.attrs.get("int8", {}).get("act") == "relu6")
    assert relu6.attrs["int8"]["act_min"] == g.tensors[relu6.outputs[0]].quant.zero_point
    assert g.nodes[0].op == "quantize" and g.nodes[-1].op == "dequantize"


def test_weights_are_symmetric_per_channel_and_bias_int32():
    qm = quantize(small(), data(small(), 2))
    g = qm.graph
    conv = next(n for n in g.nodes if n.op == "conv")
    w, b = (g.constants[t] for t in conv.inputs[1:])
    assert w.dtype == np.int8 and b.dtype == np.int32 and w.min() >= -127
    assert np.all(np.abs(w.reshape(len(w), -1)).max(axis=1) == 127)
    assert np.ndim(g.tensors[conv.inputs[1]].quant.scale) == 1


def test_save_and_load_round_trip(tmp_path):
    m = small()
    qm = quantize(m, data(m, 4), keep_float=("conv1",))
    qm.save(tmp_path / "q.npz")
    back = GraphModel.load(tmp_path / "q.npz")
    assert isinstance(back, QuantizedModel) and back.keep_float == ("conv1",)
    x = data(m, 2, 5)
    assert np.array_equal(back.reference(x), qm.reference(x))
    assert back.precision == qm.precision and back.calibration["images"] == 4
    np.testing.assert_allclose(back.float_reference(x), m.reference(x), rtol=1e-5, atol=1e-5)
    m.save(tmp_path / "f.npz")
    f = GraphModel.load(tmp_path / "f.npz")
    assert type(f) is GraphModel and np.array_equal(f.reference(x), m.reference(x))


ZOO = {
    "resnet": lambda: models.resnet(18, 0.25, 32, 10, seed=1, blocks=(1, 1, 1, 1)),
    "mobilenet_v2": lambda: models.mobilenet_v2(0.35, 32, 10, seed=1, depth_mult=0.5),
    "shufflenet_v2": lambda: models.shufflenet_v2(0.5, 32, 10, seed=1, repeats=(2, 2, 1)),
    "densenet": lambda: models.densenet(growth_rate=8, resolution=32, num_classes=10,
                                        blocks=(2, 3), seed=1),
    "mobilenet_v1": lambda: GraphModel(models.mobilenet_v1(0.25, 32, 10, seed=1).to_graph()),
}


@pytest.mark.parametrize("name", list(ZOO))
def test_golden_model_equals_the_simulated_device_bit_for_bit(name):
    m = ZOO[name]()
    qm = quantize(m, data(m, 4))
    x = data(m, 2, 1)
    inf = on_device(qm, x)
    want = qm.reference(x)
    assert np.array_equal(inf.output.reshape(want.shape), want)
    assert all(s.where == "device" for s in inf.layers if s.op != "softmax")
    assert {s.precision for s in inf.layers} >= {"int8", "f32->int8", "int8->f32"}


def test_mixed_precision_runs_the_kept_layer_in_float32():
    m = ZOO["resnet"]()
    qm = quantize(m, data(m, 4), keep_float=("layer2.0.conv1", "fc"))
    assert qm.precision["layer2.0.conv1"] == "f32" and qm.precision["fc"] == "f32"
    ops = [n.op for n in qm.graph.nodes]
    assert ops.count("dequantize") == 2 and ops.count("quantize") == 2
    x = data(m, 2, 1)
    inf = on_device(qm, x)
    assert np.array_equal(inf.output.reshape(-1), qm.reference(x).reshape(-1))
    assert {s.name: s.precision for s in inf.layers}["layer2.0.conv1"] == "f32"
    with pytest.raises(QuantizeError, match="names no node"):
        quantize(m, data(m, 2), keep_float=("nope",))


def test_quantized_output_is_close_to_the_float_output():
    m = small()
    cal = data(m, 16)
    qm = quantize(m, cal)
    x = data(m, 16, 7)
    a, b = qm.reference(x), m.reference(x)
    cos = float((a * b).sum() / np.linalg.norm(a) / np.linalg.norm(b))
    assert cos > 0.99
    assert np.mean(a.argmax(1) == b.argmax(1)) >= 0.8


def test_bad_calibration_data_says_what_was_wrong():
    with pytest.raises(QuantizeError, match=r"calibration data must be \(N, 3, 16, 16\)"):
        quantize(small(), np.zeros((2, 3, 8, 8), np.float32))
