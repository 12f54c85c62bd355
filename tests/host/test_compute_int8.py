"""The int8 kernels of the compute library (cvc_conv2d_s8, cvc_fc_s8) against a
numpy int64 model of docs/hardware.md's "int8 arithmetic", EXACTLY; cvc_fc
(float32) and the new float activations against numpy with the float tolerance.

The int8 model here: acc = bias + sum((x - zp_in) * w) in int64, wrapped to
int32 (two's complement); rescale(v, M, S) = (v * M + 2**(S-1)) >> S in int64
(arithmetic shift; |v * M| < 2**62); clamp(r + zp_out, act_min, act_max); then
lut[y + 128]. If pyaccel.reference grows a golden model (rescale,
conv2d_int8), it is compared too.

Every ISA path (cvc_set_isa: portable C, AVX2, AVX-512 VNNI where the CPU has
them) and thread counts 1 and 2 must give the same bytes.
"""
from __future__ import annotations

import inspect
import time

import numpy as np
import pytest

from pyaccel import reference as ref

from test_compute import (  # noqa: F401  (cvc: a fixture)
    CancelAtOnce, _ptr, cvc, lib_conv2d, rand, tolerance)

INT32 = 2 ** 32


# --- the numpy model -------------------------------------------------------------

def wrap32(v: np.ndarray) -> np.ndarray:
    """int64 -> the int32 two's complement value, as int64."""
    return ((v.astype(np.int64) + 2 ** 31) % INT32) - 2 ** 31


def np_rescale(v: np.ndarray, m: np.ndarray, s: np.ndarray) -> np.ndarray:
    v, m, s = (np.asarray(a, np.int64) for a in (v, m, s))
    return (v * m + (np.int64(1) << (s - 1))) >> s


def np_requant(acc, requant, zp_out, act_min, act_max, lut, axis):
    """acc int64 (wrapped), requant (c, 2) broadcast along axis (the channel axis)."""
    shape = [1] * acc.ndim
    shape[axis] = -1
    m = requant[:, 0].astype(np.int64).reshape(shape)
    s = requant[:, 1].astype(np.int64).reshape(shape)
    y = np.clip(np_rescale(acc, m, s) + zp_out, act_min, act_max)
    if lut is not None:
        y = lut.astype(np.int64)[y + 128]
    return y.astype(np.int8)


def np_conv_acc(x, w, bias, zp_in, stride, pads, dil, groups):
    """The wrapped int32 accumulators (as int64) of an int8 convolution."""
    n, c_in, h, wd = x.shape
    c_out, cin_g, kh, kw = w.shape
    top, bottom, left, right = pads
    h_out = (h + top + bottom - dil[0] * (kh - 1) - 1) // stride[0] + 1
    w_out = (wd + left + right - dil[1] * (kw - 1) - 1) // stride[1] + 1
    xs = np.zeros((n, c_in, h + top + bottom, wd + left + right), np.int64)
    xs[:, :, top:top + h, left:left + wd] = x.astype(np.int64) - zp_in
    acc = np.zeros((n, c_out, h_out, w_out), np.int64)
    cout_g = c_out // groups
    for g in range(groups):
        xg = xs[:, g * cin_g:(g + 1) * cin_g]
        wg = w[g * cout_g:(g + 1) * cout_g].astype(np.int64)
        for ki in range(kh):
            for kj in range(kw):
                r0, c0 = ki * dil[0], kj * dil[1]
                win = xg[:, :, r0:r0 + stride[0] * (h_out - 1) + 1:stride[0],
                         c0:c0 + stride[1] * (w_out - 1) + 1:stride[1]]
                acc[:, g * cout_g:(g + 1) * cout_g] += np.einsum("oc,nchw->nohw",
                                                                wg[:, :, ki, kj], win)
    if bias is not None:
        acc += bias.astype(np.int64).reshape(1, -1, 1, 1)
    return wrap32(acc)


def np_conv2d_s8(x, w, bias, q, stride=(1, 1), pads=(0, 0, 0, 0), dil=(1, 1), groups=1):
    acc = np_conv_acc(x, w, bias, q["zp_in"], stride, pads, dil, groups)
    return np_requant(acc, q["requant"], q["zp_out"], q["act_min"], q["act_max"], q["lut"], 1)


def np_fc_s8(x, w, bias, q):
    acc = (x.astype(np.int64) - q["zp_in"]) @ w.astype(np.int64).T
    if bias is not None:
        acc += bias.astype(np.int64)
    return np_requant(wrap32(acc), q["requant"], q["zp_out"], q["act_min"], q["act_max"],
                      q["lut"], 1)


# --- calling the library ---------------------------------------------------------

def _quant(ffi, q, keep):
    requant = np.ascontiguousarray(q["requant"], np.int32)
    keep.append(requant)
    lut = None if q["lut"] is None else np.ascontiguousarray(q["lut"], np.int8)
    keep.append(lut)
    return ffi.new("struct cvc_quant *", dict(
        zp_in=q["zp_in"], zp_out=q["zp_out"], act_min=q["act_min"], act_max=q["act_max"],
        requant=ffi.from_buffer("int32_t[]", requant),
        lut=ffi.NULL if lut is None else ffi.from_buffer("int8_t[]", lut)))


def _buf(ffi, kind, a):
    return ffi.NULL if a is None else ffi.from_buffer(kind, a)


def lib_conv2d_s8(cvc, x, w, bias, q, stride=(1, 1), pads=(0, 0, 0, 0), dil=(1, 1), groups=1,
                  ctl=None, expect=0):
    ffi, lib = cvc
    n, c_in, h, wd = x.shape
    c_out, _, kh, kw = w.shape
    top, bottom, left, right = pads
    h_out = (h + top + bottom - dil[0] * (kh - 1) - 1) // stride[0] + 1
    w_out = (wd + left + right - dil[1] * (kw - 1) - 1) // stride[1] + 1
    p = ffi.new("struct cvc_conv *", dict(
        n=n, c_in=c_in, h_in=h, w_in=wd, c_out=c_out, h_out=h_out, w_out=w_out, kh=kh, kw=kw,
        stride_h=stride[0], stride_w=stride[1], dil_h=dil[0], dil_w=dil[1], pad_top=top,
        pad_left=left, groups=groups, act=0, ctl=ctl or ffi.NULL))
    keep = []
    out = np.zeros((n, c_out, h_out, w_out), np.int8)
    x, w = np.ascontiguousarray(x), np.ascontiguousarray(w)
    b = None if bias is None else np.ascontiguousarray(bias, np.int32)
    ret = lib.cvc_conv2d_s8(p, _quant(ffi, q, keep), _buf(ffi, "int8_t[]", x),
                            _buf(ffi, "int8_t[]", w), _buf(ffi, "int32_t[]", b),
                            _buf(ffi, "int8_t[]", out))
    assert ret == expect
    return out


def lib_fc_s8(cvc, x, w, bias, q):
    ffi, lib = cvc
    n, c_in = x.shape
    c_out = w.shape[0]
    p = ffi.new("struct cvc_fc *", dict(n=n, c_in=c_in, c_out=c_out))
    keep = []
    out = np.zeros((n, c_out), np.int8)
    b = None if bias is None else np.ascontiguousarray(bias, np.int32)
    assert lib.cvc_fc_s8(p, _quant(ffi, q, keep), _buf(ffi, "int8_t[]", np.ascontiguousarray(x)),
                         _buf(ffi, "int8_t[]", np.ascontiguousarray(w)),
                         _buf(ffi, "int32_t[]", b), _buf(ffi, "int8_t[]", out)) == 0
    return out


def isas(lib) -> list[int]:
    """The ISA paths this CPU runs (cvc_set_isa caps at what the CPU has)."""
    found = []
    try:
        for isa in (lib.CVC_ISA_PORTABLE, lib.CVC_ISA_AVX2, lib.CVC_ISA_AVX512_VNNI):
            if lib.cvc_set_isa(isa) == isa:
                found.append(isa)
    finally:
        lib.cvc_set_isa(0)
    return found


# --- random cases ------------------------------------------------------------------

def random_quant(rng, c_out, kind="typical", lut=False):
    """Zero points, rescale records and clamp; kind picks extreme settings."""
    if kind == "extreme":
        zp_in, zp_out = rng.choice([-128, 127]), rng.choice([-128, 127])
        m = rng.choice([0, 1, 2 ** 31 - 1, 2 ** 30], c_out)
        s = rng.choice([1, 2, 31, 32, 61, 62], c_out)
    elif kind == "fine":  # realistic conv scales: m ~ 2^-8 .. 2^-12
        zp_in, zp_out = int(rng.integers(-128, 128)), int(rng.integers(-128, 128))
        m = rng.integers(2 ** 30, 2 ** 31, c_out)
        s = rng.integers(36, 44, c_out)
    else:
        zp_in, zp_out = int(rng.integers(-128, 128)), int(rng.integers(-128, 128))
        m = rng.integers(0, 2 ** 31, c_out)
        s = rng.integers(1, 63, c_out)
    lo = int(rng.integers(-128, 0)) if rng.random() < 0.5 else -128
    hi = int(rng.integers(0, 128)) if rng.random() < 0.5 else 127
    return dict(zp_in=int(zp_in), zp_out=int(zp_out), act_min=lo, act_max=hi,
                requant=np.stack([m, s], 1).astype(np.int64),
                lut=rng.integers(-128, 128, 256).astype(np.int8) if lut else None)


def s8(rng, *shape):
    return rng.integers(-128, 128, shape).astype(np.int8)


# (id, n, c_in, c_out, hw, k, stride, dil, pads (t, b, l, r), groups)
CASES = [
    ("1x1", 1, 16, 32, (7, 9), (1, 1), (1, 1), (1, 1), (0, 0, 0, 0), 1),
    ("1x1-odd", 2, 13, 7, (5, 11), (1, 1), (1, 1), (1, 1), (0, 0, 0, 0), 1),
    ("1x1-stride2", 1, 24, 40, (14, 14), (1, 1), (2, 2), (1, 1), (0, 0, 0, 0), 1),
    ("1x1-padded", 1, 8, 12, (6, 5), (1, 1), (1, 1), (1, 1), (1, 2, 2, 1), 1),
    ("3x3", 1, 16, 24, (15, 17), (3, 3), (1, 1), (1, 1), (1, 1, 1, 1), 1),
    ("3x3-s2", 2, 32, 64, (16, 16), (3, 3), (2, 2), (1, 1), (1, 1, 1, 1), 1),
    ("3x3-s2-asym", 1, 8, 16, (15, 16), (3, 3), (2, 2), (1, 1), (0, 1, 0, 1), 1),
    ("stem7x7", 1, 3, 16, (32, 31), (7, 7), (2, 2), (1, 1), (3, 3, 3, 3), 1),
    ("dilated", 1, 6, 10, (17, 13), (3, 3), (1, 1), (2, 3), (2, 2, 3, 3), 1),
    ("5x3-s31", 3, 5, 9, (19, 14), (5, 3), (3, 1), (1, 2), (2, 0, 1, 4), 1),
    ("groups2", 1, 16, 24, (9, 9), (3, 3), (1, 1), (1, 1), (1, 1, 1, 1), 2),
    ("groups4-odd", 2, 12, 20, (7, 10), (3, 1), (1, 2), (1, 1), (1, 0, 0, 1), 4),
    ("dw3x3", 1, 32, 32, (14, 14), (3, 3), (1, 1), (1, 1), (1, 1, 1, 1), 32),
    ("dw3x3-s2", 2, 24, 24, (15, 16), (3, 3), (2, 2), (1, 1), (1, 1, 1, 1), 24),
    ("dw5x5-dil", 1, 8, 8, (13, 11), (5, 5), (1, 1), (2, 1), (4, 4, 2, 2), 8),
    ("dw-mult3", 1, 5, 15, (9, 12), (3, 3), (2, 1), (1, 1), (1, 1, 1, 1), 5),
    ("dw-s3", 1, 4, 4, (20, 20), (7, 5), (3, 3), (1, 2), (3, 3, 4, 4), 4),
    ("single-channel", 2, 1, 6, (11, 8), (3, 3), (1, 1), (1, 1), (1, 1, 1, 1), 1),
    ("wide-k", 1, 260, 9, (4, 5), (3, 3), (1, 1), (1, 1), (1, 1, 1, 1), 1),
    ("tiny", 1, 1, 1, (1, 1), (1, 1), (1, 1), (1, 1), (0, 0, 0, 0), 1),
    ("many-positions", 1, 4, 5, (70, 90), (3, 3), (1, 1), (1, 1), (1, 1, 1, 1), 1),
]


def case_data(case, seed, kind="typical", lut=False, bias_kind="random"):
    _, n, c_in, c_out, hw, k, stride, dil, pads, groups = case
    rng = np.random.default_rng(seed)
    x = s8(rng, n, c_in, *hw)
    w = s8(rng, c_out, c_in // groups, *k)
    if bias_kind == "none":
        bias = None
    elif bias_kind == "edge":  # near the int32 limits: the sums wrap
        bias = rng.choice([2 ** 31 - 1, -2 ** 31, 2 ** 31 - 1000, -2 ** 31 + 1000], c_out)
    else:
        bias = rng.integers(-2 ** 20, 2 ** 20, c_out)
    q = random_quant(rng, c_out, kind, lut)
    return x, w, None if bias is None else bias.astype(np.int32), q, \
        dict(stride=stride, pads=pads, dil=dil, groups=groups)


@pytest.mark.parametrize("kind, lut, bias_kind", [
    ("typical", False, "random"), ("fine", True, "none"), ("extreme", False, "edge"),
    ("fine", False, "edge")], ids=["typical", "fine-lut-nobias", "extreme-edge", "fine-edge"])
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_conv2d_s8_is_exact(cvc, case, kind, lut, bias_kind) -> None:
    """Every ISA path gives the model's bytes exactly."""
    ffi, lib = cvc
    x, w, bias, q, geo = case_data(case, hash((case[0], kind)) % 2 ** 32, kind, lut, bias_kind)
    expected = np_conv2d_s8(x, w, bias, q, **geo)
    try:
        for isa in isas(lib):
            assert lib.cvc_set_isa(isa) == isa
            got = lib_conv2d_s8(cvc, x, w, bias, q, **geo)
            mism = np.argwhere(got != expected)
            assert mism.size == 0, f"isa {isa}: {len(mism)} mismatches, first at {mism[:3]}"
    finally:
        lib.cvc_set_isa(0)


def test_random_shapes_are_exact(cvc) -> None:
    """80 random geometries (seeded): odd sizes, groups, strides, dilations, pads."""
    ffi, lib = cvc
    rng = np.random.default_rng(2026)
    for i in range(80):
        groups = int(rng.choice([1, 1, 2, 3]))
        dw = rng.random() < 0.25
        c_in = int(rng.integers(1, 9)) * (1 if dw else groups)
        c_out = c_in * int(rng.integers(1, 3)) if dw else groups * int(rng.integers(1, 9))
        if dw:
            groups = c_in
        k = (int(rng.integers(1, 6)), int(rng.integers(1, 6)))
        stride = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
        dil = (int(rng.integers(1, 3)), int(rng.integers(1, 3)))
        pads = tuple(int(v) for v in rng.integers(0, 4, 4))
        hw = tuple(int(max(dil[j] * (k[j] - 1) + 1 - pads[j * 2] - pads[j * 2 + 1], 1)
                       + rng.integers(0, 12)) for j in range(2))
        case = ("r", int(rng.integers(1, 3)), c_in, c_out, hw, k, stride, dil, pads, groups)
        kind = str(rng.choice(["typical", "fine", "extreme"]))
        x, w, bias, q, geo = case_data(case, i, kind, lut=bool(rng.random() < 0.3),
                                       bias_kind=str(rng.choice(["random", "none", "edge"])))
        expected = np_conv2d_s8(x, w, bias, q, **geo)
        got = lib_conv2d_s8(cvc, x, w, bias, q, **geo)
        assert np.array_equal(got, expected), (i, case)


def test_accumulators_near_int32_limits(cvc) -> None:
    """Large fan-in with x - zp = -255 and w = -128 (sums of ~1e9), and biases that
    push them past 2**31: the accumulator wraps as two's complement."""
    ffi, lib = cvc
    c_in, c_out = 512, 8
    x = np.full((1, c_in, 6, 6), -128, np.int8)
    w = np.full((c_out, c_in, 5, 5), -128, np.int8)
    w[1::2] = 127
    bias = np.array([2 ** 31 - 1, -2 ** 31, 2 ** 31 - 10 ** 9, -2 ** 31 + 10 ** 9, 0, 1, -1, 7],
                    np.int32)
    q = dict(zp_in=127, zp_out=0, act_min=-128, act_max=127, lut=None,
             requant=np.array([[2 ** 31 - 1, 38]] * c_out))
    acc = np_conv_acc(x, w, bias, 127, (1, 1), (2, 2, 2, 2), (1, 1), 1)
    assert acc.max() > 2 ** 30 and acc.min() < -2 ** 30
    # the raw sum leaves int32 for some channels: the model wraps it
    raw = np_conv_acc(x, w, None, 127, (1, 1), (2, 2, 2, 2), (1, 1), 1) + \
        bias.astype(np.int64).reshape(1, -1, 1, 1)
    assert (raw != acc).any()
    expected = np_conv2d_s8(x, w, bias, q, pads=(2, 2, 2, 2))
    try:
        for isa in isas(lib):
            lib.cvc_set_isa(isa)
            assert np.array_equal(lib_conv2d_s8(cvc, x, w, bias, q, pads=(2, 2, 2, 2)), expected)
    finally:
        lib.cvc_set_isa(0)


def test_sliced_fan_in_is_exact(cvc) -> None:
    """A fan-in so large (c_in 1100 x 16x16 = 281600) that not even one chunk of
    positions fits CVC_COL_BYTES: slices of K accumulate in int32 tiles."""
    ffi, lib = cvc
    rng = np.random.default_rng(5)
    x = s8(rng, 1, 1100, 17, 16)
    w = s8(rng, 6, 1100, 16, 16)
    bias = rng.integers(-2 ** 31, 2 ** 31, 6).astype(np.int32)
    q = random_quant(rng, 6, "fine")
    expected = np_conv2d_s8(x, w, bias, q, pads=(1, 0, 0, 0))
    try:
        for isa in isas(lib):
            lib.cvc_set_isa(isa)
            assert np.array_equal(lib_conv2d_s8(cvc, x, w, bias, q, pads=(1, 0, 0, 0)), expected)
    finally:
        lib.cvc_set_isa(0)


def test_large_depthwise_planes_go_by_im2col_exactly(cvc) -> None:
    """A depthwise plane beyond CVC_PLANE_BYTES takes the GEMM path: same bytes."""
    ffi, lib = cvc
    rng = np.random.default_rng(8)
    x = s8(rng, 1, 2, 2100, 2100)
    w = s8(rng, 2, 1, 3, 3)
    q = random_quant(rng, 2, "fine")
    got = lib_conv2d_s8(cvc, x, w, None, q, pads=(1, 1, 1, 1), groups=2)
    # check a band of rows against the model (the whole plane is slow in numpy)
    band = np_conv2d_s8(x[:, :, :40], w, None, q, pads=(1, 0, 1, 1), groups=2)
    assert np.array_equal(got[:, :, :39], band[:, :, :39])


@pytest.mark.parametrize("k", [22, 23], ids=["22x22-float-filter", "23x23-uint32-filter"])
def test_depthwise_large_kernels_are_exact(cvc, k) -> None:
    """The int8 depthwise filter runs in float32 up to 514 taps (every partial sum
    of products of at most 255 * 128 is an integer below 2**24), in uint32 above:
    both exact, here with the largest magnitudes (x - zp = -255, w = -128)."""
    ffi, lib = cvc
    rng = np.random.default_rng(k)
    x = np.full((1, 3, 30, 28), -128, np.int8)
    x[0, 2] = s8(rng, 30, 28)
    w = np.full((3, 1, k, k), -128, np.int8)
    w[2] = s8(rng, 1, k, k)
    bias = np.array([2 ** 31 - 1, -2 ** 31, 5], np.int32)
    q = dict(zp_in=127, zp_out=3, act_min=-128, act_max=127, lut=None,
             requant=np.array([[2 ** 31 - 1, 40], [2 ** 30, 33], [123456789, 50]]))
    geo = dict(pads=(k // 2, k // 2, k // 2 - 1, k // 2), dil=(1, 1), groups=3)
    assert np.abs(np_conv_acc(x, w, None, 127, (1, 1), geo["pads"], (1, 1), 3)).max() > 2 ** 23
    expected = np_conv2d_s8(x, w, bias, q, **geo)
    try:
        for isa in isas(lib):
            lib.cvc_set_isa(isa)
            assert np.array_equal(lib_conv2d_s8(cvc, x, w, bias, q, **geo), expected)
    finally:
        lib.cvc_set_isa(0)


@pytest.mark.parametrize("threads", [1, 2])
def test_thread_counts_agree_exactly(cvc, threads) -> None:
    ffi, lib = cvc
    rng = np.random.default_rng(threads)
    cases = [c for c in CASES if c[0] in ("3x3-s2", "dw3x3-s2", "1x1", "many-positions")]
    ctl = ffi.new("struct cvc_ctl *", dict(threads=threads))
    for case in cases:
        x, w, bias, q, geo = case_data(case, 77, "fine")
        x = np.concatenate([x] * 2)  # more work, so that the threads split it
        expected = np_conv2d_s8(x, w, bias, q, **geo)
        assert np.array_equal(lib_conv2d_s8(cvc, x, w, bias, q, ctl=ctl, **geo), expected)
    del rng


def test_threads_split_large_layers_identically(cvc) -> None:
    """A layer large enough that 2 threads really split it (GEMM and depthwise)."""
    ffi, lib = cvc
    rng = np.random.default_rng(3)
    x = s8(rng, 1, 64, 56, 56)
    outs = {}
    for name, w, geo in [("gemm", s8(rng, 64, 64, 3, 3), dict(pads=(1, 1, 1, 1))),
                         ("dw", s8(rng, 64, 1, 3, 3), dict(pads=(1, 1, 1, 1), groups=64))]:
        q = random_quant(rng, 64, "fine")
        bias = rng.integers(-2 ** 20, 2 ** 20, 64).astype(np.int32)
        for t in (1, 2):
            ctl = ffi.new("struct cvc_ctl *", dict(threads=t))
            outs[name, t] = lib_conv2d_s8(cvc, x, w, bias, q, ctl=ctl, **geo)
        assert np.array_equal(outs[name, 1], outs[name, 2])
        assert np.array_equal(outs[name, 1], np_conv2d_s8(x, w, bias, q, **geo))


@pytest.mark.parametrize("shape", [
    dict(c_in=512, hw=96, c_out=512, k=3, groups=1),
    dict(c_in=1024, hw=96, c_out=1024, k=15, groups=1024),
], ids=["gemm", "depthwise"])
def test_cancel_stops_an_int8_call_within_a_tile(cvc, shape) -> None:
    ffi, lib = cvc
    c_in, hw, c_out, k, groups = (shape[a] for a in ("c_in", "hw", "c_out", "k", "groups"))
    x = np.ones((1, c_in, hw, hw), np.int8)
    w = np.ones((c_out, c_in // groups, k, k), np.int8)
    q = dict(zp_in=0, zp_out=5, act_min=-128, act_max=127, lut=None,
             requant=np.array([[2 ** 30, 31]] * c_out))
    cancel = CancelAtOnce(ffi)
    t0 = time.monotonic()
    out = lib_conv2d_s8(cvc, x, w, None, q, ctl=cancel.ctl, groups=groups,
                        expect=lib.CVC_CANCELLED)
    took = time.monotonic() - t0
    assert 1 <= cancel.polls <= 4 and took < 0.5, (cancel.polls, took)
    assert (out == 0).mean() > 0.5, "most of the output should not have been computed"


def test_isa_selection(cvc) -> None:
    """cvc_set_isa caps the ISA; 0 goes back to the best; the portable path always exists."""
    ffi, lib = cvc
    try:
        best = lib.cvc_set_isa(0)
        assert best == lib.cvc_isa() >= lib.CVC_ISA_PORTABLE
        assert lib.cvc_set_isa(lib.CVC_ISA_PORTABLE) == lib.CVC_ISA_PORTABLE
        assert lib.cvc_isa() == lib.CVC_ISA_PORTABLE
        assert lib.cvc_set_isa(lib.CVC_ISA_AVX512_VNNI) == best
    finally:
        lib.cvc_set_isa(0)


def test_isa_environment_variable(cvc) -> None:
    """CVC_ISA=portable in the environment caps the ISA (read once per process)."""
    import subprocess
    import sys
    from test_compute import TOP, header_cdef  # noqa: F401
    proc = subprocess.run(["bash", str(TOP / "qemu" / "compute" / "build.sh")],
                          capture_output=True, text=True, check=True)
    code = ("import cffi, sys; ffi = cffi.FFI(); ffi.cdef(sys.argv[1]); "
            "lib = ffi.dlopen(sys.argv[2]); print(lib.cvc_isa())")
    env = {**__import__("os").environ, "CVC_ISA": "portable"}
    out = subprocess.run([sys.executable, "-c", code, header_cdef(), proc.stdout.strip()],
                         capture_output=True, text=True, env=env, check=True).stdout
    assert int(out) == 1


# --- FC -------------------------------------------------------------------------------

# n = 1: the VNNI path reads the weights unpacked (fc_gemv_vnni), with a
# masked tail when c_in is not a multiple of 64
@pytest.mark.parametrize("n, c_in, c_out", [(1, 1280, 1000), (3, 17, 5), (16, 512, 10),
                                            (70, 33, 65), (1, 1, 1), (1, 197, 33),
                                            (1, 1024, 1000)])
def test_fc_s8_is_exact(cvc, n, c_in, c_out) -> None:
    ffi, lib = cvc
    rng = np.random.default_rng(n * 1000 + c_in)
    x, w = s8(rng, n, c_in), s8(rng, c_out, c_in)
    for kind, bias in [("fine", rng.integers(-2 ** 20, 2 ** 20, c_out)),
                       ("extreme", rng.choice([2 ** 31 - 1, -2 ** 31], c_out)), ("typical", None)]:
        q = random_quant(rng, c_out, kind, lut=kind == "typical")
        b = None if bias is None else bias.astype(np.int32)
        expected = np_fc_s8(x, w, b, q)
        try:
            for isa in isas(lib):
                lib.cvc_set_isa(isa)
                assert np.array_equal(lib_fc_s8(cvc, x, w, b, q), expected), (kind, isa)
        finally:
            lib.cvc_set_isa(0)


@pytest.mark.parametrize("n, c_in, c_out", [(5, 40, 24), (1, 1024, 1000), (1, 77, 9)])
def test_fc_s8_equals_the_1x1_conv(cvc, n, c_in, c_out) -> None:
    """n = 1: the convolution goes to the FC's kernel (a classifier written as a
    1x1 convolution); both must equal the spec's arithmetic on every ISA."""
    ffi, lib = cvc
    rng = np.random.default_rng(4)
    x, w = s8(rng, n, c_in), s8(rng, c_out, c_in)
    bias = rng.integers(-2 ** 16, 2 ** 16, c_out).astype(np.int32)
    q = random_quant(rng, c_out, "fine", lut=True)
    expected = np_fc_s8(x, w, bias, q)
    try:
        for isa in isas(lib):
            lib.cvc_set_isa(isa)
            conv = lib_conv2d_s8(cvc, x.reshape(n, c_in, 1, 1), w.reshape(c_out, c_in, 1, 1),
                                 bias, q)
            assert np.array_equal(conv.reshape(n, c_out), expected), isa
            assert np.array_equal(lib_fc_s8(cvc, x, w, bias, q), expected), isa
    finally:
        lib.cvc_set_isa(0)


# --- float: FC and the new activations -------------------------------------------------

def np_act(y, act, alpha=0.0, beta=0.0):
    y = y.astype(np.float64)
    with np.errstate(over="ignore"):
        if act == 1:
            return np.where(y < 0, 0, y)
        if act == 2:
            return np.where(y < 0, 0, np.where(y > 6, 6, y))
        if act == 3:
            return np.where(y < 0, alpha * y, y)
        if act == 4:
            return 1 / (1 + np.exp(-y))
        hs = np.clip(alpha * y + beta, 0, 1)
        hs = np.where(np.isnan(y), np.nan, hs)
        if act == 5:
            return hs
        if act == 6:
            return y * hs
    return y


ACTS = [(0, 0, 0), (1, 0, 0), (2, 0, 0), (3, 0.1, 0), (4, 0, 0), (5, 0.2, 0.5), (6, 1 / 6, 0.5)]


@pytest.mark.parametrize("act, alpha, beta", ACTS, ids=lambda v: str(v))
@pytest.mark.parametrize("n, c_in, c_out", [(1, 300, 70), (7, 64, 33)])
def test_fc_float(cvc, n, c_in, c_out, act, alpha, beta) -> None:
    ffi, lib = cvc
    rng = np.random.default_rng(c_in + act)
    x, w, b = rand(rng, n, c_in), rand(rng, c_out, c_in), rand(rng, c_out)
    x[0, 0] = np.nan if n > 1 else x[0, 0]
    out = np.full((n, c_out), -7, np.float32)
    p = ffi.new("struct cvc_fc *", dict(n=n, c_in=c_in, c_out=c_out, act=act, act_alpha=alpha,
                                        act_beta=beta))
    assert lib.cvc_fc(p, _ptr(ffi, x), _ptr(ffi, w), _ptr(ffi, b), _ptr(ffi, out)) == 0
    expected = np_act(x.astype(np.float64) @ w.T.astype(np.float64) + b, act, alpha, beta)
    np.testing.assert_allclose(out, expected, **tolerance(c_in))
    if n > 1:
        assert np.isnan(out[0]).all()  # NaN propagates through every activation


@pytest.mark.parametrize("act, alpha, beta", ACTS[3:], ids=lambda v: str(v))
@pytest.mark.parametrize("groups", [1, 8])
def test_conv2d_float_new_activations(cvc, act, alpha, beta, groups) -> None:
    ffi, lib = cvc
    rng = np.random.default_rng(act)
    x = rand(rng, 1, 8, 11, 10) * 4
    x[0, :, 3, 4] = np.nan
    w = rand(rng, 8, 8 // groups, 3, 3)
    b = rand(rng, 8)
    h_out, w_out = 11, 10
    p = ffi.new("struct cvc_conv *", dict(
        n=1, c_in=8, h_in=11, w_in=10, c_out=8, h_out=h_out, w_out=w_out, kh=3, kw=3,
        stride_h=1, stride_w=1, dil_h=1, dil_w=1, pad_top=1, pad_left=1, groups=groups,
        act=act, act_alpha=alpha, act_beta=beta))
    out = np.zeros((1, 8, h_out, w_out), np.float32)
    assert lib.cvc_conv2d(p, _ptr(ffi, x), _ptr(ffi, w), _ptr(ffi, b), _ptr(ffi, out)) == 0
    pre = lib_conv2d(cvc, x, w, b, pads=(1, 1, 1, 1), groups=groups)
    expected = np_act(pre, act, alpha, beta)
    assert np.array_equal(np.isnan(out), np.isnan(expected))
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)


def test_new_activations_match_pytorch_definitions() -> None:
    """np_act's hard-swish and hard-sigmoid are PyTorch's (alpha 1/6, beta 0.5)."""
    y = np.linspace(-8, 8, 161)
    np.testing.assert_allclose(np_act(y, 6, 1 / 6, 0.5), y * np.clip(y + 3, 0, 6) / 6,
                               atol=1e-12)
    np.testing.assert_allclose(np_act(y, 5, 1 / 6, 0.5), np.clip(y + 3, 0, 6) / 6, atol=1e-12)


# --- the model itself, and pyaccel.reference's golden model if present ---------------

def test_model_rescale_rounds_half_up() -> None:
    assert list(np_rescale([5, -5, 6, -6, 7, -7], 1, 1)) == [3, -2, 3, -3, 4, -3]
    assert np_rescale(-(2 ** 31), 2 ** 31 - 1, 62) == -1  # (-2^62 + 2^31 + 2^61) >> 62
    assert np_rescale(2 ** 31 - 1, 2 ** 31 - 1, 1) == ((2 ** 31 - 1) ** 2 + 1) // 2


def test_model_matches_naive_loops() -> None:
    rng = np.random.default_rng(9)
    x, w = s8(rng, 1, 4, 5, 6), s8(rng, 6, 2, 3, 2)
    bias = rng.integers(-100, 100, 6)
    acc = np_conv_acc(x, w, bias, -3, (2, 1), (1, 0, 1, 1), (1, 2), 2)
    xp = np.pad(x.astype(np.int64) + 3, ((0, 0), (0, 0), (1, 0), (1, 1)))
    for co in range(6):
        g = co // 3
        for oh in range(acc.shape[2]):
            for ow in range(acc.shape[3]):
                s = bias[co]
                for ci in range(2):
                    for ki in range(3):
                        for kj in range(2):
                            s += int(xp[0, g * 2 + ci, oh * 2 + ki, ow + 2 * kj]) * \
                                int(w[co, ci, ki, kj])
                assert acc[0, co, oh, ow] == s


def test_against_pyaccel_reference_golden_model(cvc) -> None:
    """If pyaccel.reference has int8 functions (rescale, conv2d_int8), they agree."""
    have = [name for name in ("rescale", "conv2d_int8") if callable(getattr(ref, name, None))]
    if not have:
        pytest.skip("pyaccel.reference has no int8 golden model yet")
    rng = np.random.default_rng(12)
    if "rescale" in have:
        v = rng.integers(-2 ** 31, 2 ** 31, 200)
        m = rng.integers(0, 2 ** 31, 200)
        s = rng.integers(1, 63, 200)
        got = np.array([int(ref.rescale(int(a), int(b), int(c))) for a, b, c in zip(v, m, s)])
        assert np.array_equal(got, np_rescale(v, m, s))
    if "conv2d_int8" in have:
        params = inspect.signature(ref.conv2d_int8).parameters
        case = CASES[5]
        x, w, bias, q, geo = case_data(case, 1, "fine")
        kwargs = {}
        for name, val in [("bias", bias), ("stride", geo["stride"]), ("padding", geo["pads"]),
                          ("pads", geo["pads"]), ("dilation", geo["dil"]),
                          ("groups", geo["groups"]), ("zp_in", q["zp_in"]),
                          ("zp_out", q["zp_out"]), ("act_min", q["act_min"]),
                          ("act_max", q["act_max"]), ("requant", q["requant"]),
                          ("lut", q["lut"])]:
            if name in params:
                kwargs[name] = val
        try:
            golden = ref.conv2d_int8(x, w, **kwargs)
        except TypeError as e:
            pytest.skip(f"pyaccel.reference.conv2d_int8 has another signature: {e}")
        expected = np_conv2d_s8(x, w, bias, q, **geo)
        assert np.array_equal(np.asarray(golden), expected)
        assert np.array_equal(lib_conv2d_s8(cvc, x, w, bias, q, **geo), expected)


# --- QUANTIZE (the device's v2 op calls cvc_quantize_s8) -----------------------------

def quantize_inputs(rng, n: int, scale: float) -> np.ndarray:
    """Random values around the int8 range, with the edge cases spread over it:
    exact halves (rint's ties to even), NaN, +-inf, -0.0, denormals and huge values."""
    x = (rng.uniform(-160, 160, n) * scale).astype(np.float32)
    halves = ((rng.integers(-140, 140, n) + np.float32(0.5)) * np.float32(scale))
    special = np.array([np.nan, np.inf, -np.inf, -0.0, 1e-45, -1e-45, 3e38, -3e38,
                        2.0 ** 24 * scale, -2.0 ** 25 * scale], np.float32)
    pick = rng.integers(0, 3, n)
    x = np.where(pick == 1, halves.astype(np.float32), x)
    x[pick == 2] = special[rng.integers(0, len(special), int((pick == 2).sum()))]
    return x


@pytest.mark.parametrize("n", [1, 15, 16, 17, 63, 1000, 4099])
@pytest.mark.parametrize("zp,lo,hi,lut", [(0, -128, 127, False), (-7, -7, 127, False),
                                          (100, -128, 127, True), (-128, -128, 0, False)])
def test_quantize_matches_the_golden_model(cvc, n, zp, lo, hi, lut) -> None:
    ffi, lib = cvc
    rng = np.random.default_rng(n * 131 + zp)
    scale = float(np.float32(rng.uniform(0.01, 0.2)))
    x = quantize_inputs(rng, n, scale)
    table = rng.integers(-128, 128, 256).astype(np.int8) if lut else None
    q = dict(requant=np.zeros(2, np.int32), lut=table, zp_in=0, zp_out=zp, act_min=lo,
             act_max=hi)
    keep: list = []
    out = np.zeros(n, np.int8)
    lib.cvc_quantize_s8(ffi.from_buffer("float[]", x), n, scale, _quant(ffi, q, keep),
                        ffi.from_buffer("int8_t[]", out))
    want = ref.quantize(x, scale, zp, act_min=lo, act_max=hi, lut=table)
    bad = np.flatnonzero(out != want)
    assert not bad.size, (f"{bad.size} of {n} differ, first x={x[bad[0]]!r}: "
                          f"{out[bad[0]]} != {want[bad[0]]}")
