"""Hardware 2.0 through the real driver: every new op x dtype x activation
against the numpy oracle (float32, documented tolerances) and the golden
model (int8, bit for bit), views over channel slices, the driver's checks
of v2 layers, and residual, inverted-residual + SE + hard-swish, dense
concatenation and ShuffleNet units as one job each, in float32 and int8."""
from __future__ import annotations

import errno

import numpy as np
import pytest

import pyaccel
from pyaccel import Layer2, Tensor, View, quant
from pyaccel import reference as ref
from pyaccel.uapi import ffi

FLOAT_ACTS = [None, "relu", "relu6", ("leaky_relu", 0.1), "sigmoid", "hard_sigmoid",
              "hard_swish"]


def close(got, want, fan_in=1):
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * max(1.0, fan_in) ** 0.5)


def shapes(rng, n=3):
    """Random NCHW shapes with odd sizes and batch > 1."""
    return [(int(rng.integers(1, 4)), int(rng.integers(1, 13)), int(rng.integers(1, 10)),
             int(rng.integers(1, 10))) for _ in range(n)]


def rand(rng, shape, lo=-3.0, hi=3.0):
    return rng.uniform(lo, hi, shape).astype(np.float32)


def rand_s8(rng, shape):
    return rng.integers(-128, 128, shape).astype(np.int8)


def varied(q: np.ndarray) -> np.ndarray:
    """q, after checking it is not saturated or constant (a test that could
    pass with a broken op is no test)."""
    assert len(np.unique(q)) > 16, f"degenerate int8 result: {np.unique(q)}"
    return q


@pytest.fixture
def v2dev(dev):
    if not dev.info.layer2_size:
        pytest.fail(f"the device is convaccel {dev.info.version}: no hardware 2.0 layers")
    return dev


def test_info_lists_the_2_0_capabilities(v2dev):
    i = v2dev.info
    assert i.layer2_size == ffi.sizeof("struct convaccel_layer2")
    assert i.ops == sum(1 << code for code in range(1, 13))
    assert i.activations == 0x7F and i.dtypes == 0x3
    assert v2dev.supports("add", "hard_swish", ("s8",))


# --- float32 ops -------------------------------------------------------------------

@pytest.mark.parametrize("act", FLOAT_ACTS, ids=str)
def test_add_mul_and_broadcast_mul(v2dev, rng, act):
    for shape in shapes(rng):
        a, b = rand(rng, shape), rand(rng, shape)
        close(v2dev.add(a, b, act), ref.add(a, b, act))
        close(v2dev.mul(a, b, act), ref.mul(a, b, act))
        se = rand(rng, shape[:2] + (1, 1))
        close(v2dev.mul(a, se, act), ref.mul(a, se, act))


@pytest.mark.parametrize("act", FLOAT_ACTS[1:], ids=str)
def test_activations_alone(v2dev, rng, act):
    x = rand(rng, (2, 5, 7, 3), -8, 8)
    close(v2dev.activation(x, act), ref.act(x, act))


def test_named_activations_follow_pytorch(v2dev, rng):
    x = rand(rng, (1, 4, 6, 6), -6, 6)
    close(v2dev.hardswish(x), x * np.clip(x + 3, 0, 6) / 6)
    close(v2dev.hardsigmoid(x), np.clip(x + 3, 0, 6) / 6)
    close(v2dev.leaky_relu(x, 0.2), np.where(x >= 0, x, 0.2 * x))
    nan = np.full((1, 1, 1, 2), np.nan, np.float32)
    assert np.isnan(v2dev.sigmoid(nan)).all() and np.isnan(v2dev.hardswish(nan)).all()


@pytest.mark.parametrize("act", [None, "relu", "hard_swish"], ids=str)
def test_scale_shift_and_global_pools(v2dev, rng, act):
    for shape in shapes(rng):
        x = rand(rng, shape)
        s, t = rand(rng, shape[1]), rand(rng, shape[1])
        close(v2dev.scale_shift(x, s, t, act), ref.scale_shift(x, s, t, act))
        close(v2dev.global_max_pool2d(x), ref.global_max_pool2d(x))
    big = rand(rng, (1, 3, 40, 37))      # beyond v1's 16x16 pooling kernel
    close(v2dev.global_max_pool2d(big), ref.global_max_pool2d(big))


def test_linear_over_a_batch(v2dev, rng):
    x, w, b = rand(rng, (5, 33)), rand(rng, (10, 33)), rand(rng, 10)
    close(v2dev.linear(x, w, b), ref.fc(x, w, b), fan_in=33)
    close(v2dev.linear(x, w, b, "relu"), ref.fc(x, w, b, "relu"), fan_in=33)


# --- int8: bit for bit with the golden model ----------------------------------------

def requant(rng, count):
    return np.stack([rng.integers(1 << 29, 1 << 31, count),
                     rng.integers(30, 40, count)], axis=1).astype(np.int64)


@pytest.mark.parametrize("case", ["plain", "groups", "depthwise-s2", "relu-clamp", "lut"])
def test_conv2d_int8_equals_the_golden_model(v2dev, rng, case):
    c_in, c_out, groups, stride = {"plain": (5, 7, 1, 1), "groups": (6, 4, 2, 1),
                                   "depthwise-s2": (8, 8, 8, 2), "relu-clamp": (3, 9, 1, 1),
                                   "lut": (4, 6, 1, 1)}[case]
    x = rand_s8(rng, (2, c_in, 9, 7))
    w = rand_s8(rng, (c_out, c_in // groups, 3, 3))
    b = rng.integers(-5000, 5000, c_out).astype(np.int32)
    kw = dict(requant=requant(rng, c_out), zp_in=int(rng.integers(-20, 20)),
              zp_out=int(rng.integers(-20, 20)))
    if case == "relu-clamp":
        kw.update(act_min=kw["zp_out"], act_max=100)
    if case == "lut":
        kw["lut"] = quant.activation_lut("hard_swish", 0.05, kw["zp_out"], 0.04, 3)
    got = v2dev.conv2d_int8(x, w, b, stride, 1, 1, groups, **kw)
    want = ref.conv2d_int8(x, w, b, stride, 1, 1, groups, **kw)
    assert got.dtype == np.int8 and np.array_equal(got, varied(want))


def test_add_mul_linear_int8_equal_the_golden_model(v2dev, rng):
    for shape in shapes(rng):
        a, b = rand_s8(rng, shape), rand_s8(rng, shape)
        kw = dict(zp_in0=5, zp_in1=-7, zp_out=2)
        rq = quant.add_requant(0.05, 0.03, 0.07)
        assert np.array_equal(v2dev.add_int8(a, b, requant=rq, **kw),
                              ref.add_int8(a, b, requant=rq, **kw))
        rq = quant.mul_requant(0.05, 0.03, 0.01)
        se = rand_s8(rng, shape[:2] + (1, 1))
        assert np.array_equal(v2dev.mul_int8(a, b, requant=rq, **kw),
                              ref.mul_int8(a, b, requant=rq, **kw))
        assert np.array_equal(v2dev.mul_int8(a, se, requant=rq, **kw),
                              ref.mul_int8(a, se, requant=rq, **kw))
    x, w = rand_s8(rng, (4, 50)), rand_s8(rng, (9, 50))
    bias = rng.integers(-900, 900, 9).astype(np.int32)
    rq = requant(rng, 9)
    assert np.array_equal(v2dev.linear_int8(x, w, bias, requant=rq, zp_in=3, zp_out=-4),
                          ref.fc_int8(x, w, bias, requant=rq, zp_in=3, zp_out=-4))


def test_quantize_dequantize_equal_the_golden_model(v2dev, rng):
    x = rand(rng, (2, 3, 5, 7), -10, 10)
    x[0, 0, 0, :3] = [np.nan, 0.5 * 0.1, 2.5 * 0.1]        # NaN and ties
    q = v2dev.quantize(x, 0.1, 3)
    assert np.array_equal(q, ref.quantize(x, 0.1, 3))
    assert np.array_equal(v2dev.dequantize(q, 0.1, 3), ref.dequantize(q, 0.1, 3))


# --- the driver's checks of v2 layers ------------------------------------------------

def submit_one(dev, layer):
    return dev.submit([layer]).wait(10)


@pytest.fixture
def buf(dev):
    b = dev.buffer(1 << 16)
    b.array(1 << 14)[...] = 1.0
    return b


def add_layer(buf, **change):
    geo = dict(n=1, c_in=2, h_in=4, w_in=4, c_out=2, h_out=4, w_out=4, groups=1, kh=1, kw=1,
               stride_h=1, stride_w=1, dil_h=1, dil_w=1)
    fields = dict(op="add", in0=View(buf.handle, 0), in1=View(buf.handle, 4096),
                  out=View(buf.handle, 8192), geometry=geo)
    geo.update(change.pop("geometry", {}))
    fields.update(change)
    return Layer2(**fields)


@pytest.mark.parametrize("change, err", [
    (dict(geometry=dict(h_out=3)), errno.EINVAL),               # ADD keeps the shape
    (dict(geometry=dict(kh=3)), errno.EINVAL),                  # no window
    (dict(in1=None), errno.ENOENT),                             # ADD needs in1 (handle 0)
    (dict(in0=View(0, 0)), errno.ENOENT),
    (dict(out=View(1, 1 << 16)), errno.EOVERFLOW),              # past the buffer
    (dict(out=View(1, 8192, strides=(1 << 14, 1 << 14, 4, 1))), errno.EOVERFLOW),
    (dict(in0=View(1, 2)), errno.EINVAL),                       # misaligned float
    (dict(in0=View(1, 0, "s8")), errno.EINVAL),                 # mixed dtypes
    (dict(quant=dict(zp_out=3)), errno.EINVAL),                 # a zero point on float
    (dict(weight=Tensor(1, 0)), errno.EINVAL),                  # ADD takes no weight
    (dict(op="quantize", in1=None, quant=dict(qscale=float("inf"))), errno.EINVAL),
    (dict(activation="hard_swish", out=View(1, 8192, "s8"), in0=View(1, 0, "s8"),
          in1=View(1, 4096, "s8")), errno.EINVAL),              # int8: act is the table
], ids=["shape", "kernel", "no-in1", "bad-handle", "past-end", "strided-past-end",
        "misaligned", "mixed-dtypes", "zp-on-float", "weight", "qscale-inf", "int8-act"])
def test_driver_refuses_bad_v2_layers(v2dev, buf, change, err):
    with pytest.raises(pyaccel.AccelError) as e:
        submit_one(v2dev, add_layer(buf, **change))
    assert e.value.errno == err


def test_layer2_tail_must_be_zero(v2dev, buf):
    size = ffi.sizeof("struct convaccel_layer2") + 8
    raw = ffi.new("char[]", size)
    add_layer(buf).fill(ffi.cast("struct convaccel_layer2 *", raw))
    req = ffi.new("struct convaccel_submit *", dict(
        layers=int(ffi.cast("uintptr_t", raw)), layer_count=1, layer_size=size,
        flags=pyaccel.uapi.CONSTANTS["CONVACCEL_SUBMIT_LAYER2"]))
    v2dev.ioctl("SUBMIT", req)
    raw[size - 1] = b"\x01"
    req.job_id = 0
    with pytest.raises(pyaccel.AccelError) as e:
        v2dev.ioctl("SUBMIT", req)
    assert e.value.errno == errno.E2BIG


# --- whole blocks, one job each -------------------------------------------------------

class Arena:
    """One device buffer holding a block's tensors: place arrays, allocate
    outputs, hand out views (the memory plan of a compiled block)."""

    def __init__(self, dev, size=1 << 21):
        self.buf = dev.buffer(size)
        self.top = 0

    def alloc(self, shape, dtype=np.float32) -> int:
        off = self.top
        self.top += -(-int(np.prod(shape)) * np.dtype(dtype).itemsize // 64) * 64
        assert self.top <= self.buf.size, "arena too small"
        return off

    def put(self, a: np.ndarray) -> int:
        off = self.alloc(a.shape, a.dtype)
        self.buf.array(a.shape, a.dtype, off)[...] = a
        return off

    def view(self, off, dtype="f32", strides=None) -> View:
        return View(self.buf.handle, off, dtype, strides)

    def tensor(self, a: np.ndarray) -> Tensor:
        return Tensor(self.buf.handle, self.put(np.ascontiguousarray(a)))

    def read(self, off, shape, dtype=np.float32) -> np.ndarray:
        return self.buf.array(shape, dtype, off).copy()


def geo(x_shape, c_out, k=1, stride=1, pad=0, groups=1, out_hw=None):
    n, c, h, w = x_shape
    ho = out_hw[0] if out_hw else (h + 2 * pad - k) // stride + 1
    wo = out_hw[1] if out_hw else (w + 2 * pad - k) // stride + 1
    return dict(n=n, c_in=c, h_in=h, w_in=w, c_out=c_out, h_out=ho, w_out=wo, groups=groups,
                kh=k, kw=k, stride_h=stride, stride_w=stride, dil_h=1, dil_w=1,
                pad_top=pad, pad_bottom=pad, pad_left=pad, pad_right=pad)


def out_shape(g):
    return (g["n"], g["c_out"], g["h_out"], g["w_out"])


def packed(shape):
    n, c, h, w = shape
    return (c * h * w, h * w, w, 1)


def conv_layer(ar, x, g, w, b, act=None, out=None):
    a = ref.activation(act)
    return Layer2("conv", in0=x, out=out or ar.view(ar.alloc(out_shape(g))),
                  weight=ar.tensor(w), bias=ar.tensor(b) if b is not None else None,
                  activation=a.name or "none", act_alpha=a.alpha, act_beta=a.beta, geometry=g)


def test_residual_block_float(v2dev, rng):
    x = rand(rng, (2, 8, 9, 9))
    w1, w2 = rand(rng, (8, 8, 3, 3), -0.2, 0.2), rand(rng, (8, 8, 3, 3), -0.2, 0.2)
    b1, b2 = rand(rng, 8), rand(rng, 8)
    ar = Arena(v2dev)
    xv = ar.view(ar.put(x))
    g = geo(x.shape, 8, 3, pad=1)
    l1 = conv_layer(ar, xv, g, w1, b1, "relu")
    l2 = conv_layer(ar, l1.out, g, w2, b2)
    add = Layer2("add", in0=l2.out, in1=xv, out=ar.view(ar.alloc(x.shape)), activation="relu",
                 geometry=geo(x.shape, 8))
    assert v2dev.submit([l1, l2, add]).wait(10).layers_done == 3
    want = ref.add(ref.conv2d(ref.conv2d(x, w1, b1, padding=1, activation="relu"), w2, b2,
                              padding=1), x, "relu")
    close(ar.read(add.out.offset, x.shape), want, fan_in=72)


def test_inverted_residual_with_se_and_hard_swish_float(v2dev, rng):
    """MobileNetV3's block: expand 1x1 + h-swish, depthwise 3x3 + h-swish,
    squeeze-excite (global pool, FC + ReLU, FC + hard-sigmoid, channel mul),
    project 1x1, residual add."""
    c, e, r = 8, 24, 6
    x = rand(rng, (2, c, 7, 7))
    w_exp, b_exp = rand(rng, (e, c, 1, 1), -0.3, 0.3), rand(rng, e)
    w_dw, b_dw = rand(rng, (e, 1, 3, 3), -0.3, 0.3), rand(rng, e)
    w_se1, b_se1 = rand(rng, (r, e), -0.3, 0.3), rand(rng, r)
    w_se2, b_se2 = rand(rng, (e, r), -0.3, 0.3), rand(rng, e)
    w_pr, b_pr = rand(rng, (c, e, 1, 1), -0.3, 0.3), rand(rng, c)
    ar = Arena(v2dev)
    xv = ar.view(ar.put(x))
    exp = conv_layer(ar, xv, geo(x.shape, e), w_exp, b_exp, "hard_swish")
    dw = conv_layer(ar, exp.out, geo((2, e, 7, 7), e, 3, pad=1, groups=e), w_dw, b_dw,
                    "hard_swish")
    pool = Layer2("global_avgpool", in0=dw.out, out=ar.view(ar.alloc((2, e, 1, 1))),
                  geometry=geo((2, e, 7, 7), e, out_hw=(1, 1)))
    fc1 = Layer2("fc", in0=pool.out, out=ar.view(ar.alloc((2, r, 1, 1))),
                 weight=ar.tensor(w_se1), bias=ar.tensor(b_se1), activation="relu",
                 geometry=geo((2, e, 1, 1), r))
    hs = ref.activation("hard_sigmoid")
    fc2 = Layer2("fc", in0=fc1.out, out=ar.view(ar.alloc((2, e, 1, 1))),
                 weight=ar.tensor(w_se2), bias=ar.tensor(b_se2), activation="hard_sigmoid",
                 act_alpha=hs.alpha, act_beta=hs.beta, geometry=geo((2, r, 1, 1), e))
    mul = Layer2("mul", in0=dw.out, in1=fc2.out, out=ar.view(ar.alloc((2, e, 7, 7))),
                 broadcast=True, geometry=geo((2, e, 7, 7), e))
    pr = conv_layer(ar, mul.out, geo((2, e, 7, 7), c), w_pr, b_pr)
    add = Layer2("add", in0=pr.out, in1=xv, out=ar.view(ar.alloc(x.shape)),
                 geometry=geo(x.shape, c))
    assert v2dev.submit([exp, dw, pool, fc1, fc2, mul, pr, add]).wait(10).ok
    y = ref.conv2d(x, w_exp, b_exp, activation="hard_swish")
    y = ref.conv2d(y, w_dw, b_dw, padding=1, groups=e, activation="hard_swish")
    s = ref.fc(ref.fc(ref.global_avg_pool2d(y), w_se1, b_se1, "relu"), w_se2, b_se2,
               "hard_sigmoid")
    y = ref.add(ref.conv2d(ref.mul(y, s), w_pr, b_pr), x)
    close(ar.read(add.out.offset, x.shape), y, fan_in=e)


def test_dense_concatenation_without_copies_float(v2dev, rng):
    """DenseNet: BN (scale-shift) + ReLU, 1x1 conv, BN + ReLU, 3x3 conv whose
    output is written straight into the concatenation, next to the input."""
    n, c0, k, h = 2, 6, 4, 8
    x = rand(rng, (n, c0, h, h))
    s1, t1 = rand(rng, c0), rand(rng, c0)
    w1 = rand(rng, (4 * k, c0, 1, 1), -0.3, 0.3)
    s2, t2 = rand(rng, 4 * k), rand(rng, 4 * k)
    w2 = rand(rng, (k, 4 * k, 3, 3), -0.3, 0.3)
    ar = Arena(v2dev)
    cat_shape = (n, c0 + k, h, h)
    cat = ar.alloc(cat_shape)
    strides = packed(cat_shape)
    ar.buf.array(cat_shape, np.float32, cat)[:, :c0] = x          # x lives in the concat
    xv = ar.view(cat, strides=strides)
    bn1 = Layer2("scale_shift", in0=xv, out=ar.view(ar.alloc(x.shape)), weight=ar.tensor(s1),
                 bias=ar.tensor(t1), activation="relu", geometry=geo(x.shape, c0))
    c1 = conv_layer(ar, bn1.out, geo(x.shape, 4 * k), w1, None)
    bn2 = Layer2("scale_shift", in0=c1.out, out=ar.view(ar.alloc((n, 4 * k, h, h))),
                 weight=ar.tensor(s2), bias=ar.tensor(t2), activation="relu",
                 geometry=geo((n, 4 * k, h, h), 4 * k))
    c2 = conv_layer(ar, bn2.out, geo((n, 4 * k, h, h), k, 3, pad=1), w2, None,
                    out=ar.view(cat + 4 * c0 * h * h, strides=strides))
    assert v2dev.submit([bn1, c1, bn2, c2]).wait(10).ok
    y = ref.scale_shift(x, s1, t1, "relu")
    y = ref.scale_shift(ref.conv2d(y, w1), s2, t2, "relu")
    want = np.concatenate([x, ref.conv2d(y, w2, padding=1)], axis=1)
    close(ar.read(cat, cat_shape), want, fan_in=36 * k)


def shufflenet_unit(ar, x_off, shape, w1, dw, w2, dtype="f32", int8=None):
    """ShuffleNetV2's stride-1 unit as layers: split the channels (views), run
    the right half through 1x1 + ReLU, depthwise 3x3, 1x1 + ReLU, and write
    both halves interleaved (concat + channel shuffle by 2) through strided
    output views: no copy but the left half's, which an ACT layer does."""
    n, c2, h, w = shape
    c = c2 // 2
    in_st = packed(shape)
    out = ar.alloc(shape, np.int8 if dtype == "s8" else np.float32)
    size = 1 if dtype == "s8" else 4
    # output channel 2i is left channel i, 2i + 1 is right channel i
    shuffled = (c2 * h * w, 2 * h * w, w, 1)
    left = ar.view(x_off, dtype, in_st)
    right = ar.view(x_off + size * c * h * w, dtype, in_st)
    half = (n, c, h, w)
    q = int8 or {}
    copy = Layer2("act", in0=left, out=ar.view(out, dtype, shuffled), geometry=geo(half, c),
                  **q.get("copy", {}))
    layers = [copy]
    for i, (wt, g, act) in enumerate(((w1, geo(half, c), "relu"),
                                      (dw, geo(half, c, 3, pad=1, groups=c), None),
                                      (w2, geo(half, c), "relu"))):
        src = right if i == 0 else layers[-1].out
        dst = ar.view(out + size * h * w, dtype, shuffled) if i == 2 else \
            ar.view(ar.alloc(half, np.int8 if dtype == "s8" else np.float32), dtype)
        extra = q.get(f"conv{i}", {})
        a = ref.activation(None if dtype == "s8" else act)
        layers.append(Layer2("conv", in0=src, out=dst, weight=ar.tensor(wt),
                             bias=extra.pop("bias", None), activation=a.name or "none",
                             geometry=g, **extra))
    return layers, out


def test_shufflenet_unit_float(v2dev, rng):
    shape = (2, 8, 6, 6)
    x = rand(rng, shape)
    w1, dw, w2 = (rand(rng, (4, 4, 1, 1), -0.4, 0.4), rand(rng, (4, 1, 3, 3), -0.4, 0.4),
                  rand(rng, (4, 4, 1, 1), -0.4, 0.4))
    ar = Arena(v2dev)
    layers, out = shufflenet_unit(ar, ar.put(x), shape, w1, dw, w2)
    assert v2dev.submit(layers).wait(10).ok
    r = ref.conv2d(ref.conv2d(ref.conv2d(x[:, 4:], w1, activation="relu"), dw, padding=1,
                              groups=4), w2, activation="relu")
    cat = np.concatenate([x[:, :4], r], axis=1)
    want = cat.reshape(2, 2, 4, 6, 6).transpose(0, 2, 1, 3, 4).reshape(shape)
    close(ar.read(out, shape), want, fan_in=9)


# --- the same blocks in int8, bit for bit with the golden model chain -----------------

def qconv(rng, x_shape, c_out, k, groups=1):
    """int8 weights, int32 bias and rescale records for a conv."""
    w = rand_s8(rng, (c_out, x_shape[1] // groups, k, k))
    b = rng.integers(-3000, 3000, c_out).astype(np.int32)
    return w, b, requant(rng, c_out)


def test_residual_block_int8(v2dev, rng):
    x = rand_s8(rng, (2, 8, 9, 9))
    (w1, b1, r1), (w2, b2, r2) = qconv(rng, x.shape, 8, 3), qconv(rng, x.shape, 8, 3)
    radd = quant.add_requant(0.05, 0.04, 0.06)
    ar = Arena(v2dev)
    xv = ar.view(ar.put(x), "s8")
    g = geo(x.shape, 8, 3, pad=1)
    zp = dict(zp_in0=-3, zp_out=4, act_min=4, act_max=127)          # ReLU: the clamp
    l1 = Layer2("conv", in0=xv, out=ar.view(ar.alloc(x.shape, np.int8), "s8"),
                weight=ar.tensor(w1), bias=ar.tensor(b1), requant=ar.tensor(r1.astype(np.int32)),
                geometry=g, quant=zp)
    l2 = Layer2("conv", in0=l1.out, out=ar.view(ar.alloc(x.shape, np.int8), "s8"),
                weight=ar.tensor(w2), bias=ar.tensor(b2), requant=ar.tensor(r2.astype(np.int32)),
                geometry=g, quant=dict(zp_in0=4, zp_out=-1, act_min=-128, act_max=127))
    add = Layer2("add", in0=l2.out, in1=xv, out=ar.view(ar.alloc(x.shape, np.int8), "s8"),
                 requant=ar.tensor(radd), geometry=geo(x.shape, 8),
                 quant=dict(zp_in0=-1, zp_in1=-3, zp_out=0, act_min=0, act_max=127))
    assert v2dev.submit([l1, l2, add]).wait(10).ok
    y = ref.conv2d_int8(x, w1, b1, padding=1, requant=r1, zp_in=-3, zp_out=4, act_min=4)
    y = ref.conv2d_int8(y, w2, b2, padding=1, requant=r2, zp_in=4, zp_out=-1)
    y = ref.add_int8(y, x, requant=radd, zp_in0=-1, zp_in1=-3, zp_out=0, act_min=0)
    assert np.array_equal(ar.read(add.out.offset, x.shape, np.int8), varied(y))


def test_shufflenet_unit_int8_with_quantize_and_dequantize(v2dev, rng):
    """float in, QUANTIZE, the int8 unit (views, requantizing copy), DEQUANTIZE."""
    shape = (2, 8, 6, 6)
    xf = rand(rng, shape)
    s_x, zp_x = quant.qparams(float(xf.min()), float(xf.max()))
    (w1, b1, r1), (dw, bd, rd), (w2, b2, r2) = (qconv(rng, (2, 4, 6, 6), 4, 1),
                                                qconv(rng, (2, 4, 6, 6), 4, 3, groups=4),
                                                qconv(rng, (2, 4, 6, 6), 4, 1))
    r_copy = quant.act_requant(s_x, 0.03)
    ar = Arena(v2dev)
    xin = ar.put(xf)
    xq = ar.alloc(shape, np.int8)
    qz = Layer2("quantize", in0=ar.view(xin), out=ar.view(xq, "s8"), geometry=geo(shape, 8),
                quant=dict(qscale=s_x, zp_out=zp_x, act_min=-128, act_max=127))
    full = dict(act_min=-128, act_max=127)
    int8 = {"copy": dict(requant=ar.tensor(r_copy), quant=dict(zp_in0=zp_x, zp_out=1, **full)),
            "conv0": dict(bias=ar.tensor(b1), requant=ar.tensor(r1.astype(np.int32)),
                          quant=dict(zp_in0=zp_x, zp_out=-5, act_min=-5, act_max=127)),
            "conv1": dict(bias=ar.tensor(bd), requant=ar.tensor(rd.astype(np.int32)),
                          quant=dict(zp_in0=-5, zp_out=2, **full)),
            "conv2": dict(bias=ar.tensor(b2), requant=ar.tensor(r2.astype(np.int32)),
                          quant=dict(zp_in0=2, zp_out=1, act_min=1, act_max=127))}
    layers, out = shufflenet_unit(ar, xq, shape, w1, dw, w2, "s8", int8)
    yf = ar.alloc(shape)
    dq = Layer2("dequantize", in0=ar.view(out, "s8"), out=ar.view(yf), geometry=geo(shape, 8),
                quant=dict(zp_in0=1, qscale=0.03))
    assert v2dev.submit([qz, *layers, dq]).wait(10).ok
    q = ref.quantize(xf, s_x, zp_x)
    left = ref.act_int8(q[:, :4], requant=r_copy, zp_in=zp_x, zp_out=1)
    r = ref.conv2d_int8(q[:, 4:], w1, b1, requant=r1, zp_in=zp_x, zp_out=-5, act_min=-5)
    r = ref.conv2d_int8(r, dw, bd, padding=1, groups=4, requant=rd, zp_in=-5, zp_out=2)
    r = ref.conv2d_int8(r, w2, b2, requant=r2, zp_in=2, zp_out=1, act_min=1)
    want_q = np.concatenate([left, r], axis=1).reshape(2, 2, 4, 6, 6).transpose(
        0, 2, 1, 3, 4).reshape(shape)
    assert np.array_equal(ar.read(out, shape, np.int8), varied(want_q))
    assert np.array_equal(ar.read(yf, shape), ref.dequantize(want_q, 0.03, 1))


def test_dense_concatenation_int8(v2dev, rng):
    """DenseNet's pre-activation unit in int8: SCALE_SHIFT + ReLU clamp, 1x1,
    SCALE_SHIFT + ReLU, 3x3 written into the concatenation's channel slice
    (the concatenation shares one scale and zero point)."""
    n, c0, k, h = 2, 6, 4, 8
    x = rand_s8(rng, (n, c0, h, h))
    s1, t1, r1 = rand_s8(rng, c0), rng.integers(-500, 500, c0).astype(np.int32), requant(rng, c0)
    (w1, b1, rw1) = qconv(rng, (n, c0, h, h), 4 * k, 1)
    s2, t2 = rand_s8(rng, 4 * k), rng.integers(-500, 500, 4 * k).astype(np.int32)
    r2 = requant(rng, 4 * k)
    (w2, b2, rw2) = qconv(rng, (n, 4 * k, h, h), k, 3)
    ar = Arena(v2dev)
    cat_shape = (n, c0 + k, h, h)
    cat = ar.alloc(cat_shape, np.int8)
    st = packed(cat_shape)
    ar.buf.array(cat_shape, np.int8, cat)[:, :c0] = x
    i32 = lambda a: ar.tensor(a.astype(np.int32))  # noqa: E731
    relu = lambda zp: dict(zp_out=zp, act_min=zp, act_max=127)  # noqa: E731
    bn1 = Layer2("scale_shift", in0=ar.view(cat, "s8", st),
                 out=ar.view(ar.alloc(x.shape, np.int8), "s8"), weight=ar.tensor(s1),
                 bias=ar.tensor(t1), requant=i32(r1), geometry=geo(x.shape, c0),
                 quant=dict(zp_in0=7, **relu(-2)))
    c1 = Layer2("conv", in0=bn1.out, out=ar.view(ar.alloc((n, 4 * k, h, h), np.int8), "s8"),
                weight=ar.tensor(w1), bias=ar.tensor(b1), requant=i32(rw1),
                geometry=geo(x.shape, 4 * k), quant=dict(zp_in0=-2, zp_out=3, act_min=-128,
                                                          act_max=127))
    bn2 = Layer2("scale_shift", in0=c1.out, out=ar.view(ar.alloc((n, 4 * k, h, h), np.int8), "s8"),
                 weight=ar.tensor(s2), bias=ar.tensor(t2), requant=i32(r2),
                 geometry=geo((n, 4 * k, h, h), 4 * k), quant=dict(zp_in0=3, **relu(-9)))
    c2 = Layer2("conv", in0=bn2.out, out=ar.view(cat + c0 * h * h, "s8", st),
                weight=ar.tensor(w2), bias=ar.tensor(b2), requant=i32(rw2),
                geometry=geo((n, 4 * k, h, h), k, 3, pad=1),
                quant=dict(zp_in0=-9, zp_out=7, act_min=-128, act_max=127))
    assert v2dev.submit([bn1, c1, bn2, c2]).wait(10).ok
    y = ref.scale_shift_int8(x, s1, t1, requant=r1, zp_in=7, zp_out=-2, act_min=-2)
    y = ref.conv2d_int8(y, w1, b1, requant=rw1, zp_in=-2, zp_out=3)
    y = ref.scale_shift_int8(y, s2, t2, requant=r2, zp_in=3, zp_out=-9, act_min=-9)
    y = ref.conv2d_int8(y, w2, b2, padding=1, requant=rw2, zp_in=-9, zp_out=7)
    assert np.array_equal(ar.read(cat, cat_shape, np.int8),
                          np.concatenate([x, varied(y)], axis=1))


def test_inverted_residual_with_se_and_hard_swish_int8(v2dev, rng):
    """The MobileNetV3 block in int8: hard-swish and hard-sigmoid as lookup
    tables, the SE scale as an int8 broadcast MUL, the residual an int8 ADD."""
    c, e, r, n, h = 8, 24, 6, 2, 7
    x = rand_s8(rng, (n, c, h, h))
    zp = dict(x=-4, exp=3, dw=-6, pool=1, fc1=-20, fc2=-128, mul=2, pr=5, out=0)
    hswish = lambda zp_mid, zp_out: quant.activation_lut("hard_swish", 0.06, zp_mid, 0.05, zp_out)  # noqa: E731
    (w_exp, b_exp, r_exp) = qconv(rng, x.shape, e, 1)
    (w_dw, b_dw, r_dw) = qconv(rng, (n, e, h, h), e, 3, groups=e)
    w_se1, b_se1, r_se1 = rand_s8(rng, (r, e)), rng.integers(-900, 900, r).astype(np.int32), \
        requant(rng, r)
    w_se2, b_se2, r_se2 = rand_s8(rng, (e, r)), rng.integers(-900, 900, e).astype(np.int32), \
        requant(rng, e)
    hsig = quant.activation_lut("hard_sigmoid", 0.05, 0, 1 / 255, zp["fc2"])
    (w_pr, b_pr, r_pr) = qconv(rng, (n, e, h, h), c, 1)
    r_pool = quant.avgpool_requant(0.05, 0.05, h, h)
    r_mul = quant.mul_requant(0.05, 1 / 255, 0.05)
    r_add = quant.add_requant(0.05, 0.04, 0.06)
    ar = Arena(v2dev)
    i32 = lambda a: ar.tensor(np.asarray(a).astype(np.int32))  # noqa: E731
    s8 = lambda shape: ar.view(ar.alloc(shape, np.int8), "s8")  # noqa: E731
    full = dict(act_min=-128, act_max=127)
    big, small = (n, e, h, h), (n, e, 1, 1)
    xv = ar.view(ar.put(x), "s8")
    exp = Layer2("conv", in0=xv, out=s8(big), weight=ar.tensor(w_exp), bias=ar.tensor(b_exp),
                 requant=i32(r_exp), lut=ar.tensor(hswish(0, zp["exp"])), geometry=geo(x.shape, e),
                 quant=dict(zp_in0=zp["x"], zp_out=0, **full))
    dw = Layer2("conv", in0=exp.out, out=s8(big), weight=ar.tensor(w_dw), bias=ar.tensor(b_dw),
                requant=i32(r_dw), lut=ar.tensor(hswish(0, zp["dw"])),
                geometry=geo(big, e, 3, pad=1, groups=e),
                quant=dict(zp_in0=zp["exp"], zp_out=0, **full))
    pool = Layer2("global_avgpool", in0=dw.out, out=s8(small), requant=i32(r_pool),
                  geometry=geo(big, e, out_hw=(1, 1)),
                  quant=dict(zp_in0=zp["dw"], zp_out=zp["pool"], **full))
    fc1 = Layer2("fc", in0=pool.out, out=s8((n, r, 1, 1)), weight=ar.tensor(w_se1),
                 bias=ar.tensor(b_se1), requant=i32(r_se1), geometry=geo(small, r),
                 quant=dict(zp_in0=zp["pool"], zp_out=zp["fc1"], act_min=zp["fc1"], act_max=127))
    fc2 = Layer2("fc", in0=fc1.out, out=s8(small), weight=ar.tensor(w_se2),
                 bias=ar.tensor(b_se2), requant=i32(r_se2), lut=ar.tensor(hsig),
                 geometry=geo((n, r, 1, 1), e),
                 quant=dict(zp_in0=zp["fc1"], zp_out=0, **full))
    mul = Layer2("mul", in0=dw.out, in1=fc2.out, out=s8(big), requant=i32(r_mul),
                 broadcast=True, geometry=geo(big, e),
                 quant=dict(zp_in0=zp["dw"], zp_in1=zp["fc2"], zp_out=zp["mul"], **full))
    pr = Layer2("conv", in0=mul.out, out=s8(x.shape), weight=ar.tensor(w_pr),
                bias=ar.tensor(b_pr), requant=i32(r_pr), geometry=geo(big, c),
                quant=dict(zp_in0=zp["mul"], zp_out=zp["pr"], **full))
    add = Layer2("add", in0=pr.out, in1=xv, out=s8(x.shape), requant=i32(r_add),
                 geometry=geo(x.shape, c),
                 quant=dict(zp_in0=zp["pr"], zp_in1=zp["x"], zp_out=zp["out"], **full))
    assert v2dev.submit([exp, dw, pool, fc1, fc2, mul, pr, add]).wait(10).ok
    y = ref.conv2d_int8(x, w_exp, b_exp, requant=r_exp, zp_in=zp["x"], lut=hswish(0, zp["exp"]))
    y = ref.conv2d_int8(y, w_dw, b_dw, padding=1, groups=e, requant=r_dw, zp_in=zp["exp"],
                        lut=hswish(0, zp["dw"]))
    s = ref.global_avg_pool2d_int8(y, requant=r_pool, zp_in=zp["dw"], zp_out=zp["pool"])
    s = ref.fc_int8(s, w_se1, b_se1, requant=r_se1, zp_in=zp["pool"], zp_out=zp["fc1"],
                    act_min=zp["fc1"])
    s = ref.fc_int8(s, w_se2, b_se2, requant=r_se2, zp_in=zp["fc1"], lut=hsig)
    y = ref.mul_int8(y, s, requant=r_mul, zp_in0=zp["dw"], zp_in1=zp["fc2"], zp_out=zp["mul"])
    y = ref.conv2d_int8(y, w_pr, b_pr, requant=r_pr, zp_in=zp["mul"], zp_out=zp["pr"])
    y = ref.add_int8(y, x, requant=r_add, zp_in0=zp["pr"], zp_in1=zp["x"], zp_out=zp["out"])
    assert np.array_equal(ar.read(add.out.offset, x.shape, np.int8), varied(y))
