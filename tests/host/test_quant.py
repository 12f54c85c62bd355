"""pyaccel.quant (quantization parameters) and quantize_multiplier (numpy only)."""
from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

from pyaccel import quant
from pyaccel import reference as ref

qm = ref.quantize_multiplier


# --- quantize_multiplier -------------------------------------------------------

@pytest.mark.parametrize("m, expected", [
    (0.5, (1 << 30, 31)),
    (1.0, (1 << 30, 30)),
    (0.75, (3 << 29, 31)),
    (2.0 ** 29, (1 << 30, 1)),                        # the largest power of two: S = 1
    (2.0 ** -32, (1 << 30, 62)),                      # the smallest: S = 62
    (1 - 2.0 ** -31, (2 ** 31 - 1, 31)),              # the largest M without a carry
    (1 - 2.0 ** -33, (1 << 30, 30)),                  # rounds up to 2^31: carry
    (math.nextafter(1.0, 0.0), (1 << 30, 30)),        # just below 1: carry to 1
    (math.nextafter(2.0 ** -32, 0.0), (1 << 30, 62)), # just below the smallest: the carry saves it
    (2.0 ** 30 * (1 - 2.0 ** -31), (2 ** 31 - 1, 1)), # the largest factor
])
def test_quantize_multiplier_edges(m: float, expected) -> None:
    assert qm(m) == expected


def test_quantize_multiplier_rounds_half_up() -> None:
    # f * 2^31 = 2^30 + 1/2 exactly: half up gives 2^30 + 1 (half to even: 2^30)
    assert qm((2 ** 30 + 0.5) / 2 ** 31) == ((1 << 30) + 1, 31)
    assert qm((2 ** 30 + 1.5) / 2 ** 31) == ((1 << 30) + 2, 31)
    assert qm((2 ** 30 + 0.5 - 2 ** -20) / 2 ** 31) == (1 << 30, 31)


@pytest.mark.parametrize("m", [0.0, -0.5, math.nan, math.inf, 2.0 ** 30,
                               math.nextafter(2.0 ** 30, 0.0),   # carries to S = 0
                               2.0 ** -33, 2.0 ** -32 * (1 - 2.0 ** -30), 1e-30, 1e12])
def test_quantize_multiplier_refuses(m: float) -> None:
    with pytest.raises(ValueError, match="rescale factor"):
        qm(m)


def test_quantize_multiplier_is_within_2_to_minus_31() -> None:
    rng = np.random.default_rng(3)
    for m in np.exp2(rng.uniform(-31.9, 29.9, 2000)):
        mult, shift = qm(m)
        assert 2 ** 30 <= mult < 2 ** 31 and 1 <= shift <= 62
        assert abs(mult / 2.0 ** shift - m) <= m * 2.0 ** -31
        # and rescale by it is round(v * M / 2^S), half up, for int32 v
        v = np.array([-(2 ** 31), -12345, -1, 0, 1, 777, 2 ** 31 - 1])
        exact = [math.floor(Fraction(int(x) * mult, 2 ** shift) + Fraction(1, 2)) for x in v]
        assert ref.rescale(v, mult, shift).tolist() == exact


# --- tensors ------------------------------------------------------------------

@pytest.mark.parametrize("lo, hi", [(-1.0, 3.0), (0.0, 6.0), (-7.5, -0.25), (-0.01, 100.0),
                                    (2.0, 2.0)])
def test_qparams_cover_the_range_and_hold_zero_exactly(lo: float, hi: float) -> None:
    scale, zp = quant.qparams(lo, hi)
    assert scale == float(np.float32(scale)) and -128 <= zp <= 127
    assert ref.quantize(np.float32(0.0), scale, zp).item() == zp
    x = np.linspace(min(lo, 0), max(hi, 0), 1001).astype(np.float32)
    back = ref.dequantize(ref.quantize(x, scale, zp), scale, zp)
    assert np.max(np.abs(back - x)) <= scale * 0.5001 + 1e-7
    # and int8 -> real -> int8 is the identity
    q = np.arange(-128, 128, dtype=np.int8)
    np.testing.assert_array_equal(ref.quantize(ref.dequantize(q, scale, zp), scale, zp), q)


def test_qparams_symmetric_and_degenerate() -> None:
    scale, zp = quant.qparams(-2.0, 1.0, symmetric=True)
    assert zp == 0 and scale == pytest.approx(2 / 127)
    assert quant.qparams(0.0, 0.0) == (1.0, 0)
    with pytest.raises(ValueError, match="lo <= hi"):
        quant.qparams(1.0, -1.0)
    with pytest.raises(ValueError, match="finite"):
        quant.qparams(0.0, math.inf)


def test_quantize_weights_per_channel() -> None:
    rng = np.random.default_rng(5)
    w = rng.standard_normal((4, 3, 3, 3)) * np.array([1, 10, 0.01, 0])[:, None, None, None]
    q, s = quant.quantize_weights(w)
    assert q.dtype == np.int8 and q.shape == w.shape and s.shape == (4,)
    assert np.all(np.abs(q[:3]).reshape(3, -1).max(axis=1) == 127)   # the max maps to +-127
    assert q.min() >= -127 and s[3] == 1.0 and np.all(q[3] == 0)      # zero channel
    err = np.abs(q * s[:, None, None, None] - w).reshape(4, -1).max(axis=1)
    assert np.all(err <= s * 0.5 * (1 + 1e-6))
    with pytest.raises(ValueError, match="finite"):
        quant.quantize_weights(np.array([[np.nan]]))


def test_quantize_bias() -> None:
    b = quant.quantize_bias(np.array([1.0, -0.5, 0.0]), 0.5, [0.25, 0.5, 1.0])
    assert b.dtype == np.int32 and b.tolist() == [8, -2, 0]
    with pytest.raises(ValueError, match="channel.*0.*int32"):
        quant.quantize_bias(np.array([1e6]), 1e-3, [1e-3])
    with pytest.raises(ValueError, match="1 or 2 scales"):
        quant.quantize_bias(np.array([1.0, 2.0]), 1.0, [1.0, 1.0, 1.0])


# --- rescale records ------------------------------------------------------------

def real(records: np.ndarray) -> np.ndarray:
    return records[:, 0] / np.exp2(records[:, 1].astype(np.float64))


def test_records_per_op_follow_the_spec_table() -> None:
    f = lambda v: float(np.float32(v))    # noqa: E731  scales are float32
    s_in, s_w, s_out = 0.02, np.array([0.001, 0.003]), 0.05
    r = quant.conv_requant(s_in, s_w, s_out)
    assert r.dtype == np.int32 and r.shape == (2, 2)
    s_w32 = s_w.astype(np.float32).astype(np.float64)
    np.testing.assert_allclose(real(r), f(s_in) * s_w32 / f(s_out), rtol=2e-9)
    assert quant.fc_requant is quant.conv_requant is quant.scale_shift_requant

    r = quant.add_requant(0.1, 0.3, 0.2)
    np.testing.assert_allclose(
        real(r), [f(0.1) / (2 * f(0.3)), 0.5, 2 * f(0.3) / (2 ** 20 * f(0.2))], rtol=2e-9)
    assert r[1].tolist() == [1 << 30, 31]                   # the larger input: exactly 1/2
    np.testing.assert_allclose(real(quant.mul_requant(0.1, 0.3, 0.2)), f(0.1) * f(0.3) / f(0.2),
                               rtol=2e-9)
    np.testing.assert_allclose(real(quant.avgpool_requant(0.1, 0.2, 3, 3)), f(0.1) / (9 * f(0.2)),
                               rtol=2e-9)
    np.testing.assert_allclose(real(quant.act_requant(0.1, 0.2)), f(0.1) / f(0.2), rtol=2e-9)
    assert quant.avgpool_requant(0.5, 0.5, 2, 2).tolist() == [[1 << 30, 32]]   # exactly 1/4
    assert quant.rescale_records([]).shape == (0, 2)
    with pytest.raises(ValueError, match="rescale factor"):
        quant.act_requant(1.0, 1e-12)
    with pytest.raises(ValueError, match="s_out"):
        quant.act_requant(1.0, 0.0)


def test_records_drive_the_golden_model_to_the_float_result() -> None:
    """End to end: real scales -> records -> conv2d_int8 is the float conv of the
    dequantized operands, requantized (and clamped by ReLU6), within 1 LSB."""
    rng = np.random.default_rng(7)
    x_real = rng.standard_normal((1, 4, 8, 8)).astype(np.float32)
    w_real = rng.standard_normal((6, 4, 3, 3))
    s_in, zp_in = quant.qparams(x_real.min(), x_real.max())
    x = ref.quantize(x_real, s_in, zp_in)
    wq, s_w = quant.quantize_weights(w_real)
    bq = quant.quantize_bias(rng.standard_normal(6), s_in, s_w)
    y_real = ref.conv2d(ref.dequantize(x, s_in, zp_in),
                        (wq * s_w[:, None, None, None]).astype(np.float32), bq * s_in * s_w,
                        padding=1, activation="relu6")
    s_out, zp_out = quant.qparams(0.0, 6.0)
    lo, hi = quant.activation_clamp("relu6", s_out, zp_out)
    y = ref.conv2d_int8(x, wq, bq, padding=1, requant=quant.conv_requant(s_in, s_w, s_out),
                        zp_in=zp_in, zp_out=zp_out, act_min=lo, act_max=hi)
    expect = ref.quantize(y_real, s_out, zp_out)
    assert np.abs(y.astype(int) - expect).max() <= 1
    assert (y == expect).mean() > 0.99


# --- activations ----------------------------------------------------------------

def test_activation_clamps() -> None:
    assert quant.activation_clamp("relu", 0.1, -20) == (-20, 127)
    assert quant.activation_clamp("relu6", 0.1, -20) == (-20, 40)
    assert quant.activation_clamp("relu6", 0.01, 0) == (0, 127)          # bounded to 127
    assert quant.activation_clamp(None, 0.1, 3) == (-128, 127)
    assert quant.activation_clamp(("leaky_relu", 0.1), 0.1, 3) == (-128, 127)
    assert quant.lut_activation("sigmoid") and not quant.lut_activation("relu6")
    with pytest.raises(ValueError, match="zp_out"):
        quant.activation_clamp("relu", 0.1, 200)


@pytest.mark.parametrize("spec", [("leaky_relu", 0.1), "sigmoid", "hard_sigmoid", "hard_swish"])
def test_activation_lut_entries(spec) -> None:
    s_mid, zp_mid, s_out, zp_out = 0.05, 7, 0.03, -9
    lut = quant.activation_lut(spec, s_mid, zp_mid, s_out, zp_out)
    assert lut.dtype == np.int8 and lut.shape == (256,)
    f = ref.activation(spec)
    for i in (0, 1, 100, 128 + zp_mid, 200, 255):
        value = f(np.array([float(np.float32(s_mid)) * (i - 128 - zp_mid)]))
        assert lut[i] == ref.quantize(value, s_out, zp_out)[0]
    assert lut[128 + zp_mid] == ref.quantize(f(np.zeros(1)), s_out, zp_out)[0]
    # monotone activations give a monotone table
    if spec != "hard_swish":
        assert np.all(np.diff(lut.astype(int)) >= 0)


def test_activation_lut_takes_a_callable() -> None:
    lut = quant.activation_lut(np.negative, 1.0, 0, 1.0, 0)
    np.testing.assert_array_equal(lut, np.clip(-np.arange(-128, 128), -128, 127))
