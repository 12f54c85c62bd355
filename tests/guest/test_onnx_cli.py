"""python3 -m pyaccel check / run MODEL.onnx on the device, with a small
network written here by the guest's own onnx (Debian's python3-onnx 1.12):
conv + batch norm + ReLU6, a residual, an SE-style gate, global pooling,
the Shape/Gather/Unsqueeze/Concat/Reshape flatten, Gemm."""
from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from pyaccel import cli  # noqa: E402
from pyaccel import onnx as ponnx  # noqa: E402
from pyaccel.compiler import execute  # noqa: E402


def small_model(path):
    r = np.random.default_rng(3)
    f = lambda *s: (r.standard_normal(s) * 0.3).astype(np.float32)  # noqa: E731
    init = {"w1": f(8, 3, 3, 3), "g": np.abs(f(8)) + .5, "b": f(8), "m": f(8),
            "v": np.abs(f(8)) + .5, "w2": f(8, 8, 3, 3), "w3": f(8, 8, 1, 1),
            "lo": np.float32(0), "hi": np.float32(6), "i0": np.array(0, np.int64),
            "ax": np.array([0], np.int64), "m1": np.array([-1], np.int64),
            "fw": f(5, 8), "fb": f(5)}
    n = helper.make_node
    nodes = [n("Conv", ["x", "w1"], ["c1"], pads=[1] * 4, strides=[2, 2]),
             n("BatchNormalization", ["c1", "g", "b", "m", "v"], ["bn"]),
             n("Clip", ["bn", "lo", "hi"], ["a1"]),
             n("Conv", ["a1", "w2"], ["c2"], pads=[1] * 4), n("Add", ["a1", "c2"], ["r"]),
             n("GlobalAveragePool", ["r"], ["p"]), n("Conv", ["p", "w3"], ["q"]),
             n("Sigmoid", ["q"], ["s"]), n("Mul", ["r", "s"], ["se"]),
             n("GlobalMaxPool", ["se"], ["gp"]), n("Shape", ["gp"], ["sh"]),
             n("Gather", ["sh", "i0"], ["n0"], axis=0), n("Unsqueeze", ["n0", "ax"], ["nu"]),
             n("Concat", ["nu", "m1"], ["shape"], axis=0), n("Reshape", ["gp", "shape"], ["fl"]),
             n("Gemm", ["fl", "fw", "fb"], ["y"], transB=1)]
    g = helper.make_graph(nodes, "small", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, ["N", 3, 16, 16])], [helper.make_tensor_value_info(
            "y", TensorProto.FLOAT, ["N", 5])],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in init.items()])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)], ir_version=8),
              str(path))


def test_check_and_run(tmp_path, capsys, dev):
    model, x_path, y_path = tmp_path / "small.onnx", tmp_path / "x.npy", tmp_path / "y.npy"
    small_model(model)
    assert cli.main(["check", str(model)]) == 0
    report = capsys.readouterr().out
    assert "support:" in report and "memory plan" in report
    x = np.random.default_rng(5).standard_normal((1, 3, 16, 16)).astype(np.float32)
    np.save(x_path, x)
    assert cli.main(["run", str(model), "--input", str(x_path), "--output", str(y_path),
                     "--check"]) == 0
    out = capsys.readouterr().out
    assert "max |device - numpy IR|" in out and "total" in out
    y = np.load(y_path)
    g = ponnx.load(str(model))
    want = execute.run(g, x)[g.outputs[0]]
    assert y.dtype == np.float32 and y.shape == (1, 5)
    np.testing.assert_allclose(y, want, rtol=1e-4, atol=1e-5)
    # no --input: a seeded random input of the model's shape
    assert cli.main(["run", str(model), "--output", str(y_path)]) == 0
    assert np.load(y_path).shape == (1, 5)
