"""pyaccel.onnx on the host: ONNX networks written with onnx.helper as
torch.onnx.export writes them (opset 13 and 17: the Shape/Gather/Unsqueeze/
Concat chains around Flatten and Reshape, hard-swish as HardSigmoid * x
below opset 14, chunk as Split or Slice, the channel shuffle's
Reshape/Transpose/Reshape, batch norms that fold and ones that cannot),
loaded into the compiler's IR and run three ways against onnxruntime (CPU):

- the IR's numpy semantics (pyaccel.compiler.execute.run);
- the compiled graph on the simulated device (passes, views, memory plan,
  Layer2 encoding: pyaccel.compiler.simulate.HostDevice);
- max |error| <= 1e-4 of the output's range for both.

Without the onnx package the built-in reader (pyaccel.onnx_proto) gives the
same graphs. No torch here (make test stays fast): tests/host/test_onnx_torch.py runs
the PyTorch twins when torch is installed. Errors name the node, its op
type and the reason; nothing unsupported is skipped silently.
"""
from __future__ import annotations

import sys

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from pyaccel import onnx as ponnx  # noqa: E402
from pyaccel.compiler import api, execute  # noqa: E402
from pyaccel.compiler.simulate import HostDevice  # noqa: E402

OPSETS = (13, 17)


class Net:
    """A tiny ONNX writer with torch.onnx.export's spellings."""

    def __init__(self, opset: int, seed: int = 0) -> None:
        self.opset, self.rng = opset, np.random.default_rng(seed)
        self.nodes, self.inits, self.k = [], [], 0

    def name(self, base: str) -> str:
        self.k += 1
        return f"{base}_{self.k}"

    def const(self, a, base="c") -> str:
        n = self.name(base)
        self.inits.append(numpy_helper.from_array(np.asarray(a), n))
        return n

    def node(self, op, ins, n_out=1, **attrs):
        outs = [self.name(op.lower()) for _ in range(n_out)]
        self.nodes.append(helper.make_node(op, ins, outs, name=self.name(f"/{op}"), **attrs))
        return outs[0] if n_out == 1 else outs

    def conv(self, x, cin, cout, k=3, s=1, p=None, groups=1, bias=True):
        w = self.rng.standard_normal((cout, cin // groups, k, k)).astype(np.float32)
        w *= np.sqrt(2.0 / (cin // groups * k * k))
        ins = [x, self.const(w, "w")]
        if bias:
            ins.append(self.const(self.rng.standard_normal(cout).astype(np.float32) * .1, "b"))
        p = k // 2 if p is None else p
        return self.node("Conv", ins, kernel_shape=[k, k], strides=[s, s], pads=[p] * 4,
                         group=groups, dilations=[1, 1])

    def bn(self, x, c):
        r = self.rng
        return self.node("BatchNormalization", [
            x, self.const((r.random(c) + .5).astype(np.float32), "gamma"),
            self.const((r.standard_normal(c) * .1).astype(np.float32), "beta"),
            self.const((r.standard_normal(c) * .1).astype(np.float32), "mean"),
            self.const((r.random(c) + .5).astype(np.float32), "var")], epsilon=1e-5,
            momentum=0.9)

    def relu(self, x):
        return self.node("Relu", [x])

    def relu6(self, x):
        return self.node("Clip", [x, self.const(np.float32(0)), self.const(np.float32(6))])

    def hswish(self, x):
        if self.opset >= 14:
            return self.node("HardSwish", [x])
        return self.node("Mul", [x, self.node("HardSigmoid", [x], alpha=1 / 6, beta=0.5)])

    def cbr(self, x, cin, cout, k=3, s=1, act="relu", groups=1):
        y = self.bn(self.conv(x, cin, cout, k, s, groups=groups, bias=False), cout)
        return {"relu": self.relu, "relu6": self.relu6, "hswish": self.hswish,
                None: lambda v: v}[act](y)

    def axes(self, x, op, axes, **kw):
        if self.opset >= 13:
            return self.node(op, [x, self.const(np.array(axes, np.int64))], **kw)
        return self.node(op, [x], axes=axes, **kw)

    def flatten_chain(self, x):
        """x.view(x.size(0), -1): Shape, Gather, Unsqueeze, Concat, Reshape."""
        n = self.node("Gather", [self.node("Shape", [x]), self.const(np.array(0, np.int64))],
                      axis=0)
        shape = self.node("Concat", [self.axes(n, "Unsqueeze", [0]),
                                     self.const(np.array([-1], np.int64))], axis=0)
        return self.node("Reshape", [x, shape])

    def gemm(self, x, fin, fout):
        w = (self.rng.standard_normal((fout, fin)) / np.sqrt(fin)).astype(np.float32)
        return self.node("Gemm", [x, self.const(w, "fc.w"),
                                  self.const(np.zeros(fout, np.float32) + .1, "fc.b")],
                         alpha=1.0, beta=1.0, transB=1)

    def gap(self, x, reduce_mean=False):
        if reduce_mean:
            if self.opset >= 18:
                return self.axes(x, "ReduceMean", [2, 3], keepdims=1)
            return self.node("ReduceMean", [x], axes=[2, 3], keepdims=1)
        return self.node("GlobalAveragePool", [x])

    def se(self, x, c, r=4):
        s = self.gap(x, reduce_mean=True)
        s = self.relu(self.conv(s, c, c // r, k=1, p=0))
        s = self.node("HardSigmoid", [self.conv(s, c // r, c, k=1, p=0)], alpha=1 / 6,
                      beta=0.5)
        return self.node("Mul", [x, s])

    def chunk(self, x, c, use_slice):
        """x.chunk(2, 1): Split, or Slice as the Shape/Gather/Div chain folds to."""
        if not use_slice:
            if self.opset >= 13:
                return self.node("Split", [x, self.const(np.array([c // 2] * 2, np.int64))],
                                 2, axis=1)
            return self.node("Split", [x], 2, axis=1, split=[c // 2] * 2)
        half = self.node("Div", [self.node("Gather", [self.node("Shape", [x]),
                                                      self.const(np.array(1, np.int64))],
                                           axis=0), self.const(np.array(2, np.int64))])
        h1 = self.axes(half, "Unsqueeze", [0])
        ax = self.const(np.array([1], np.int64))
        a = self.node("Slice", [x, self.const(np.array([0], np.int64)), h1, ax])
        b = self.node("Slice", [x, h1, self.const(np.array([2 ** 62], np.int64)), ax])
        return a, b

    def shuffle(self, x, n, c, h, w, g=2):
        y = self.node("Reshape", [x, self.const(np.array([n, g, c // g, h, w], np.int64))])
        y = self.node("Transpose", [y], perm=[0, 2, 1, 3, 4])
        return self.node("Reshape", [y, self.const(np.array([n, c, h, w], np.int64))])

    def model(self, x_shape, y, name="net"):
        g = helper.make_graph(self.nodes, name,
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                             ["batch"] + list(x_shape[1:]))],
                              [helper.make_tensor_value_info(y, TensorProto.FLOAT, None)],
                              self.inits)
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", self.opset)],
                              ir_version=8, producer_name="pyaccel-tests")
        return onnx.shape_inference.infer_shapes(m)


# --- the networks ----------------------------------------------------------------------

def unseen(opset):
    """A network the tests never saw: stem, a residual block, a concat of two
    branches, an SE block, max pool, a hard-swish, the classifier."""
    b = Net(opset, 1)
    x = b.cbr("input", 3, 16, s=2)
    y = b.cbr(x, 16, 16)
    y = b.bn(b.conv(y, 16, 16, bias=False), 16)
    x = b.relu(b.node("Add", [x, y]))
    br1 = b.cbr(x, 16, 8, k=1)
    br2 = b.cbr(b.cbr(x, 16, 8, k=1), 8, 8, act="relu6")
    x = b.node("Concat", [br1, br2], axis=1)
    x = b.se(x, 16)
    x = b.node("MaxPool", [x], kernel_shape=[2, 2], strides=[2, 2])
    x = b.cbr(x, 16, 24, act="hswish")
    x = b.flatten_chain(b.gap(x))
    x = b.node("Softmax", [b.gemm(x, 24, 10)], axis=1)
    return b.model((1, 3, 32, 32), x, "unseen")


def resnet_like(opset):
    b = Net(opset, 2)
    x = b.node("MaxPool", [b.cbr("input", 3, 16, k=7, s=2)], kernel_shape=[3, 3],
               strides=[2, 2], pads=[1, 1, 1, 1])
    c = 16
    for out, s in ((16, 1), (32, 2), (64, 2)):
        y = b.bn(b.conv(b.cbr(x, c, out, s=s), out, out, bias=False), out)
        sc = x if (s, c) == (1, out) else b.bn(b.conv(x, c, out, k=1, s=s, p=0, bias=False),
                                                out)
        x, c = b.relu(b.node("Add", [y, sc])), out
    x = b.node("Flatten", [b.gap(x)], axis=1)
    return b.model((1, 3, 64, 64), b.gemm(x, c, 10), "resnet_like")


def mobilenet_v2_like(opset):
    b = Net(opset, 3)
    x, c = b.cbr("input", 3, 16, s=2, act="relu6"), 16
    for t, out, s in ((1, 16, 1), (4, 24, 2), (4, 24, 1), (4, 32, 2), (4, 32, 1)):
        hidden = c * t
        y = x if t == 1 else b.cbr(x, c, hidden, k=1, act="relu6")
        y = b.cbr(y, hidden, hidden, s=s, groups=hidden, act="relu6")
        y = b.cbr(y, hidden, out, k=1, act=None)
        x = b.node("Add", [x, y]) if (s, c) == (1, out) else y
        c = out
    x = b.cbr(x, c, 64, k=1, act="hswish")
    x = b.flatten_chain(b.gap(x, reduce_mean=True))
    return b.model((1, 3, 32, 32), b.gemm(x, 64, 10), "mobilenet_v2_like")


def shufflenet_v2_like(opset, use_slice=False):
    b = Net(opset, 4)
    n, hw = 1, 16
    x = b.node("MaxPool", [b.cbr("input", 3, 24, s=2)], kernel_shape=[3, 3], strides=[2, 2],
               pads=[1, 1, 1, 1])
    c = 24
    for _ in range(2):                              # stride-1 units: chunk, branch, shuffle
        a, y = b.chunk(x, c, use_slice)
        y = b.cbr(y, c // 2, c // 2, k=1)
        y = b.cbr(y, c // 2, c // 2, groups=c // 2, act=None)
        y = b.cbr(y, c // 2, c // 2, k=1)
        x = b.shuffle(b.node("Concat", [a, y], axis=1), n, c, hw // 2, hw // 2)
    x = b.cbr(x, c, 32, k=1)
    x = b.flatten_chain(b.gap(x))
    return b.model((1, 3, hw * 2, hw * 2), b.gemm(x, 32, 10), "shufflenet_v2_like")


def densenet_like(opset):
    """Pre-activation dense layers: BN after a Concat (scale_shift), BN-ReLU-conv."""
    b = Net(opset, 5)
    x, c = b.cbr("input", 3, 16), 16
    for _ in range(3):
        y = b.relu(b.bn(x, c))                      # starts a pre-activation block
        y = b.conv(b.relu(b.bn(b.conv(y, c, 32, k=1, p=0, bias=False), 32)), 32, 8,
                   bias=False)
        x, c = b.node("Concat", [x, y], axis=1), c + 8
    x = b.relu(b.bn(x, c))                          # the BN right after a Concat
    x = b.node("AveragePool", [b.conv(x, c, c // 2, k=1, p=0, bias=False)],
               kernel_shape=[2, 2], strides=[2, 2])
    x = b.flatten_chain(b.node("GlobalMaxPool", [b.relu(b.bn(x, c // 2))]))
    return b.model((1, 3, 16, 16), b.gemm(x, c // 2, 10), "densenet_like")


def preact_resnet_like(opset):
    """ResNet v2 blocks: BN-ReLU-conv, the block's BN reads the previous Add
    (a batch norm that starts a pre-activation block: scale_shift)."""
    b = Net(opset, 6)
    x, c = b.conv("input", 3, 16), 16
    for _ in range(2):
        y = b.conv(b.relu(b.bn(x, c)), c, c, bias=False)
        y = b.conv(b.relu(b.bn(y, c)), c, c, bias=False)
        x = b.node("Add", [x, y])
    x = b.flatten_chain(b.gap(b.relu(b.bn(x, c))))
    return b.model((1, 3, 16, 16), b.gemm(x, c, 10), "preact_resnet_like")


NETS = {"unseen": unseen, "preact_resnet_like": preact_resnet_like, "resnet_like": resnet_like, "mobilenet_v2_like": mobilenet_v2_like,
        "shufflenet_v2_like": shufflenet_v2_like,
        "shufflenet_v2_like_slice": lambda o: shufflenet_v2_like(o, use_slice=True),
        "densenet_like": densenet_like}


def onnxruntime_run(model, x):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(model.SerializeToString(), so,
                                providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def rel_error(got, want) -> float:
    span = float(want.max() - want.min()) or 1.0
    return float(np.abs(np.asarray(got).reshape(want.shape) - want).max()) / span


AGREEMENT: dict = {}


@pytest.mark.parametrize("opset", OPSETS)
@pytest.mark.parametrize("net", list(NETS))
def test_round_trip(net, opset):
    model = NETS[net](opset)
    onnx.checker.check_model(model)
    g = ponnx.load(model)
    x = np.random.default_rng(7).standard_normal(g.shape(g.inputs[0]), dtype=np.float32)
    want = onnxruntime_run(model, x)
    numpy_err = rel_error(execute.run(g, x)[g.outputs[0]], want)
    with api.compile(g, HostDevice()) as cg:
        inf = cg(x)
    sim_err = rel_error(inf.output, want)
    AGREEMENT[(net, opset)] = (numpy_err, sim_err)
    print(f"{net} opset {opset}: IR numpy {numpy_err:.2e}, simulated device {sim_err:.2e} "
          f"of the output range; {inf.where()}")
    assert numpy_err <= 1e-4 and sim_err <= 1e-4


def test_patterns_become_the_right_ops():
    """hard-swish below opset 14 is one act; the shuffle is one channel_shuffle;
    the shape chains fold away; a conv's BN folds, the others become scale_shift."""
    g13 = ponnx.load(unseen(13))
    ops = [n.op for n in g13.nodes]
    assert ops.count("mul") == 1                    # the SE block's; not hard-swish's
    assert any(n.op == "act" and n.attrs["kind"] == "hard_swish" for n in g13.nodes)
    # the SE block's gate stays a hard-sigmoid (its Mul multiplies another tensor)
    assert sum(n.op == "act" and n.attrs["kind"] == "hard_sigmoid" for n in g13.nodes) == 1
    sh = ponnx.load(shufflenet_v2_like(13))
    assert [n.op for n in sh.nodes].count("channel_shuffle") == 2
    assert "reshape" not in [n.op for n in sh.nodes]
    sl = ponnx.load(shufflenet_v2_like(17, use_slice=True))
    assert [n.op for n in sl.nodes].count("slice") == 4
    dn = api.prepare(ponnx.load(densenet_like(17)))
    left = [n.op for n in dn.graph.nodes]
    assert "batchnorm" not in left
    # the BN after each Concat / starting each pre-activation block: 3 + 1 + 1
    assert left.count("scale_shift") == 5, left
    pre = [n.op for n in api.prepare(ponnx.load(preact_resnet_like(13))).graph.nodes]
    assert pre.count("scale_shift") == 3 and "batchnorm" not in pre, pre   # after each Add
    rn = api.prepare(ponnx.load(resnet_like(13)))
    assert "scale_shift" not in [n.op for n in rn.graph.nodes]     # all fold into convs


def test_check_report():
    report = api.check_report(ponnx.load(mobilenet_v2_like(17)))
    assert "support:" in report and "CPU" in report


# --- errors --------------------------------------------------------------------------------

def tiny(nodes, inits=(), x_shape=(1, 4, 8, 8), opset=17, out="y"):
    g = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, list(x_shape))], [helper.make_tensor_value_info(
            out, TensorProto.FLOAT, None)], list(inits))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


@pytest.mark.parametrize("nodes, inits, node, op, why", [
    ([helper.make_node("Erf", ["x"], ["y"], name="my_erf")], [], "my_erf", "Erf",
     "operator not supported"),
    ([helper.make_node("Transpose", ["x"], ["y"], name="tr", perm=[0, 2, 3, 1])], [], "tr",
     "Transpose", "only the channel shuffle pattern"),
    ([helper.make_node("ReduceMean", ["x"], ["y"], name="rm", axes=[1])], [], "rm",
     "ReduceMean", "only the mean over H and W"),
    ([helper.make_node("Conv", ["x", "w"], ["y"], name="cv")], [], "cv", "Conv",
     "must be a constant"),
    ([helper.make_node("MaxPool", ["x"], ["y"], name="mp", kernel_shape=[2, 2],
                       dilations=[2, 2])], [], "mp", "MaxPool", "dilation"),
    ([helper.make_node("Slice", ["x", "s", "e", "a"], ["y"], name="sl")],
     [numpy_helper.from_array(np.array([0], np.int64), n) for n in "s"] +
     [numpy_helper.from_array(np.array([4], np.int64), "e"),
      numpy_helper.from_array(np.array([2], np.int64), "a")], "sl", "Slice",
     "only the channels"),
    ([helper.make_node("BatchNormalization", ["x", "g", "b", "m", "v"], ["y"], name="bn",
                       training_mode=1)],
     [numpy_helper.from_array(np.ones(4, np.float32), n) for n in "gbmv"], "bn",
     "BatchNormalization", "training_mode"),
])
def test_unsupported_is_named(nodes, inits, node, op, why):
    with pytest.raises(ponnx.OnnxImportError) as e:
        ponnx.load(tiny(nodes, inits))
    assert (e.value.node, e.value.op_type) == (node, op)
    assert why in e.value.reason and node in str(e.value) and op in str(e.value)


@pytest.mark.parametrize("net", ["unseen", "shufflenet_v2_like_slice", "densenet_like"])
def test_without_the_onnx_package(monkeypatch, tmp_path, net):
    """pyaccel.onnx_proto reads the file when onnx is not installed: the same
    graph (nodes, attributes, constants bit for bit) as through onnx."""
    p = tmp_path / "m.onnx"
    onnx.save(NETS[net](13), str(p))
    want = ponnx.load(str(p))
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(ImportError):
        import onnx as _  # noqa: F401
    got = ponnx.load(str(p))
    assert [(n.op, n.inputs, n.outputs, repr(n.attrs)) for n in got.nodes] == \
        [(n.op, n.inputs, n.outputs, repr(n.attrs)) for n in want.nodes]
    assert got.constants.keys() == want.constants.keys()
    assert all(np.array_equal(got.constants[k], want.constants[k]) for k in want.constants)
    with pytest.raises(ponnx.OnnxImportError, match="needs the onnx package"):
        ponnx.load(NETS[net](13))               # a ModelProto object itself


def test_stand_ins_for_other_ranks():
    """A (3, 4, 5) Relu, a (2, 6) split and a (6,) concat load and run."""
    m = tiny([helper.make_node("Relu", ["x"], ["y"])], x_shape=(3, 4, 5))
    g = ponnx.load(m)
    x = np.random.default_rng(0).standard_normal((3, 4, 5), dtype=np.float32)
    out = ponnx.as_outputs(g, execute.run(g, ponnx.as_feeds(g, x)))
    assert out[0].shape == (3, 4, 5) and np.array_equal(out[0], np.maximum(x, 0))


def test_export_file(tmp_path):
    """load() reads a path; the name is the file's."""
    p = tmp_path / "res.onnx"
    onnx.save(resnet_like(17), str(p))
    g = ponnx.load(str(p))
    assert g.name == "res" and g.shape(g.inputs[0]) == (1, 3, 64, 64)
