"""QDQ ONNX models (onnxruntime.quantization.quantize_static, QDQ format) in
pyaccel: pyaccel.onnx.load_model gives a QuantizedModel whose int8 layers use
the file's scales, zero points and weights (pyaccel.quantize.from_qdq).

The oracle is onnxruntime on the same file: with graph optimizations off
(each Q/DQ pair computed as written: the QDQ semantics) the golden model is
equal bit for bit; with them on (onnxruntime's fused int8 kernels, what a
user runs) within 1 LSB on >= 99.9% of the outputs with the same top-1.
Weights are quantized with reduce_range=True, as onnxruntime advises for
CPUs without VNNI: with 8-bit weights its fused u8s8 kernels on AVX2
saturate 16-bit pair sums and differ from its own QDQ semantics (the
golden model still equals the latter; test_8_bit_weights_equal_the_qdq_semantics).
The guest runs the zoo's QDQ models on the device (tests/guest/test_onnx_models.py).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxruntime.quantization")

import guest_models  # noqa: E402
import test_onnx as nets  # noqa: E402
from pyaccel import onnx as ponnx  # noqa: E402
from pyaccel.compiler import api  # noqa: E402
from pyaccel.compiler.simulate import HostDevice  # noqa: E402
from pyaccel.quantize import QuantizedModel, QuantizeError, precision_report  # noqa: E402

NETS = ("resnet_like", "mobilenet_v2_like", "shufflenet_v2_like", "unseen", "densenet_like")


def qdq_file(tmp: Path, net: str, reduce_range: bool = True, activations=None) -> Path:
    from onnxruntime.quantization import QuantType

    src, dst = tmp / f"{net}.onnx", tmp / f"{net}-qdq.onnx"
    onnx.save(getattr(nets, net)(13), str(src))
    shape = tuple(d.dim_value or 1 for d in
                  onnx.load(str(src)).graph.input[0].type.tensor_type.shape.dim)[1:]
    guest_models.quantize_qdq(src, dst, shape, reduce_range=reduce_range,
                              activation_type=activations or QuantType.QInt8)
    return dst


def images(qm, n: int = 8, seed: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n,) + qm.input_shape, np.float32)


def lsb(qm: QuantizedModel, got: np.ndarray, want: np.ndarray) -> np.ndarray:
    g = qm.graph
    scale = g.tensors[g.producer(g.outputs[0]).inputs[0]].quant.scale
    return np.abs(got - want.reshape(got.shape)) / scale


@pytest.fixture(scope="module")
def qdq(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("qdq")
    return {n: qdq_file(tmp, n) for n in NETS}


@pytest.mark.parametrize("net", [n for n in NETS if n != "densenet_like"])
def test_golden_model_equals_onnxruntime_qdq_semantics(qdq, net):
    qm = ponnx.load_model(str(qdq[net]))
    assert isinstance(qm, QuantizedModel)
    x = images(qm)
    want = guest_models._run(guest_models._session(qdq[net], False), x)
    d = lsb(qm, qm.reference(x), want)
    assert d.max() < 1e-3, f"{net}: {np.mean(d > 1e-3):.2%} of the outputs differ"


def test_average_pool_ties_are_the_one_difference(qdq):
    """densenet_like's AveragePool (2x2, a QDQ float mean then QuantizeLinear)
    ties at .5 when its input and output scales are equal, and where a tie
    falls depends on float rounding order: the device's float pool and
    onnxruntime's split some ties differently, and the float BatchNormalization
    after it widens 1 LSB to a few. Everything before the pool is bit-exact."""
    qm = ponnx.load_model(str(qdq["densenet_like"]))
    x = images(qm)
    want = guest_models._run(guest_models._session(qdq["densenet_like"], False), x)
    d = lsb(qm, qm.reference(x), want)
    assert np.mean(d < 1e-3) >= 0.85 and d.max() <= 3
    assert np.array_equal(qm.reference(x).argmax(1), want.reshape(d.shape).argmax(1))


@pytest.mark.parametrize("net", NETS)
def test_within_1_lsb_of_onnxruntime_int8_kernels(qdq, net):
    qm = ponnx.load_model(str(qdq[net]))
    x = images(qm, 16, seed=4)
    want = guest_models._run(guest_models._session(qdq[net], True), x)
    got = qm.reference(x)
    d = lsb(qm, got, want)
    assert np.mean(d <= 1.001) >= 0.999, f"{net}: max {d.max():.1f} LSB"
    assert np.array_equal(got.argmax(1), want.reshape(got.shape).argmax(1))


@pytest.mark.parametrize("net", ("resnet_like", "shufflenet_v2_like"))
def test_compiled_on_the_simulated_device_equals_the_golden_model(qdq, net):
    qm = ponnx.load_model(str(qdq[net]))
    x = images(qm, 1)
    with api.compile(qm.graph, HostDevice()) as compiled:
        y = compiled({qm.graph.inputs[0]: x}).output
    assert np.array_equal(np.asarray(y).reshape(1, -1), qm.reference(x))


def test_what_the_file_leaves_float_stays_float(qdq):
    """onnxruntime leaves a BatchNormalization that follows no conv (DenseNet's
    pre-activation) in float: so does pyaccel, saying why; softmax too."""
    dense = ponnx.load_model(str(qdq["densenet_like"]))
    reasons = dense.calibration["float_reasons"]
    bns = [n for n in reasons if "BatchNormalization" in n]
    assert bns and all("weights are float" in reasons[n] for n in bns), reasons
    assert all(dense.precision[n] == "f32" for n in bns)
    report = precision_report(dense)
    assert "QDQ model" in report and bns[0] in report
    unseen = ponnx.load_model(str(qdq["unseen"]))
    soft = [n for n, p in unseen.precision.items() if p == "f32"]
    assert len(soft) == 1 and "Softmax" in soft[0]
    assert sum(p == "int8" for p in unseen.precision.values()) >= 10


def test_8_bit_weights_equal_the_qdq_semantics(tmp_path):
    """Without reduce_range the golden model still equals onnxruntime's QDQ
    semantics bit for bit (its fused kernels are what differs on AVX2)."""
    path = qdq_file(tmp_path, "resnet_like", reduce_range=False)
    qm = ponnx.load_model(str(path))
    x = images(qm, 4)
    want = guest_models._run(guest_models._session(path, False), x)
    assert lsb(qm, qm.reference(x), want).max() < 1e-3


def test_save_and_load(qdq, tmp_path):
    qm = ponnx.load_model(str(qdq["unseen"]))
    qm.save(tmp_path / "q.npz")
    back = QuantizedModel.load(tmp_path / "q.npz")
    x = images(qm, 2)
    assert np.array_equal(back.reference(x), qm.reference(x))


def test_uint8_activations_are_refused_with_the_fix(tmp_path):
    from onnxruntime.quantization import QuantType

    path = qdq_file(tmp_path, "resnet_like", activations=QuantType.QUInt8)
    with pytest.raises(ponnx.OnnxImportError, match="QInt8"):
        ponnx.load_model(str(path))


def test_a_dequantize_at_another_scale_is_refused(qdq, tmp_path):
    m = onnx.load(str(qdq["resnet_like"]))
    dq = next(n for n in m.graph.node if n.op_type == "DequantizeLinear"
              and not any(i.name == n.input[0] for i in m.graph.initializer))
    bad = onnx.numpy_helper.from_array(np.float32(0.5), "other_scale")
    m.graph.initializer.append(bad)
    dq.input[1] = "other_scale"
    with pytest.raises(ponnx.OnnxImportError, match="differ from the QuantizeLinear"):
        ponnx.load_model(m)


def test_check_cli_reports_precision(qdq, capsys):
    from pyaccel import cli

    assert cli.main(["check", str(qdq["densenet_like"])]) == 0
    out = capsys.readouterr().out
    assert "precision:" in out and "int8 nodes" in out and "float32" in out


def test_quantizing_a_qdq_model_again_is_refused(qdq):
    from pyaccel import quantize
    from pyaccel.compiler.builder import GraphModel

    g = ponnx.load(str(qdq["resnet_like"]))
    with pytest.raises(QuantizeError, match="QDQ model"):
        quantize.quantize(GraphModel(g), np.zeros((1,) + g.shape(g.inputs[0])[1:], np.float32))


def test_int8_weights_take_about_a_quarter_of_the_memory(qdq):
    qm = ponnx.load_model(str(qdq["resnet_like"]))
    m = qm.weight_memory()
    assert 3.0 < m["float32"] / m["int8"] < 4.0, m
    assert "x smaller" in precision_report(qm)


def test_quantize_error_is_an_accel_error():
    import pyaccel

    assert issubclass(QuantizeError, pyaccel.AccelError)
