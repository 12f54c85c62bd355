"""Quantization parameters for the device's int8 ops: what a compiler computes
from real-valued scales (numpy only).

- tensors: :func:`qparams` (per-tensor scale and zero point from a float range,
  ``real = scale * (q - zp)``), :func:`quantize_weights` (symmetric int8, one
  scale per output channel), :func:`quantize_bias` (int32, scale
  ``s_in * s_w[c]``);
- rescale records, (k, 2) int32 arrays of ``(M, S)`` as the device reads them at
  a layer's ``requant`` (``.tobytes()`` is the memory image), one function per op,
  from docs/hardware.md's table: :func:`conv_requant` (also FC and
  SCALE_SHIFT), :func:`add_requant`, :func:`mul_requant`,
  :func:`avgpool_requant`, :func:`act_requant`; :func:`rescale_records` for any
  factors;
- fused activations: :func:`activation_clamp` (ReLU and ReLU6 are the clamp)
  and :func:`activation_lut` (LeakyReLU, sigmoid, hard-sigmoid, hard-swish are a
  256-entry table).

Scales are float32 values (what a descriptor's f32 field or an ONNX
initializer holds): the functions return them as Python floats that are
exactly float32 and round the scales they are given to float32 first, so that
every use sees the same number; the factors are then formed in float64.

With a table, the layer's own output (its records'
``s_out`` and the descriptor's ``zp_out``) is the pre-activation tensor
(``s_mid``, ``zp_mid``); the table maps it into the real output's scale.

    >>> scale, zp = qparams(-1.0, 3.0)
    >>> round(scale, 6), zp
    (0.015686, -64)
    >>> conv_requant(scale, [0.01, 0.02], 0.05).tolist()
    [[1724724160, 39], [1724724160, 38]]
"""
from __future__ import annotations

from typing import Callable, Sequence, Tuple, Union

import numpy as np

from . import reference as ref
from .reference_int8 import ADD_LEFT_SHIFT, LUT_SIZE, quantize, quantize_multiplier

__all__ = ["activation_clamp", "activation_lut", "act_requant", "add_requant",
           "avgpool_requant", "conv_requant", "fc_requant", "lut_activation", "mul_requant",
           "qparams", "quantize_bias", "quantize_weights", "rescale_records", "scale_shift_requant"]

Scales = Union[float, Sequence[float], np.ndarray]
# Activations that int8 ops compute as the clamp, and those that need a table.
CLAMP_ACTIVATIONS = (None, "relu", "relu6")
LUT_ACTIVATIONS = ("leaky_relu", "sigmoid", "hard_sigmoid", "hard_swish")


def _f32(value: float, name: str) -> float:
    v = float(np.float32(value))
    if not (np.isfinite(v) and v > 0):
        raise ValueError(f"{name} must be finite and > 0 (as a float32), got {value!r}")
    return v


def _scales(s: Scales, name: str) -> np.ndarray:
    a = np.atleast_1d(np.asarray(s, np.float64)).astype(np.float32).astype(np.float64)
    if a.ndim != 1 or not a.size or not np.all(np.isfinite(a) & (a > 0)):
        raise ValueError(f"{name} must be finite scales > 0 (a number or a 1-D array), got {s!r}")
    return a


def qparams(lo: float, hi: float, symmetric: bool = False) -> Tuple[float, int]:
    """Per-tensor int8 ``(scale, zero_point)`` covering the real range [lo, hi].

    Asymmetric (default): the range is widened to hold 0 (so 0 is exact),
    ``scale = (hi - lo) / 255`` (as float32), ``zp = rint(-128 - lo / scale)``
    clamped to -128..127. Symmetric: ``scale = max(|lo|, |hi|) / 127``, zp 0.
    A range of only 0 gives scale 1.
    """
    lo, hi = float(lo), float(hi)
    if not (np.isfinite(lo) and np.isfinite(hi)) or lo > hi:
        raise ValueError(f"the range must be finite with lo <= hi, got [{lo!r}, {hi!r}]")
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    if symmetric:
        top = max(-lo, hi)
        return (_f32(top / 127, "scale") if top > 0 else 1.0), 0
    if hi == lo:
        return 1.0, 0
    scale = _f32((hi - lo) / 255, "scale")
    zp = int(np.clip(np.rint(-128 - lo / scale), -128, 127))
    return scale, zp


def quantize_weights(weight: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 weights with one scale per output channel (axis 0).

    ``s[c] = max |w[c]| / 127`` (float32; an all-zero channel gets 1),
    ``q = clip(rint(w / s[c]), -127, 127)``: zero point 0, -128 unused.
    Returns (q int8 of w's shape, s float64 (C_out,)).
    """
    w = np.asarray(weight, np.float64)
    if w.ndim < 1 or not w.shape[0] or not np.all(np.isfinite(w)):
        raise ValueError(f"weight must be finite with an output-channel axis 0, got shape "
                         f"{w.shape}")
    top = np.abs(w.reshape(w.shape[0], -1)).max(axis=1)
    s = np.where(top > 0, top / 127, 1.0).astype(np.float32).astype(np.float64)
    s = np.where(s > 0, s, float(np.finfo(np.float32).tiny))     # underflow to 0 in float32
    per_c = (slice(None),) + (None,) * (w.ndim - 1)
    q = np.clip(np.rint(w / s[per_c]), -127, 127).astype(np.int8)
    return q, s


def quantize_bias(bias: np.ndarray, s_in: float, s_w: Scales) -> np.ndarray:
    """int32 bias: ``rint(bias[c] / (s_in * s_w[c]))``; raises ValueError if one
    does not fit in int32 (the scales are too small for that bias)."""
    b = np.asarray(bias, np.float64)
    if b.ndim != 1 or not np.all(np.isfinite(b)):
        raise ValueError(f"bias must be a finite 1-D array, got shape {b.shape}")
    s = _scales(s_w, "s_w")
    if s.size not in (1, b.size):
        raise ValueError(f"s_w must hold 1 or {b.size} scales (one per channel), got {s.size}")
    q = np.rint(b / (_f32(s_in, "s_in") * s))
    bad = np.flatnonzero(np.abs(q) > 2 ** 31 - 1)
    if bad.size:
        raise ValueError(f"bias of channel(s) {bad.tolist()} does not fit in int32 at scale "
                         "s_in * s_w[c]")
    return q.astype(np.int32)


def rescale_records(factors: Scales) -> np.ndarray:
    """The (k, 2) int32 records ``(M, S)`` of real factors, each by
    :func:`pyaccel.reference.quantize_multiplier` (which refuses factors the
    device cannot represent, about 2^-32 .. 2^30)."""
    m = np.atleast_1d(np.asarray(factors, np.float64))
    if m.ndim != 1:
        raise ValueError(f"factors must be a number or a 1-D array, got shape {m.shape}")
    return np.array([quantize_multiplier(v) for v in m], np.int32).reshape(-1, 2)


def conv_requant(s_in: float, s_w: Scales, s_out: float) -> np.ndarray:
    """CONV, FC and SCALE_SHIFT: one record per output channel,
    ``m[c] = s_in * s_w[c] / s_out``."""
    return rescale_records(_f32(s_in, "s_in") * _scales(s_w, "s_w") / _f32(s_out, "s_out"))


fc_requant = conv_requant
scale_shift_requant = conv_requant


def add_requant(s0: float, s1: float, s_out: float) -> np.ndarray:
    """ADD's 3 records: ``m0 = s0 / (2 max(s0, s1))``, ``m1 = s1 / (2 max(s0, s1))``,
    ``m2 = 2 max(s0, s1) / (2^20 s_out)`` (the inputs are first scaled by 2^20)."""
    s0, s1, s_out = _f32(s0, "s0"), _f32(s1, "s1"), _f32(s_out, "s_out")
    twice = 2 * max(s0, s1)
    return rescale_records([s0 / twice, s1 / twice, twice / (2 ** ADD_LEFT_SHIFT * s_out)])


def mul_requant(s0: float, s1: float, s_out: float) -> np.ndarray:
    """MUL's record: ``m = s0 * s1 / s_out``."""
    return rescale_records(_f32(s0, "s0") * _f32(s1, "s1") / _f32(s_out, "s_out"))


def avgpool_requant(s_in: float, s_out: float, kh: int, kw: int) -> np.ndarray:
    """AVGPOOL's record, ``m = s_in / (s_out * kh * kw)``; GLOBAL_AVGPOOL: kh, kw =
    h_in, w_in."""
    if int(kh) != kh or int(kw) != kw or kh < 1 or kw < 1:
        raise ValueError(f"the window must be positive ints, got kh={kh!r} kw={kw!r}")
    return rescale_records(_f32(s_in, "s_in") / (_f32(s_out, "s_out") * int(kh) * int(kw)))


def act_requant(s_in: float, s_out: float) -> np.ndarray:
    """ACT's record (a requantizing copy): ``m = s_in / s_out``."""
    return rescale_records(_f32(s_in, "s_in") / _f32(s_out, "s_out"))


def activation_clamp(activation: ref.ActivationSpec, s_out: float,
                     zp_out: int) -> Tuple[int, int]:
    """``(act_min, act_max)`` of an int8 output: ReLU ``(zp_out, 127)``, ReLU6
    ``(zp_out, min(zp_out + round(6 / s_out), 127))`` (6 quantized as
    QUANTIZE does: float32 division, half to even); otherwise (-128, 127)
    (a table activation's clamp is the full range)."""
    act = ref.activation(activation)
    s_out = _f32(s_out, "s_out")
    if int(zp_out) != zp_out or not -128 <= zp_out <= 127:
        raise ValueError(f"zp_out must be an int in -128..127, got {zp_out!r}")
    if act.name == "relu":
        return int(zp_out), 127
    if act.name == "relu6":
        return int(zp_out), int(quantize(np.float32(6.0), s_out, int(zp_out)))
    return -128, 127


def activation_lut(activation: Union[ref.ActivationSpec, Callable[[np.ndarray], np.ndarray]],
                   s_mid: float, zp_mid: int, s_out: float, zp_out: int) -> np.ndarray:
    """The 256-entry int8 table of a fused activation f:
    ``lut[i] = quantize(f(s_mid * (i - 128 - zp_mid)), s_out, zp_out)``.

    Entry i is the pre-activation value ``q = i - 128`` (scale s_mid, zero point
    zp_mid: the layer's own output); f is computed in float64 (an activation
    spec, e.g. ("leaky_relu", 0.1), or any callable on a float64 array), then
    quantized as QUANTIZE does.
    """
    f = activation if callable(activation) and not isinstance(activation, ref.Activation) \
        else ref.activation(activation)
    s_mid = _f32(s_mid, "s_mid")
    if int(zp_mid) != zp_mid or not -128 <= zp_mid <= 127:
        raise ValueError(f"zp_mid must be an int in -128..127, got {zp_mid!r}")
    q = np.arange(LUT_SIZE, dtype=np.int64) - 128
    real = s_mid * (q - int(zp_mid)).astype(np.float64)
    return quantize(np.asarray(f(real), np.float64), _f32(s_out, "s_out"), zp_out)


def lut_activation(activation: ref.ActivationSpec) -> bool:
    """Whether an int8 op computes this activation with a table (else the clamp)."""
    return ref.activation(activation).name in LUT_ACTIVATIONS
