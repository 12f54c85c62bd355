"""The golden model (pyaccel.reference, pyaccel.quant) against an independent
implementation: onnxruntime on the CPU, one thread, graph optimizations off,
running small ONNX models built here in memory with onnx.helper.

Each int8 op gets the same int8 tensors, scales and zero points (and int8
weights, int32 biases) on both sides: onnxruntime from the real scales, the
golden model from the rescale records pyaccel.quant makes of them. Over random
shapes and parameters (seeded), at least 99.9% of the output elements must be
within 1 LSB; the exact ops (QuantizeLinear, DequantizeLinear, int8 MaxPool)
must agree exactly. The float ops must agree to float32 rounding.

The systematic differences, all of at most 1 LSB (README.md, "The golden
model"):

- Rounding of ties. The device rescales in fixed point and rounds half up
  (towards +infinity: ``(v * M + 2^(S-1)) >> S``); onnxruntime requantizes in
  float (a float32 factor, then round half to even), and its factor is a hair
  off the exact one (e.g. s_in / s_out computed as a float32 product), so an
  exact tie lands on whichever side that error puts it: below, in every
  difference measured here. Exact ties are common where the factor is a short
  binary fraction: an average pool whose input and output scales are equal
  divides by kh * kw, and 2 x 2 windows hit sum / 4 = n + 1/2 often (about 5%
  of QLinearAveragePool's elements differ by 1, all at ties: the test checks
  that). Where 1/k is not a binary fraction both sides approximate it, and a
  tie goes either way.
- Precision of the factor. The device's multiplier M has 31 bits (the factor
  within a relative 2^-31); onnxruntime multiplies by a float32 factor (24
  bits) and in float32, so a result within about 2^-24 relative of a rounding
  boundary can land on the other side.
- ADD rescales each input to a common scale with 20 extra bits and then
  rounds the sum (two roundings: the first at 2^-20 of an LSB, TOSA's and
  TFLite's scheme); onnxruntime adds in float and rounds once.

Nothing else differs: QUANTIZE (float32 division, half to even, saturation),
DEQUANTIZE (a float32 product) and int8 max pooling agree bit for bit.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Sequence, Tuple

import numpy as np
import pytest

from pyaccel import quant
from pyaccel import reference as ref

ort = pytest.importorskip("onnxruntime", reason="onnxruntime is in tests/requirements.txt: "
                          "rebuild the host venv with scripts/venv.sh")
onnx = pytest.importorskip("onnx", reason="onnx is in tests/requirements.txt: rebuild the "
                           "host venv with scripts/venv.sh")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

OPSET = 21
MS = "com.microsoft"
SHARE = 0.999            # of elements within 1 LSB
CASES = 12               # random cases per op


# --- running ONNX models --------------------------------------------------------

_DTYPES = {np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.int8): TensorProto.INT8,
           np.dtype(np.int32): TensorProto.INT32}


def run_onnx(nodes: List[onnx.NodeProto], inputs: Dict[str, np.ndarray],
             consts: Dict[str, np.ndarray], outputs: Sequence[Tuple[str, np.dtype]]
             ) -> List[np.ndarray]:
    """Build a one-graph model (opset 21 + com.microsoft) and run it with
    onnxruntime: CPU, one thread, no graph optimization (no QDQ fusion)."""
    graph = helper.make_graph(
        nodes, "g",
        [helper.make_tensor_value_info(k, _DTYPES[v.dtype], v.shape) for k, v in inputs.items()],
        [helper.make_tensor_value_info(k, _DTYPES[np.dtype(t)], None) for k, t in outputs],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in consts.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET),
                                                    helper.make_opsetid(MS, 1)])
    model.ir_version = 10
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(model.SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])
    return sess.run([k for k, _ in outputs], inputs)


def f32(v: float) -> np.ndarray:
    return np.array(v, np.float32)


def i8(v: int) -> np.ndarray:
    return np.array(v, np.int8)


# --- agreement statistics ---------------------------------------------------------

@dataclass
class Agreement:
    op: str
    total: int = 0
    within: int = 0
    exact: int = 0
    worst: int = 0

    def add(self, ours: np.ndarray, theirs: np.ndarray) -> None:
        assert ours.shape == theirs.shape and ours.dtype == theirs.dtype == np.int8
        d = np.abs(ours.astype(np.int64) - theirs.astype(np.int64))
        self.total += d.size
        self.within += int((d <= 1).sum())
        self.exact += int((d == 0).sum())
        self.worst = max(self.worst, int(d.max(initial=0)))

    @property
    def share(self) -> float:
        return self.within / self.total

    def check(self, share: float = SHARE) -> None:
        summary = (f"{self.op}: {self.within}/{self.total} = {self.share:.5%} within 1 LSB, "
                   f"{self.exact / self.total:.4%} exact, max difference {self.worst}")
        print(summary)
        assert self.total > 1000, f"too few elements compared: {summary}"
        assert self.share >= share, summary


def rand_q(rng: np.random.Generator, shape: Sequence[int]) -> np.ndarray:
    return rng.integers(-128, 128, size=tuple(shape)).astype(np.int8)


def rand_qparams(rng: np.random.Generator) -> Tuple[float, int]:
    return float(np.float32(rng.uniform(0.005, 0.05))), int(rng.integers(-30, 31))


def output_qparams(real: np.ndarray) -> Tuple[float, int]:
    """A scale and zero point covering most of a float result (a little saturates)."""
    lo, hi = np.percentile(real, [0.5, 99.5])
    return quant.qparams(lo, hi)


def dq(q: np.ndarray, s: float, zp: int) -> np.ndarray:
    return ref.dequantize(q, s, zp)


# --- int8 ops vs onnxruntime ------------------------------------------------------

def conv_case(rng: np.random.Generator, depthwise: bool = False):
    n = int(rng.integers(1, 3))
    groups = int(rng.integers(1, 4))
    cin_g = 1 if depthwise else int(rng.integers(1, 7))
    cout_g = 1 if depthwise else int(rng.integers(1, 6))
    c_in, c_out = cin_g * groups, cout_g * groups
    kh, kw = (int(v) for v in rng.integers(1, 4, 2))
    sh, sw = (int(v) for v in rng.integers(1, 3, 2))
    dh, dw = (int(v) for v in rng.integers(1, 3, 2))
    pads = tuple(int(v) for v in rng.integers(0, 3, 4))       # top, bottom, left, right
    h = int(rng.integers(dh * (kh - 1) + 1, 12))
    w = int(rng.integers(dw * (kw - 1) + 1, 12))
    return dict(n=n, groups=groups, c_in=c_in, c_out=c_out, k=(kh, kw), stride=(sh, sw),
                dilation=(dh, dw), pads=pads, hw=(h, w))


def run_conv(rng: np.random.Generator, case: dict, activation=None):
    """QLinearConv (optionally then DQ -> Relu/Clip -> Q) vs conv2d_int8 with the clamp."""
    s_in, zp_in = rand_qparams(rng)
    x = rand_q(rng, (case["n"], case["c_in"]) + case["hw"])
    w_real = rng.standard_normal((case["c_out"], case["c_in"] // case["groups"]) + case["k"])
    wq, s_w = quant.quantize_weights(w_real * rng.uniform(0.1, 1.0, (case["c_out"], 1, 1, 1)))
    bq = quant.quantize_bias(rng.standard_normal(case["c_out"]) * 0.5, s_in, s_w)
    geo = dict(stride=case["stride"], padding=case["pads"], dilation=case["dilation"],
               groups=case["groups"])
    real = ref.conv2d(dq(x, s_in, zp_in), dq(wq, 1.0, 0) * s_w[:, None, None, None].astype(
        np.float32), bq * (s_in * s_w), **geo)
    if activation is not None:
        real = ref.act(real, activation)
    s_out, zp_out = output_qparams(real)
    act_min, act_max = quant.activation_clamp(activation, s_out, zp_out)
    ours = ref.conv2d_int8(x, wq, bq, **geo, requant=quant.conv_requant(s_in, s_w, s_out),
                           zp_in=zp_in, zp_out=zp_out, act_min=act_min, act_max=act_max)
    top, bottom, left, right = case["pads"]
    attrs = dict(kernel_shape=list(case["k"]), strides=list(case["stride"]),
                 dilations=list(case["dilation"]), pads=[top, left, bottom, right],
                 group=case["groups"])
    consts = dict(xs=f32(s_in), xz=i8(zp_in), w=wq, ws=s_w.astype(np.float32),
                  wz=np.zeros(case["c_out"], np.int8), ys=f32(s_out), yz=i8(zp_out), b=bq)
    nodes = [helper.make_node("QLinearConv", ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz", "b"],
                              ["y"], **attrs)]
    if activation is not None:
        consts.update(lo=f32(0.0), hi=f32(6.0))
        nodes += [helper.make_node("DequantizeLinear", ["y", "ys", "yz"], ["yf"]),
                  helper.make_node("Relu", ["yf"], ["af"]) if activation == "relu" else
                  helper.make_node("Clip", ["yf", "lo", "hi"], ["af"]),
                  helper.make_node("QuantizeLinear", ["af", "ys", "yz"], ["out"])]
    (theirs,) = run_onnx(nodes, dict(x=x), consts, [("out" if activation else "y", np.int8)])
    return ours, theirs


@pytest.mark.parametrize("depthwise", [False, True], ids=["conv", "depthwise"])
def test_conv2d_int8_matches_qlinearconv(depthwise: bool) -> None:
    rng = np.random.default_rng(11 + depthwise)
    agree = Agreement("QLinearConv" + (" depthwise" if depthwise else ""))
    for _ in range(CASES * 2):
        agree.add(*run_conv(rng, conv_case(rng, depthwise)))
    agree.check()


@pytest.mark.parametrize("activation", ["relu", "relu6"])
def test_conv2d_int8_clamp_matches_relu_in_float(activation: str) -> None:
    rng = np.random.default_rng(13)
    agree = Agreement(f"QLinearConv + {activation}")
    for _ in range(CASES):
        agree.add(*run_conv(rng, conv_case(rng), activation))
    agree.check()


def test_fc_int8_matches_qlinearconv_1x1() -> None:
    rng = np.random.default_rng(17)
    agree = Agreement("FC (QLinearConv 1x1)")
    for _ in range(CASES):
        n, c_in, c_out = (int(v) for v in rng.integers(1, 40, 3))
        s_in, zp_in = rand_qparams(rng)
        x = rand_q(rng, (n, c_in))
        wq, s_w = quant.quantize_weights(rng.standard_normal((c_out, c_in)))
        bq = quant.quantize_bias(rng.standard_normal(c_out), s_in, s_w)
        real = ref.fc(dq(x, s_in, zp_in), wq * s_w[:, None], bq * (s_in * s_w))
        s_out, zp_out = output_qparams(real)
        ours = ref.fc_int8(x, wq, bq, requant=quant.fc_requant(s_in, s_w, s_out), zp_in=zp_in,
                           zp_out=zp_out)
        consts = dict(xs=f32(s_in), xz=i8(zp_in), w=wq.reshape(c_out, c_in, 1, 1),
                      ws=s_w.astype(np.float32), wz=np.zeros(c_out, np.int8), ys=f32(s_out),
                      yz=i8(zp_out), b=bq)
        (theirs,) = run_onnx([helper.make_node(
            "QLinearConv", ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz", "b"], ["y"])],
            dict(x=x.reshape(n, c_in, 1, 1)), consts, [("y", np.int8)])
        agree.add(ours, theirs.reshape(n, c_out))
    agree.check()


def test_scale_shift_int8_matches_depthwise_qlinearconv() -> None:
    rng = np.random.default_rng(19)
    agree = Agreement("SCALE_SHIFT (QLinearConv depthwise 1x1)")
    for _ in range(CASES):
        n, c, h, w = (int(v) for v in rng.integers(1, 9, 4))
        s_in, zp_in = rand_qparams(rng)
        x = rand_q(rng, (n, c, h, w))
        wq, s_w = quant.quantize_weights(rng.uniform(-2, 2, c))
        bq = quant.quantize_bias(rng.standard_normal(c), s_in, s_w)
        real = ref.scale_shift(dq(x, s_in, zp_in), wq * s_w, bq * (s_in * s_w))
        s_out, zp_out = output_qparams(real)
        ours = ref.scale_shift_int8(x, wq, bq, requant=quant.scale_shift_requant(s_in, s_w, s_out),
                                    zp_in=zp_in, zp_out=zp_out)
        consts = dict(xs=f32(s_in), xz=i8(zp_in), w=wq.reshape(c, 1, 1, 1),
                      ws=s_w.astype(np.float32), wz=np.zeros(c, np.int8), ys=f32(s_out),
                      yz=i8(zp_out), b=bq)
        (theirs,) = run_onnx([helper.make_node(
            "QLinearConv", ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz", "b"], ["y"], group=c)],
            dict(x=x), consts, [("y", np.int8)])
        agree.add(ours, theirs)
    agree.check()


@pytest.mark.parametrize("op", ["Add", "Mul", "Mul-broadcast"])
def test_add_mul_int8_match_qlinear_ops(op: str) -> None:
    rng = np.random.default_rng(23 + len(op))
    agree = Agreement(f"QLinear{op}")
    for _ in range(CASES):
        shape = tuple(int(v) for v in rng.integers(1, 9, 4))
        shape1 = shape[:2] + (1, 1) if op == "Mul-broadcast" else shape
        (s0, z0), (s1, z1) = rand_qparams(rng), rand_qparams(rng)
        if op == "Add" and rng.random() < 0.3:
            s1 = s0                     # equal input scales: the easy, common case
        x0, x1 = rand_q(rng, shape), rand_q(rng, shape1)
        f0, f1 = dq(x0, s0, z0), dq(x1, s1, z1)
        real = ref.add(f0, f1) if op == "Add" else ref.mul(f0, f1)
        s_out, zp_out = output_qparams(real)
        if op == "Add":
            ours = ref.add_int8(x0, x1, requant=quant.add_requant(s0, s1, s_out), zp_in0=z0,
                                zp_in1=z1, zp_out=zp_out)
        else:
            ours = ref.mul_int8(x0, x1, requant=quant.mul_requant(s0, s1, s_out), zp_in0=z0,
                                zp_in1=z1, zp_out=zp_out)
        consts = dict(s0=f32(s0), z0=i8(z0), s1=f32(s1), z1=i8(z1), so=f32(s_out), zo=i8(zp_out))
        (theirs,) = run_onnx([helper.make_node(
            "QLinearAdd" if op == "Add" else "QLinearMul",
            ["x0", "s0", "z0", "x1", "s1", "z1", "so", "zo"], ["y"], domain=MS)],
            dict(x0=x0, x1=x1), consts, [("y", np.int8)])
        agree.add(ours, theirs)
    agree.check()


def assert_only_ties_differ(sums: np.ndarray, k: int, ours: np.ndarray,
                            theirs: np.ndarray) -> None:
    """With equal input and output scales an average is sum / k exactly: every
    difference must be at a tie (sum / k = an integer + 1/2). If k is a power of
    two the factor 1/k is exact on both sides and the device rounds the tie up
    (onnxruntime's float path, with s_in / s_out a hair off 1, went down);
    otherwise both factors are approximations of 1/k, a hair to either side."""
    differ = ours != theirs
    assert np.all((2 * sums[differ]) % (2 * k) == k), "a difference that is not a tie"
    if k & (k - 1) == 0:
        assert np.all(ours[differ].astype(int) - theirs[differ] == 1), "a tie not rounded up"


def test_avg_pool2d_int8_matches_qlinearaveragepool() -> None:
    rng = np.random.default_rng(29)
    agree = Agreement("QLinearAveragePool")
    for i in range(CASES * 2):
        kh, kw = (int(v) for v in rng.integers(1, 4, 2))
        sh, sw = (int(v) for v in rng.integers(1, 3, 2))
        pads = (int(rng.integers(0, kh)), int(rng.integers(0, kh)), int(rng.integers(0, kw)),
                int(rng.integers(0, kw)))
        n, c = (int(v) for v in rng.integers(1, 5, 2))
        h, w = int(rng.integers(kh, 12)), int(rng.integers(kw, 12))
        s_in, zp_in = rand_qparams(rng)
        # every other case keeps the scale: then sums / (kh * kw) hit ties
        s_out, zp_out = (s_in, zp_in) if i % 2 else rand_qparams(rng)
        x = rand_q(rng, (n, c, h, w))
        ours = ref.avg_pool2d_int8(x, (kh, kw), (sh, sw), pads,
                                   requant=quant.avgpool_requant(s_in, s_out, kh, kw),
                                   zp_in=zp_in, zp_out=zp_out)
        top, bottom, left, right = pads
        k = kh * kw
        (theirs,) = run_onnx([helper.make_node(
            "QLinearAveragePool", ["x", "xs", "xz", "ys", "yz"], ["y"], domain=MS,
            kernel_shape=[kh, kw], strides=[sh, sw], pads=[top, left, bottom, right],
            count_include_pad=1)],
            dict(x=x), dict(xs=f32(s_in), xz=i8(zp_in), ys=f32(s_out), yz=i8(zp_out)),
            [("y", np.int8)])
        agree.add(ours, theirs)
        if i % 2:
            # Same scale: the result is sum / k exactly; every difference must be a
            # tie (sum / k = integer + 1/2) that we round up and onnxruntime to even.
            sums = ref.avg_pool2d(x.astype(np.float32) - zp_in, (kh, kw), (sh, sw), pads) * k
            assert_only_ties_differ(np.rint(sums).astype(np.int64), k, ours, theirs)
    agree.check()


def test_global_avg_pool2d_int8_matches_qlinearglobalaveragepool() -> None:
    rng = np.random.default_rng(31)
    agree = Agreement("QLinearGlobalAveragePool")
    for i in range(CASES * 4):
        n, c = (int(v) for v in rng.integers(1, 9, 2))
        n, c = n + 2, c + 4
        h, w = (int(v) for v in rng.integers(1, 20, 2))
        s_in, zp_in = rand_qparams(rng)
        s_out, zp_out = (s_in, zp_in) if i % 2 else rand_qparams(rng)
        x = rand_q(rng, (n, c, h, w))
        ours = ref.global_avg_pool2d_int8(x, requant=quant.avgpool_requant(s_in, s_out, h, w),
                                          zp_in=zp_in, zp_out=zp_out)
        sums = (x.astype(np.int64) - zp_in).sum(axis=(2, 3), keepdims=True)
        (theirs,) = run_onnx([helper.make_node(
            "QLinearGlobalAveragePool", ["x", "xs", "xz", "ys", "yz"], ["y"], domain=MS,
            channels_last=0)],
            dict(x=x), dict(xs=f32(s_in), xz=i8(zp_in), ys=f32(s_out), yz=i8(zp_out)),
            [("y", np.int8)])
        agree.add(ours, theirs)
        if i % 2:
            assert_only_ties_differ(sums, h * w, ours, theirs)
    agree.check()


def test_max_pool2d_int8_matches_maxpool_exactly() -> None:
    rng = np.random.default_rng(37)
    agree = Agreement("MaxPool int8")
    for _ in range(CASES):
        kh, kw = (int(v) for v in rng.integers(1, 4, 2))
        sh, sw = (int(v) for v in rng.integers(1, 3, 2))
        pads = (int(rng.integers(0, kh)), int(rng.integers(0, kh)), int(rng.integers(0, kw)),
                int(rng.integers(0, kw)))
        x = rand_q(rng, (2, 3, int(rng.integers(kh, 12)), int(rng.integers(kw, 12))))
        zp = int(rng.integers(-30, 31))
        top, bottom, left, right = pads
        ours = ref.max_pool2d_int8(x, (kh, kw), (sh, sw), pads, zp_in=zp)
        (theirs,) = run_onnx([helper.make_node(
            "MaxPool", ["x"], ["y"], kernel_shape=[kh, kw], strides=[sh, sw],
            pads=[top, left, bottom, right])], dict(x=x), {}, [("y", np.int8)])
        agree.add(ours, theirs)
        agree.add(ref.global_max_pool2d_int8(x, zp_in=zp), x.max(axis=(2, 3), keepdims=True))
    agree.check(share=1.0)
    assert agree.exact == agree.total


def test_quantize_dequantize_match_onnx_exactly() -> None:
    rng = np.random.default_rng(41)
    for _ in range(CASES):
        s, zp = rand_qparams(rng)
        x = (rng.standard_normal((2, 3, 7, 5)) * 60 * s).astype(np.float32)
        # exact ties of x / s (half to even), saturation, NaN and infinities
        x.flat[:8] = np.array([0.5, 1.5, 2.5, -0.5, -1.5, 1e30, -np.inf, np.nan]) * np.float32(s)
        q_ours = ref.quantize(x, s, zp)
        consts = dict(s=f32(s), z=i8(zp))
        q_theirs, x_theirs = run_onnx(
            [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
             helper.make_node("DequantizeLinear", ["q", "s", "z"], ["d"])],
            dict(x=x), consts, [("q", np.int8), ("d", np.float32)])
        finite = ~np.isnan(x)       # onnxruntime leaves NaN unspecified; the spec says zp
        np.testing.assert_array_equal(q_ours[finite], q_theirs[finite])
        assert q_ours.flat[7] == zp
        np.testing.assert_array_equal(ref.dequantize(q_theirs, s, zp), x_theirs)


def test_act_int8_requantizing_copy_matches_dq_q() -> None:
    rng = np.random.default_rng(43)
    agree = Agreement("ACT copy (DequantizeLinear -> QuantizeLinear)")
    for _ in range(CASES):
        (s_in, z_in), (s_out, z_out) = rand_qparams(rng), rand_qparams(rng)
        x = rand_q(rng, (2, 4, 9, 9))
        ours = ref.act_int8(x, requant=quant.act_requant(s_in, s_out), zp_in=z_in, zp_out=z_out)
        (theirs,) = run_onnx([helper.make_node("DequantizeLinear", ["x", "si", "zi"], ["f"]),
                              helper.make_node("QuantizeLinear", ["f", "so", "zo"], ["y"])],
                             dict(x=x), dict(si=f32(s_in), zi=i8(z_in), so=f32(s_out),
                                             zo=i8(z_out)), [("y", np.int8)])
        agree.add(ours, theirs)
    agree.check()


LUT_CASES = [("leaky_relu", 0.1, "LeakyRelu", dict(alpha=0.1)),
             ("sigmoid", None, "Sigmoid", {}),
             ("hard_sigmoid", (0.2, 0.5), "HardSigmoid", dict(alpha=0.2, beta=0.5)),
             ("hard_swish", None, "HardSwish", {})]


@pytest.mark.parametrize("name, params, onnx_op, attrs", LUT_CASES,
                         ids=[c[0] for c in LUT_CASES])
def test_activation_lut_matches_dq_act_q(name: str, params, onnx_op: str, attrs: dict) -> None:
    """A table activation on an int8 tensor (ACT, identity rescale, with the lut)
    vs DequantizeLinear -> the float activation -> QuantizeLinear."""
    rng = np.random.default_rng(47)
    spec = name if params is None else (name,) + (params if isinstance(params, tuple)
                                                  else (params,))
    agree = Agreement(f"LUT {name}")
    for _ in range(CASES):
        s_mid, zp_mid = float(np.float32(rng.uniform(0.01, 0.08))), int(rng.integers(-40, 41))
        x = np.arange(-128, 128, dtype=np.int8).reshape(1, 1, 16, 16)
        real = ref.act(dq(x, s_mid, zp_mid), spec)
        s_out, zp_out = quant.qparams(real.min(), real.max())
        lut = quant.activation_lut(spec, s_mid, zp_mid, s_out, zp_out)
        ours = ref.act_int8(x, requant=quant.act_requant(1.0, 1.0), zp_in=zp_mid, zp_out=zp_mid,
                            lut=lut)
        np.testing.assert_array_equal(ours.ravel(), lut)   # x runs over every entry
        (theirs,) = run_onnx([helper.make_node("DequantizeLinear", ["x", "si", "zi"], ["f"]),
                              helper.make_node(onnx_op, ["f"], ["a"], **attrs),
                              helper.make_node("QuantizeLinear", ["a", "so", "zo"], ["y"])],
                             dict(x=x), dict(si=f32(s_mid), zi=i8(zp_mid), so=f32(s_out),
                                             zo=i8(zp_out)), [("y", np.int8)])
        agree.add(ours, theirs)
    agree.check(share=1.0 if name != "sigmoid" else SHARE)


# --- float ops vs onnxruntime ----------------------------------------------------

FLOAT_CASES = {
    "Add": (lambda a, b: ref.add(a, b), 2, {}),
    "Mul": (lambda a, b: ref.mul(a, b), 2, {}),
    "Sigmoid": (ref.sigmoid, 1, {}),
    "HardSigmoid": (lambda a: ref.hard_sigmoid(a, 0.2, 0.5), 1, dict(alpha=0.2, beta=0.5)),
    "HardSwish": (ref.hard_swish, 1, {}),
    "LeakyRelu": (lambda a: ref.leaky_relu(a, 0.1), 1, dict(alpha=0.1)),
    "GlobalMaxPool": (ref.global_max_pool2d, 1, {}),
}


@pytest.mark.parametrize("op", FLOAT_CASES)
def test_float_ops_match_onnxruntime(op: str) -> None:
    fn, arity, attrs = FLOAT_CASES[op]
    rng = np.random.default_rng(53)
    for _ in range(4):
        shape = tuple(int(v) for v in rng.integers(1, 9, 4))
        xs = [(rng.standard_normal(shape) * 4).astype(np.float32) for _ in range(arity)]
        if op != "GlobalMaxPool":         # onnxruntime's max skips NaN; PyTorch's does not
            xs[0].flat[0] = np.nan           # NaN propagates on both sides
        names = [f"x{i}" for i in range(arity)]
        (theirs,) = run_onnx([helper.make_node(op, names, ["y"], **attrs)],
                             dict(zip(names, xs)), {}, [("y", np.float32)])
        ours = fn(*xs)
        assert ours.dtype == np.float32 and ours.shape == theirs.shape
        np.testing.assert_allclose(ours, theirs, rtol=2e-6, atol=1e-7, equal_nan=True)
        xs[0].flat[0] = np.nan
        assert np.isnan(fn(*xs).flat[0])


def test_mul_broadcast_and_fc_match_onnxruntime() -> None:
    rng = np.random.default_rng(59)
    x = rng.standard_normal((3, 5, 4, 6)).astype(np.float32)
    k = rng.standard_normal((3, 5, 1, 1)).astype(np.float32)
    (theirs,) = run_onnx([helper.make_node("Mul", ["x", "k"], ["y"])], dict(x=x, k=k), {},
                         [("y", np.float32)])
    np.testing.assert_allclose(ref.mul(x, k), theirs, rtol=1e-6)
    a = rng.standard_normal((4, 33)).astype(np.float32)
    w = rng.standard_normal((7, 33)).astype(np.float32)
    b = rng.standard_normal(7).astype(np.float32)
    (theirs,) = run_onnx([helper.make_node("Gemm", ["a", "w", "b"], ["y"], transB=1)],
                         dict(a=a), dict(w=w, b=b), [("y", np.float32)])
    np.testing.assert_allclose(ref.fc(a, w, b), theirs, rtol=1e-5, atol=1e-5)
    y4 = ref.linear(a.reshape(4, 33, 1, 1), w, b, activation="relu")
    np.testing.assert_allclose(y4, np.maximum(theirs, 0).reshape(4, 7, 1, 1), rtol=1e-5,
                               atol=1e-5)


# --- the spec by hand (no onnxruntime needed, but kept with the model it checks) ----

M_HALF = (1 << 30, 31)          # m = 1/2 exactly
M_ONE = (1 << 30, 30)           # m = 1 exactly


def test_rescale_rounds_half_up_with_an_arithmetic_shift() -> None:
    v = np.array([-3, -2, -1, 0, 1, 2, 3])
    # v / 2: -1.5 -1 -0.5 0 0.5 1 1.5 -> half up (towards +inf)
    assert ref.rescale(v, *M_HALF).tolist() == [-1, -1, 0, 0, 1, 1, 2]
    # the extremes: (2^31 - 1) / 2^31 * {-2^31, 2^31 - 1} / 2^31 = -1 + 2^-31, 1 - 2^-30
    assert ref.rescale(np.array([-(2 ** 31), 2 ** 31 - 1]), 2 ** 31 - 1, 62).tolist() == [-1, 1]
    assert ref.rescale(np.array([-(2 ** 31)]), 2 ** 31 - 1, 1).tolist() == [-(2 ** 61) + 2 ** 30]
    # per channel: M and S broadcast
    assert ref.rescale(np.array([[10], [10]]), np.array([[1 << 30], [1 << 30]]),
                       np.array([[31], [32]])).ravel().tolist() == [5, 3]


@pytest.mark.parametrize("v, m, s, match", [
    (1, -1, 1, "0..2"), (1, 2 ** 31, 1, "0..2"),
    (1, 1, 0, "1..62"), (1, 1, 63, "1..62"), (1.5, 1, 1, "integers")])
def test_rescale_refuses_what_the_device_cannot_do(v, m, s, match) -> None:
    with pytest.raises(ValueError, match=match):
        ref.rescale(np.array([v]), m, s)


def test_rescale_is_64_bit_and_wraps_there() -> None:
    def device(v: int, m: int, s: int) -> int:       # uint64 arithmetic, then signed >> s
        p = (v * m + (1 << (s - 1))) % 2 ** 64
        return (p - 2 ** 64 if p >= 2 ** 63 else p) >> s
    for v, m, s in [(2 ** 32 + 7, 2 ** 31 - 1, 40), (-(2 ** 33) - 1, 12345, 3),
                    (2 ** 40, 2 ** 31 - 1, 1), (-(2 ** 50), 2 ** 31 - 1, 62)]:
        assert ref.rescale(np.array([v]), m, s).item() == device(v, m, s), (v, m, s)


def test_global_avg_pool_sum_does_not_wrap_at_32_bits() -> None:
    # 255 * 2903^2 = 2148989295 > 2^31 - 1: the 64-bit sum keeps it (an int32 one
    # would turn negative and clamp to -128)
    x = np.full((1, 1, 2903, 2903), 127, np.int8)
    y = ref.global_avg_pool2d_int8(x, requant=quant.avgpool_requant(1.0, 1.0, 2903, 2903),
                                   zp_in=-128, zp_out=-128)
    assert y.item() == 127


def test_conv_accumulator_wraps_like_int32() -> None:
    x = np.ones((1, 1, 1, 1), np.int8)
    w = np.ones((1, 1, 1, 1), np.int8)
    # bias + 1 = 2^31 wraps to -2^31; rescaled by 2^-24: -128 (not +128 -> 127)
    y = ref.conv2d_int8(x, w, np.array([2 ** 31 - 1]), requant=[(1 << 30, 54)])
    assert y.item() == -128
    assert ref.wrap_int32(np.array([2 ** 31, -(2 ** 31) - 1, 2 ** 32 + 5])).tolist() == [
        -(2 ** 31), 2 ** 31 - 1, 5]


def test_conv_padding_adds_real_zeros() -> None:
    zp = 10
    x = np.full((1, 2, 3, 3), zp, np.int8)           # every input is real 0
    w = np.full((3, 2, 3, 3), 127, np.int8)
    y = ref.conv2d_int8(x, w, None, padding=2, dilation=(1, 2), requant=np.tile(M_ONE, (3, 1)),
                        zp_in=zp, zp_out=-7)
    assert y.shape == (1, 3, 5, 3) and np.all(y == -7)
    y = ref.avg_pool2d_int8(x, 3, 1, 2, requant=M_ONE, zp_in=zp, zp_out=5)
    assert np.all(y == 5)


def test_conv_int8_by_hand_with_groups_and_stride() -> None:
    x = np.arange(32, dtype=np.int8).reshape(1, 2, 4, 4)
    w = np.array([[[[1, -1]]], [[[2, 0]]]], np.int8)       # depthwise, 1x2
    y = ref.conv2d_int8(x, w, np.array([100, -3]), stride=(2, 1), groups=2,
                        requant=[M_ONE, M_HALF], zp_in=1, zp_out=2, act_max=100)
    xs = x.astype(int) - 1
    expect0 = (xs[0, 0, ::2, :-1] - xs[0, 0, ::2, 1:]) + 100 + 2          # = -1 + 102
    expect1 = np.floor((2 * xs[0, 1, ::2, :-1] - 3) / 2 + 0.5) + 2
    np.testing.assert_array_equal(y[0, 0], np.minimum(expect0, 100))    # act_max
    np.testing.assert_array_equal(y[0, 1], np.minimum(expect1, 100))


def test_add_int8_equal_scales_is_exact_integer_addition() -> None:
    a, b = np.meshgrid(np.arange(-128, 128), np.arange(-128, 128))
    x0, x1 = a.astype(np.int8).reshape(1, 1, 256, 256), b.astype(np.int8).reshape(1, 1, 256, 256)
    y = ref.add_int8(x0, x1, requant=quant.add_requant(0.1, 0.1, 0.1), zp_in0=3, zp_in1=-4,
                     zp_out=5)
    np.testing.assert_array_equal(y, np.clip(x0.astype(int) - 3 + x1 + 4 + 5, -128, 127))


def test_mul_int8_exact_factor_and_broadcast() -> None:
    a, b = np.meshgrid(np.arange(-128, 128), np.arange(-128, 128))
    x0, x1 = a.astype(np.int8).reshape(1, 1, 256, 256), b.astype(np.int8).reshape(1, 1, 256, 256)
    y = ref.mul_int8(x0, x1, requant=quant.mul_requant(0.5, 0.25, 0.125 * 64), zp_in0=1,
                     zp_in1=2, zp_out=-1)
    prod = (x0.astype(int) - 1) * (x1.astype(int) - 2)
    np.testing.assert_array_equal(y, np.clip(np.floor(prod / 64 + 0.5) - 1, -128, 127))
    k = np.array([2, -3], np.int8).reshape(1, 2, 1, 1)
    x = np.arange(-4, 4, dtype=np.int8).reshape(1, 2, 2, 2)
    y = ref.mul_int8(x, k, requant=M_ONE)
    np.testing.assert_array_equal(y, x.astype(int) * k)
    with pytest.raises(ValueError, match="per channel"):
        ref.mul_int8(x, k.reshape(1, 1, 2, 1), requant=M_ONE)


def test_clamp_then_lut() -> None:
    x = np.arange(-128, 128, dtype=np.int8)
    lut = (-np.arange(-128, 128) - 1).astype(np.int8)             # lut[i] = 127 - i
    y = ref.act_int8(x, requant=M_ONE, zp_in=0, zp_out=0, act_min=-10, act_max=20, lut=lut)
    np.testing.assert_array_equal(y, lut[np.clip(x, -10, 20).astype(int) + 128])
    with pytest.raises(ValueError, match="256 int8"):
        ref.act_int8(x, requant=M_ONE, lut=lut[:10])
    with pytest.raises(ValueError, match="act_min"):
        ref.act_int8(x, requant=M_ONE, act_min=5, act_max=4)


def test_max_pool_int8_keeps_the_zero_point_and_ignores_padding() -> None:
    x = np.full((1, 1, 2, 2), -128, np.int8)
    y = ref.max_pool2d_int8(x, 2, 1, 1, zp_in=-5, act_min=-100)
    assert y.shape == (1, 1, 3, 3) and np.all(y == -100)       # padding never wins
    assert ref.max_pool2d_int8(x, 2, 1, 1).min() == -128
    with pytest.raises(ValueError, match="zero point"):
        ref.max_pool2d_int8(x, 2, zp_in=1, zp_out=2)
    with pytest.raises(ValueError, match="below the kernel"):
        ref.max_pool2d_int8(x, 2, padding=2)


def test_quantize_nan_inf_and_ties() -> None:
    x = np.array([0.5, 1.5, 2.5, -2.5, np.nan, np.inf, -np.inf, 1e38, 126.5], np.float32)
    assert ref.quantize(x, 1.0, 1).tolist() == [1, 3, 3, -1, 1, 127, -128, 127, 127]
    assert ref.quantize(x, 1.0, 1, act_min=2).tolist()[4] == 2      # NaN: zp, then the clamp
    # the division is float32: 0.3 / 0.1 is 3.0000002 in float32, 2.9999999999999996 in float64
    assert ref.quantize(np.float32(0.3), 0.1).item() == 3
    with pytest.raises(ValueError, match="scale"):
        ref.quantize(x, 0.0)


def test_dequantize_is_a_float32_product() -> None:
    q = np.arange(-128, 128, dtype=np.int8)
    s = 0.1
    y = ref.dequantize(q, s, -3)
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y, (q.astype(np.float32) + 3) * np.float32(s))
    np.testing.assert_array_equal(ref.dequantize(q, s, -3, "relu"), np.maximum(y, 0))


X22, W1 = np.zeros((1, 1, 2, 2), np.int8), np.zeros((1, 1, 1, 1), np.int8)


@pytest.mark.parametrize("fn, kw, match", [
    (ref.conv2d_int8, dict(x=X22.astype(np.int16), weight=W1, requant=M_ONE), "x must be int8"),
    (ref.conv2d_int8, dict(x=X22, weight=np.zeros((2, 1, 1, 1), np.int8), requant=M_ONE),
     r"2 rescale record\(s\)"),
    (ref.conv2d_int8, dict(x=X22, weight=W1, requant=M_ONE, zp_in=128), "zp_in"),
    (ref.fc_int8, dict(x=np.zeros((2, 3), np.int8), weight=np.zeros((4, 5), np.int8),
                       requant=np.tile(M_ONE, (4, 1))), "C_in = 3"),
    (ref.add_int8, dict(x0=np.zeros((1, 1, 2, 2), np.int8), x1=np.zeros((1, 1, 2, 2), np.int8),
                        requant=M_ONE), r"3 rescale record\(s\)"),
    (ref.scale_shift_int8, dict(x=np.zeros((1, 2, 2, 2), np.int8), weight=np.zeros(2, np.int8),
                                bias=np.array([2 ** 31, 0]), requant=np.tile(M_ONE, (2, 1))),
     "int32 values"),
])
def test_int8_errors_say_what_is_wrong(fn, kw, match) -> None:
    with pytest.raises(ValueError, match=match):
        fn(**kw)


def test_fc_int8_keeps_the_rank_and_global_pools() -> None:
    x = np.arange(-6, 6, dtype=np.int8).reshape(2, 6)
    w = np.eye(6, dtype=np.int8)[:3]
    y2 = ref.fc_int8(x, w, requant=np.tile(M_ONE, (3, 1)))
    y4 = ref.linear_int8(x.reshape(2, 6, 1, 1), w, requant=np.tile(M_ONE, (3, 1)))
    np.testing.assert_array_equal(y2, x[:, :3])
    np.testing.assert_array_equal(y4.reshape(2, 3), y2)
    x = np.arange(-8, 8, dtype=np.int8).reshape(1, 2, 2, 4)
    assert ref.global_max_pool2d_int8(x).ravel().tolist() == [-1, 7]
    # sums -36 and 28 over 8: -4.5 -> -4 and 3.5 -> 4 (half up)
    assert ref.global_avg_pool2d_int8(x, requant=(1 << 30, 33)).ravel().tolist() == [-4, 4]


# --- float activations: definitions, parameters, NaN ------------------------------

def test_activation_specs() -> None:
    assert ref.activation(None) == ref.activation("none") == ref.Activation(None)
    assert ref.activation("leaky_relu").alpha == pytest.approx(0.01)
    a = ref.activation(("hard_sigmoid", 0.2))
    assert (a.alpha, a.beta, a.code) == (float(np.float32(0.2)), 0.5, 5)
    assert ref.activation(("hard_swish", 0.25, 0.4)) == ref.Activation("hard_swish", 0.25, 0.4)
    for bad, match in [("gelu", "one of"), (("relu", 1.0), "no parameters"),
                       (("leaky_relu", 0.1, 0.2), "at most 1"), (("leaky_relu", np.nan), "finite")]:
        with pytest.raises(ValueError, match=match):
            ref.activation(bad)
    assert ref.ACTIVATIONS[:3] == ref.V1_ACTIVATIONS


def test_float_activation_values_and_nan() -> None:
    x = np.array([-np.inf, -1000, -3, -1, 0, 1, 3, 1000, np.inf, np.nan], np.float32)
    np.testing.assert_allclose(ref.leaky_relu(x, 0.1)[1:-1], [-100, -0.3, -0.1, 0, 1, 3, 1000,
                                                              np.inf], rtol=1e-6)
    with np.errstate(over="raise"):            # no overflow, even at -1000
        s = ref.sigmoid(x)
    np.testing.assert_allclose(s[:-1], [0, 0, 1 / (1 + np.exp(3)), 1 / (1 + np.e), 0.5,
                                        1 / (1 + np.exp(-1)), 1 / (1 + np.exp(-3)), 1, 1],
                               rtol=1e-6)
    np.testing.assert_allclose(ref.hard_sigmoid(x)[:-1], [0, 0, 0, 1 / 3, 0.5, 2 / 3, 1, 1, 1],
                               rtol=1e-6)
    np.testing.assert_allclose(ref.hard_swish(x)[1:-1], [0, 0, -1 / 3, 0, 2 / 3, 3, 1000, np.inf],
                               rtol=1e-6)
    for name in ref.ACTIVATIONS[1:]:
        assert np.isnan(ref.activation(name)(x)[-1]), name
    assert np.isnan(ref.hard_swish(x)[0])               # -inf * 0, as PyTorch


def test_every_op_fuses_every_activation() -> None:
    rng = np.random.default_rng(61)
    x = rng.standard_normal((2, 3, 5, 5)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    spec = ("leaky_relu", 0.2)
    f = ref.activation(spec)
    pre = ref.conv2d(x, w, padding=1)
    np.testing.assert_allclose(ref.conv2d(x, w, padding=1, activation=spec), f(pre), rtol=1e-6)
    for name in ref.ACTIVATIONS:
        g = ref.activation(name)
        for op, args in [(ref.max_pool2d, (2,)), (ref.avg_pool2d, (2,)),
                         (ref.global_avg_pool2d, ()), (ref.global_max_pool2d, ())]:
            np.testing.assert_allclose(op(x, *args, activation=name), g(op(x, *args)),
                                       rtol=1e-6, atol=1e-7)
    k = rng.standard_normal(3).astype(np.float32)
    np.testing.assert_allclose(ref.scale_shift(x, k, -k, activation="sigmoid"),
                               ref.sigmoid(x * k[:, None, None] - k[:, None, None]), rtol=1e-6)
    np.testing.assert_allclose(ref.mul(x, k.reshape(1, 3, 1, 1).repeat(2, 0)),
                               x * k[:, None, None], rtol=1e-6)
    np.testing.assert_allclose(ref.act(x, "hard_swish"), ref.hard_swish(x), rtol=1e-6)
    with pytest.raises(ValueError, match="one shape"):
        ref.add(x, x[:, :2])
    with pytest.raises(ValueError, match=r"\(N, C_in\) or \(N, C_in, 1, 1\)"):
        ref.fc(x, w.reshape(4, -1))
