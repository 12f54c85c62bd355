"""The int8 golden model of the convaccel device (hardware 2.0), bit for bit.

docs/hardware.md, "int8 arithmetic", is the specification; this module is its
executable form (numpy only; re-exported by :mod:`pyaccel.reference`). A
quantized tensor holds ``q`` in -128..127 with ``real = scale * (q - zp)``;
weights are symmetric int8 (zero point 0) with a scale per output channel,
biases int32 with scale ``s_in * s_w[c]``.

Every int8 op ends the same way: with its real-valued result ``r`` (an
integer, after the rescale),

    y = min(max(r + zp_out, act_min), act_max)      then, with a table,
    y = lut[y + 128]

``requant`` is the op's rescale records exactly as the device reads them: an
integer array of shape (k, 2), one ``(M, S)`` row per record (a single record
may be given as ``(M, S)``); :mod:`pyaccel.quant` computes them from the real
scales. ``rescale(v, M, S) = (v * M + 2^(S-1)) >> S`` in 64 bits, rounding
half up. The conv, FC and SCALE_SHIFT accumulators are int32 and wrap like
two's complement int32 (computed in int64, then wrapped); every other
intermediate is a 64-bit two's complement integer, as on the device: the
pooling sums (a global average pool of 4096 x 4096 exceeds 32 bits), ADD's
``a + b``, and rescale's product and sum, which wrap at 64 bits (only
records no compiler makes get there).

Zero points: ``zp_in`` is the descriptor's ``zp_in0`` for one-input ops;
``add_int8``/``mul_int8`` take ``zp_in0`` and ``zp_in1``.

    >>> import numpy as np
    >>> rescale(np.array([5, -5, 6, -6]), 1 << 30, 32).tolist()  # m = 1/4: 1.25 .. -1.5
    [1, -1, 2, -1]
    >>> quantize_multiplier(0.5)
    (1073741824, 31)
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple, Union

import numpy as np

from .reference import (ActivationSpec, IntPair, Padding, _activate, _conv_sum, _fc_input,
                        _mul_operand, _nchw, _pool, _same_shape, padding4, pair)

__all__ = ["ACC_BITS", "ADD_LEFT_SHIFT", "LUT_SIZE", "SHIFT_MAX", "SHIFT_MIN",
           "act_int8", "add_int8", "avg_pool2d_int8", "conv2d_int8", "dequantize", "fc_int8",
           "global_avg_pool2d_int8", "global_max_pool2d_int8", "linear_int8",
           "max_pool2d_int8", "mul_int8", "quantize", "quantize_multiplier", "rescale",
           "scale_shift_int8", "wrap_int32"]

ACC_BITS = 32                      # the accumulator wraps at 32 bits
ADD_LEFT_SHIFT = 20                # int8 ADD scales both inputs by 2^20 first
SHIFT_MIN, SHIFT_MAX = 1, 62       # a rescale record's S
MULTIPLIER_MAX = 2 ** 31 - 1       # a rescale record's M: 0 .. 2^31 - 1
LUT_SIZE = 256
_INT32_MIN, _INT32_MAX = -2 ** 31, 2 ** 31 - 1

Requant = Union[Sequence[int], Sequence[Sequence[int]], np.ndarray]


# --- the arithmetic -----------------------------------------------------------------

def wrap_int32(v: np.ndarray) -> np.ndarray:
    """v modulo 2^32 as a signed int32 value (two's complement), int64 array."""
    v = np.asarray(v, np.int64)
    return ((v + 2 ** 31) & 0xFFFFFFFF) - 2 ** 31


def _integers(v: np.ndarray, name: str) -> np.ndarray:
    v = np.asarray(v)
    if not np.issubdtype(v.dtype, np.integer):
        raise ValueError(f"{name} must be integers, got dtype {v.dtype}")
    return v.astype(np.int64)


def rescale(v: np.ndarray, multiplier: Union[int, np.ndarray],
            shift: Union[int, np.ndarray]) -> np.ndarray:
    """``(v * M + 2^(S-1)) >> S`` in int64, the shift arithmetic: ``v * M / 2^S``
    rounded half up (towards +infinity). TOSA RESCALE with scale32, single round.

    v: int64 values (an accumulator, a pooling sum); M: 0 .. 2^31 - 1; S:
    1 .. 62; M and S broadcast against v (e.g. per channel). For |v| <= 2^32
    nothing overflows; beyond, the product and sum wrap at 64 bits as the
    device's do. Returns int64.
    """
    v = _integers(v, "rescale input v")
    m = _integers(multiplier, "rescale multiplier M")
    s = _integers(shift, "rescale shift S")
    if m.size and (m.min() < 0 or m.max() > MULTIPLIER_MAX):
        raise ValueError(f"rescale multiplier M must be in 0..2^31-1, got {m.min()}..{m.max()}")
    if s.size and (s.min() < SHIFT_MIN or s.max() > SHIFT_MAX):
        raise ValueError(f"rescale shift S must be in {SHIFT_MIN}..{SHIFT_MAX}, "
                         f"got {s.min()}..{s.max()}")
    with np.errstate(over="ignore"):             # wraps at 64 bits, like the device
        return (v * m + (np.int64(1) << (s - 1))) >> s


def quantize_multiplier(m: float) -> Tuple[int, int]:
    """The rescale record ``(M, S)`` of a real factor ``m > 0``, as the spec says.

    ``m = f * 2^e`` with f in [0.5, 1) (math.frexp), ``M = round(f * 2^31)``
    (half up, exact), ``S = 31 - e``; a rounding up to 2^31 gives ``M = 2^30``
    and ``S - 1``. Then ``M / 2^S`` is m within a relative 2^-31. Raises
    ValueError unless m is finite and positive and S lands in 1..62 (factors
    from about 2^-32 to 2^30).
    """
    value = float(m)
    if not (np.isfinite(value) and value > 0):
        raise ValueError(f"a rescale factor must be finite and > 0, got {m!r}")
    f, e = np.frexp(value)
    # f * 2^53 is an integer (f has a 53-bit significand): round half up at bit 22.
    mult = (int(f * 2.0 ** 53) + (1 << 21)) >> 22
    shift = 31 - int(e)
    if mult == 1 << 31:
        mult, shift = 1 << 30, shift - 1
    if not SHIFT_MIN <= shift <= SHIFT_MAX:
        raise ValueError(f"the rescale factor {value!r} needs a shift of {shift}, outside "
                         f"{SHIFT_MIN}..{SHIFT_MAX}: the device represents factors from "
                         "about 2^-32 to 2^30 only")
    return mult, shift


# --- argument checks ---------------------------------------------------------------

def _int8(x: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype != np.int8:
        raise ValueError(f"{name} must be int8, got dtype {x.dtype}")
    return x


def _zero_point(zp: int, name: str) -> int:
    if int(zp) != zp or not -128 <= zp <= 127:
        raise ValueError(f"{name} must be an int in -128..127, got {zp!r}")
    return int(zp)


def _bias(bias: Optional[np.ndarray], c: int, name: str = "bias") -> np.ndarray:
    if bias is None:
        return np.zeros(c, np.int64)
    b = np.asarray(bias)
    if b.shape != (c,):
        raise ValueError(f"{name} must have shape ({c},), one int32 per channel, got {b.shape}")
    b = _integers(b, name)
    if b.size and (b.min() < _INT32_MIN or b.max() > _INT32_MAX):
        raise ValueError(f"{name} must be int32 values, got {b.min()}..{b.max()}")
    return b


def _records(requant: Requant, count: int, op: str) -> Tuple[np.ndarray, np.ndarray]:
    """requant as (M, S) int64 arrays of ``count`` records; checks the ranges."""
    r = _integers(requant, f"{op} requant")
    if count == 1 and r.shape == (2,):
        r = r.reshape(1, 2)
    if r.shape != (count, 2):
        raise ValueError(f"{op} needs {count} rescale record(s), an array of shape ({count}, 2) "
                         f"of (M, S), got shape {r.shape}")
    m, s = r[:, 0], r[:, 1]
    if m.min() < 0 or m.max() > MULTIPLIER_MAX:
        raise ValueError(f"{op}: a rescale multiplier M outside 0..2^31-1: {m.tolist()}")
    if s.min() < SHIFT_MIN or s.max() > SHIFT_MAX:
        raise ValueError(f"{op}: a rescale shift S outside {SHIFT_MIN}..{SHIFT_MAX}: "
                         f"{s.tolist()}")
    return m, s


def _finish(r: np.ndarray, zp_out: int, act_min: int, act_max: int,
            lut: Optional[np.ndarray]) -> np.ndarray:
    """``y = min(max(r + zp_out, act_min), act_max)``, then ``lut[y + 128]``: int8."""
    zp_out = _zero_point(zp_out, "zp_out")
    lo, hi = _zero_point(act_min, "act_min"), _zero_point(act_max, "act_max")
    if lo > hi:
        raise ValueError(f"act_min ({lo}) must not be above act_max ({hi})")
    y = np.clip(np.asarray(r, np.int64) + zp_out, lo, hi)
    if lut is not None:
        table = _integers(lut, "lut")
        if table.shape != (LUT_SIZE,) or table.min() < -128 or table.max() > 127:
            raise ValueError(f"lut must be {LUT_SIZE} int8 values, got shape {table.shape}")
        y = table[y + 128]
    return y.astype(np.int8)


# --- the ops ---------------------------------------------------------------------

def conv2d_int8(x: np.ndarray, weight: np.ndarray, bias: Optional[np.ndarray] = None,
                stride: IntPair = 1, padding: Padding = 0, dilation: IntPair = 1,
                groups: int = 1, *, requant: Requant, zp_in: int = 0, zp_out: int = 0,
                act_min: int = -128, act_max: int = 127,
                lut: Optional[np.ndarray] = None) -> np.ndarray:
    """int8 CONV: ``acc = bias[c] + sum((x - zp_in) * w)`` wrapped to int32,
    ``y = clamp(rescale(acc, M[c], S[c]) + zp_out)`` (then the lut).

    Geometry as :func:`pyaccel.reference.conv2d`; padding adds real zeros
    (``x - zp_in = 0`` there). x, weight int8; bias int32 (C_out,) or None;
    requant: (C_out, 2) records, ``m[c] = s_in * s_w[c] / s_out``.
    """
    x, weight = _int8(x, "x"), _nchw(_int8(weight, "weight"), "weight")
    zp_in = _zero_point(zp_in, "zp_in")
    c_out = weight.shape[0]
    b = _bias(bias, c_out)
    m, s = _records(requant, c_out, "conv2d_int8")
    acc = _conv_sum(x.astype(np.int64) - zp_in, weight, stride, padding, dilation, groups,
                    np.int64)
    acc = wrap_int32(acc + b[None, :, None, None])
    r = rescale(acc, m[None, :, None, None], s[None, :, None, None])
    return _finish(r, zp_out, act_min, act_max, lut)


def fc_int8(x: np.ndarray, weight: np.ndarray, bias: Optional[np.ndarray] = None, *,
            requant: Requant, zp_in: int = 0, zp_out: int = 0, act_min: int = -128,
            act_max: int = 127, lut: Optional[np.ndarray] = None) -> np.ndarray:
    """int8 FC: ``acc[n, o] = bias[o] + sum_c((x[n, c] - zp_in) * w[o, c])`` wrapped
    to int32, ``y = clamp(rescale(acc, M[o], S[o]) + zp_out)`` (then the lut).

    x: int8 (N, C_in) or (N, C_in, 1, 1), the output has its rank; weight int8
    (C_out, C_in); bias int32 (C_out,) or None; requant (C_out, 2).
    """
    x2 = _fc_input(_int8(x, "x"))
    weight = _int8(weight, "weight")
    if weight.ndim != 2 or weight.shape[1] != x2.shape[1]:
        raise ValueError(f"fc weight must be (C_out, C_in) with C_in = {x2.shape[1]}, "
                         f"got shape {weight.shape}")
    c_out = weight.shape[0]
    zp_in = _zero_point(zp_in, "zp_in")
    b = _bias(bias, c_out)
    m, s = _records(requant, c_out, "fc_int8")
    acc = wrap_int32((x2.astype(np.int64) - zp_in) @ weight.astype(np.int64).T + b)
    y = _finish(rescale(acc, m, s), zp_out, act_min, act_max, lut)
    return y if np.ndim(x) == 2 else y.reshape(y.shape + (1, 1))


linear_int8 = fc_int8


def scale_shift_int8(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, *,
                     requant: Requant, zp_in: int = 0, zp_out: int = 0, act_min: int = -128,
                     act_max: int = 127, lut: Optional[np.ndarray] = None) -> np.ndarray:
    """int8 SCALE_SHIFT: ``acc = (x - zp_in) * w[c] + bias[c]`` wrapped to int32,
    ``y = clamp(rescale(acc, M[c], S[c]) + zp_out)`` (then the lut).

    x int8 (N, C, H, W); weight int8 (C,); bias int32 (C,); requant (C, 2),
    ``m[c] = s_in * s_w[c] / s_out``.
    """
    x = _nchw(_int8(x, "x"))
    c = x.shape[1]
    w = _int8(weight, "weight")
    if w.shape != (c,):
        raise ValueError(f"weight must have shape ({c},), one int8 per channel, got {w.shape}")
    b = _bias(bias, c)
    zp_in = _zero_point(zp_in, "zp_in")
    m, s = _records(requant, c, "scale_shift_int8")
    per_c = (slice(None), None, None)
    acc = wrap_int32((x.astype(np.int64) - zp_in) * w.astype(np.int64)[per_c] + b[per_c])
    return _finish(rescale(acc, m[per_c], s[per_c]), zp_out, act_min, act_max, lut)


def add_int8(x0: np.ndarray, x1: np.ndarray, *, requant: Requant, zp_in0: int = 0,
             zp_in1: int = 0, zp_out: int = 0, act_min: int = -128, act_max: int = 127,
             lut: Optional[np.ndarray] = None) -> np.ndarray:
    """int8 ADD of two (N, C, H, W) tensors of one shape:

        a = rescale((x0 - zp_in0) * 2^20, M0, S0)
        b = rescale((x1 - zp_in1) * 2^20, M1, S1)
        y = clamp(rescale(a + b, M2, S2) + zp_out)        (then the lut)

    requant: 3 records, ``m0 = s0 / (2 max(s0, s1))``, ``m1 = s1 / (2 max(s0, s1))``,
    ``m2 = 2 max(s0, s1) / (2^20 s_out)``.
    """
    x0, x1 = _same_shape(_int8(x0, "x0"), _int8(x1, "x1"), "add_int8")
    zp0, zp1 = _zero_point(zp_in0, "zp_in0"), _zero_point(zp_in1, "zp_in1")
    m, s = _records(requant, 3, "add_int8")
    a = rescale((x0.astype(np.int64) - zp0) << ADD_LEFT_SHIFT, m[0], s[0])
    b = rescale((x1.astype(np.int64) - zp1) << ADD_LEFT_SHIFT, m[1], s[1])
    with np.errstate(over="ignore"):             # a 64-bit sum, as on the device
        total = a + b
    return _finish(rescale(total, m[2], s[2]), zp_out, act_min, act_max, lut)


def mul_int8(x0: np.ndarray, x1: np.ndarray, *, requant: Requant, zp_in0: int = 0,
             zp_in1: int = 0, zp_out: int = 0, act_min: int = -128, act_max: int = 127,
             lut: Optional[np.ndarray] = None) -> np.ndarray:
    """int8 MUL: ``y = clamp(rescale((x0 - zp_in0) * (x1 - zp_in1), M, S) + zp_out)``
    (then the lut); x1 has x0's shape or is (N, C, 1, 1) (BCAST). requant: 1
    record, ``m = s0 * s1 / s_out``.
    """
    x0, x1 = _mul_operand(_int8(x0, "x0"), _int8(x1, "x1"), "mul_int8")
    zp0, zp1 = _zero_point(zp_in0, "zp_in0"), _zero_point(zp_in1, "zp_in1")
    m, s = _records(requant, 1, "mul_int8")
    prod = (x0.astype(np.int64) - zp0) * (x1.astype(np.int64) - zp1)
    return _finish(rescale(prod, m[0], s[0]), zp_out, act_min, act_max, lut)


def _pool_padding_below_kernel(kernel_size: IntPair, padding: Padding) -> None:
    kh, kw = pair(kernel_size, "kernel_size")
    top, bottom, left, right = padding4(padding)
    if max(top, bottom) >= kh or max(left, right) >= kw:
        raise ValueError(f"pooling padding {(top, bottom, left, right)} must be below the "
                         f"kernel size {(kh, kw)}, so every window holds a real element")


def avg_pool2d_int8(x: np.ndarray, kernel_size: IntPair, stride: Optional[IntPair] = None,
                    padding: Padding = 0, *, requant: Requant, zp_in: int = 0,
                    zp_out: int = 0, act_min: int = -128, act_max: int = 127,
                    lut: Optional[np.ndarray] = None) -> np.ndarray:
    """int8 AVGPOOL: ``sum`` of ``(x - zp_in)`` over each window (padding adds 0),
    64-bit; ``y = clamp(rescale(sum, M, S) + zp_out)`` (then the lut).
    requant: 1 record, ``m = s_in / (s_out * kh * kw)``. stride defaults to kernel_size.
    """
    x = _nchw(_int8(x, "x"))
    _pool_padding_below_kernel(kernel_size, padding)
    zp_in = _zero_point(zp_in, "zp_in")
    m, s = _records(requant, 1, "avg_pool2d_int8")
    acc, _ = _pool(x.astype(np.int64) - zp_in, kernel_size, stride, padding, 0, np.add,
                   np.int64)
    return _finish(rescale(acc, m[0], s[0]), zp_out, act_min, act_max, lut)


def global_avg_pool2d_int8(x: np.ndarray, *, requant: Requant, zp_in: int = 0,
                           zp_out: int = 0, act_min: int = -128, act_max: int = 127,
                           lut: Optional[np.ndarray] = None) -> np.ndarray:
    """int8 GLOBAL_AVGPOOL, (N, C, H, W) -> (N, C, 1, 1): ``sum`` of ``(x - zp_in)``
    over H and W (64-bit: it may exceed 32 bits), ``y = clamp(rescale(sum, M, S) + zp_out)``
    (then the lut); requant: 1 record, ``m = s_in / (s_out * h * w)``."""
    x = _nchw(_int8(x, "x"))
    zp_in = _zero_point(zp_in, "zp_in")
    m, s = _records(requant, 1, "global_avg_pool2d_int8")
    acc = (x.astype(np.int64) - zp_in).sum(axis=(2, 3), keepdims=True)
    return _finish(rescale(acc, m[0], s[0]), zp_out, act_min, act_max, lut)


def _same_zero_point(zp_in: int, zp_out: Optional[int], op: str) -> Tuple[int, int]:
    zp_in = _zero_point(zp_in, "zp_in")
    zp_out = zp_in if zp_out is None else _zero_point(zp_out, "zp_out")
    if zp_out != zp_in:
        raise ValueError(f"{op} keeps the input's zero point: zp_out ({zp_out}) must equal "
                         f"zp_in ({zp_in}) (and the output has the input's scale)")
    return zp_in, zp_out


def max_pool2d_int8(x: np.ndarray, kernel_size: IntPair, stride: Optional[IntPair] = None,
                    padding: Padding = 0, *, zp_in: int = 0, zp_out: Optional[int] = None,
                    act_min: int = -128, act_max: int = 127,
                    lut: Optional[np.ndarray] = None) -> np.ndarray:
    """int8 MAXPOOL: ``y = clamp(max(x) - zp_in + zp_out)`` over each window, with
    zp_out = zp_in (the output has the input's scale and zero point), padded
    positions ignored; then the lut. No rescale record."""
    x = _nchw(_int8(x, "x"))
    _pool_padding_below_kernel(kernel_size, padding)
    zp_in, zp_out = _same_zero_point(zp_in, zp_out, "max_pool2d_int8")
    acc, _ = _pool(x, kernel_size, stride, padding, -129, np.maximum, np.int64)
    return _finish(acc - zp_in, zp_out, act_min, act_max, lut)


def global_max_pool2d_int8(x: np.ndarray, *, zp_in: int = 0, zp_out: Optional[int] = None,
                           act_min: int = -128, act_max: int = 127,
                           lut: Optional[np.ndarray] = None) -> np.ndarray:
    """int8 GLOBAL_MAXPOOL, (N, C, H, W) -> (N, C, 1, 1): ``y = clamp(max(x) - zp_in
    + zp_out)`` with zp_out = zp_in; then the lut."""
    x = _nchw(_int8(x, "x"))
    zp_in, zp_out = _same_zero_point(zp_in, zp_out, "global_max_pool2d_int8")
    acc = x.astype(np.int64).max(axis=(2, 3), keepdims=True)
    return _finish(acc - zp_in, zp_out, act_min, act_max, lut)


def act_int8(x: np.ndarray, *, requant: Requant, zp_in: int = 0, zp_out: int = 0,
             act_min: int = -128, act_max: int = 127,
             lut: Optional[np.ndarray] = None) -> np.ndarray:
    """int8 ACT, a requantizing copy: ``y = clamp(rescale(x - zp_in, M, S) + zp_out)``
    (then the lut); requant: 1 record, ``m = s_in / s_out``. Any shape."""
    x = _int8(x, "x")
    zp_in = _zero_point(zp_in, "zp_in")
    m, s = _records(requant, 1, "act_int8")
    return _finish(rescale(x.astype(np.int64) - zp_in, m[0], s[0]), zp_out, act_min,
                   act_max, lut)


def _qscale(scale: float) -> np.float32:
    s = np.float32(scale)
    if not (np.isfinite(s) and s > 0):
        raise ValueError(f"scale must be finite and > 0 as a float32, got {scale!r}")
    return s


def quantize(x: np.ndarray, scale: float, zp: int = 0, *, act_min: int = -128,
             act_max: int = 127, lut: Optional[np.ndarray] = None) -> np.ndarray:
    """QUANTIZE, float32 -> int8: ``q = clamp(rint(x / scale) + zp)``, then the lut.

    ``x / scale`` is a float32 division (scale rounded to float32, as the
    descriptor's ``qscale``), ``rint`` rounds half to even; NaN counts as
    ``rint = 0`` (so gives zp before the clamp), +-inf clamp to act_max/act_min.
    Any shape.
    """
    q = np.asarray(x, np.float32) / _qscale(scale)
    q = np.rint(np.where(np.isnan(q), np.float32(0), q)).astype(np.float64)
    zp = _zero_point(zp, "zp")
    # clamp in float first (values may be huge or infinite), then it is exact
    q = np.clip(q + zp, -129, 128).astype(np.int64) - zp
    return _finish(q, zp, act_min, act_max, lut)


def dequantize(q: np.ndarray, scale: float, zp: int = 0,
               activation: ActivationSpec = None) -> np.ndarray:
    """DEQUANTIZE, int8 -> float32: ``x = activation((float)(q - zp) * scale)``,
    the product in float32 (scale rounded to float32). Any shape."""
    q = _int8(q, "q")
    zp = _zero_point(zp, "zp")
    x = (q.astype(np.int64) - zp).astype(np.float32) * _qscale(scale)
    return x if activation is None else _activate(x.astype(np.float64), activation).astype(
        np.float32)
