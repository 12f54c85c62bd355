"""The emulated device through the real driver, against the numpy oracle.

Tolerance: the device accumulates in float32 (BLAS), the oracle in float64;
relative error grows like sqrt(fan-in) * 2^-24, so we allow
atol = 1e-5 * sqrt(fan-in) * max|x|*max|w| scale and rtol 1e-4.
"""
from __future__ import annotations

import errno

import numpy as np
import pytest

import pyaccel
from pyaccel import Layer, Tensor
from pyaccel import reference as ref

from conftest import inject


def close(got: np.ndarray, want: np.ndarray, fan_in: int = 1) -> None:
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * max(1.0, fan_in) ** 0.5)


CONV_CASES = {
    # id: (x shape, c_out, kernel, kwargs)
    "1x1": ((1, 16, 8, 8), 32, (1, 1), {}),
    "3x3-pad1": ((1, 8, 12, 12), 16, (3, 3), dict(padding=1)),
    "5x5-s2": ((1, 4, 15, 15), 8, (5, 5), dict(stride=2, padding=2)),
    "7x7-s2-p3": ((1, 3, 20, 20), 8, (7, 7), dict(stride=2, padding=3)),
    "11x11-s4": ((1, 3, 35, 35), 4, (11, 11), dict(stride=4, padding=2)),
    "1x3": ((1, 4, 7, 9), 6, (1, 3), dict(padding=(0, 1))),
    "3x1-asym-pad": ((1, 4, 7, 9), 6, (3, 1), dict(padding=(2, 0, 1, 1))),
    "dilation-2": ((1, 4, 13, 13), 4, (3, 3), dict(dilation=2, padding=2)),
    "dilation-2x3-s(2,1)": ((1, 2, 14, 16), 4, (3, 3), dict(dilation=(2, 3), stride=(2, 1))),
    "groups-2": ((1, 8, 9, 9), 8, (3, 3), dict(groups=2, padding=1)),
    "depthwise": ((1, 16, 10, 10), 16, (3, 3), dict(groups=16, padding=1)),
    "depthwise-s2": ((1, 16, 11, 11), 16, (3, 3), dict(groups=16, padding=1, stride=2)),
    "batch-3": ((3, 4, 6, 6), 5, (3, 3), dict(padding=1)),
    "single-channel": ((1, 1, 9, 7), 1, (3, 3), {}),
    "wide": ((1, 256, 4, 4), 512, (1, 1), {}),
    "fc": ((2, 128, 1, 1), 10, (1, 1), {}),
}


# every shape with a bias; bias and activation variants on two representative shapes
CONV_PARAMS = [pytest.param(case, True, None, id=case) for case in CONV_CASES] + [
    pytest.param(case, bias, act, id=f"{case}-{'bias' if bias else 'nobias'}-{act}")
    for case in ("3x3-pad1", "depthwise") for bias in (True, False)
    for act in (None, "relu", "relu6") if (bias, act) != (True, None)]


@pytest.mark.parametrize("case, bias, activation", CONV_PARAMS)
def test_conv2d_matches_reference(dev, rng, case, bias, activation):
    shape, c_out, (kh, kw), kw_args = CONV_CASES[case]
    groups = kw_args.get("groups", 1)
    x = rng.standard_normal(shape, dtype=np.float32) * 3
    w = rng.standard_normal((c_out, shape[1] // groups, kh, kw), dtype=np.float32)
    b = rng.standard_normal(c_out, dtype=np.float32) if bias else None
    got = dev.conv2d(x, w, b, activation=activation, **kw_args)
    want = ref.conv2d(x, w, b, activation=activation, **kw_args)
    close(got, want, fan_in=w[0].size * 9)


@pytest.mark.parametrize("op, kernel, stride, padding, shape", [
    ("max", 2, None, 0, (1, 4, 8, 8)),
    ("max", 3, 2, 1, (2, 3, 9, 9)),
    ("max", (3, 2), (1, 2), (1, 0), (1, 2, 7, 8)),
    ("avg", 2, None, 0, (1, 4, 8, 8)),
    ("avg", 3, 2, 1, (2, 3, 9, 9)),
    ("avg", 7, 1, 0, (1, 8, 7, 7)),
])
def test_pooling_matches_reference(dev, rng, op, kernel, stride, padding, shape):
    x = rng.standard_normal(shape, dtype=np.float32)
    got = getattr(dev, f"{op}_pool2d")(x, kernel, stride, padding)
    want = getattr(ref, f"{op}_pool2d")(x, kernel, stride, padding)
    close(got, want)


def test_global_average_pool(dev, rng):
    x = rng.standard_normal((2, 16, 7, 7), dtype=np.float32)
    close(dev.global_avg_pool2d(x), ref.global_avg_pool2d(x))


def geometry(n, c_in, h, w, c_out, k, stride=1, pad=0, groups=1, h_out=None, w_out=None):
    ho = (h + 2 * pad - k) // stride + 1
    wo = (w + 2 * pad - k) // stride + 1
    return dict(n=n, c_in=c_in, h_in=h, w_in=w, c_out=c_out, h_out=h_out or ho,
                w_out=w_out or wo, groups=groups, kh=k, kw=k, stride_h=stride, stride_w=stride,
                dil_h=1, dil_w=1, pad_top=pad, pad_bottom=pad, pad_left=pad, pad_right=pad)


def test_chain_of_layers_in_one_job(dev, rng):
    """conv+relu -> maxpool -> depthwise conv+relu6 -> global avgpool -> fc, one submit."""
    x = rng.standard_normal((1, 3, 16, 16), dtype=np.float32)
    w1 = rng.standard_normal((8, 3, 3, 3), dtype=np.float32)
    b1 = rng.standard_normal(8, dtype=np.float32)
    w2 = rng.standard_normal((8, 1, 3, 3), dtype=np.float32)
    w3 = rng.standard_normal((10, 8, 1, 1), dtype=np.float32)
    buf = dev.buffer(1 << 16)
    offs = iter(range(0, 1 << 16, 4096))
    T = lambda: Tensor(buf.handle, next(offs))  # noqa: E731
    tx, tw1, tb1, t1, t2, tw2, t3, t4, tw3, t5 = (T() for _ in range(10))
    for t, a in ((tx, x), (tw1, w1), (tb1, b1), (tw2, w2), (tw3, w3)):
        buf.array(a.shape, offset=t.offset)[...] = a
    layers = [
        Layer("conv", tx, t1, tw1, tb1, "relu", geometry(1, 3, 16, 16, 8, 3, pad=1)),
        Layer("maxpool", t1, t2, geometry=dict(geometry(1, 8, 16, 16, 8, 2, stride=2))),
        Layer("conv", t2, t3, tw2, None, "relu6", geometry(1, 8, 8, 8, 8, 3, pad=1, groups=8)),
        Layer("avgpool", t3, t4, geometry=geometry(1, 8, 8, 8, 8, 8)),
        Layer("conv", t4, t5, tw3, None, "none", geometry(1, 8, 1, 1, 10, 1)),
    ]
    res = dev.submit(layers).wait(10)
    y = ref.conv2d(x, w1, b1, padding=1, activation="relu")
    y = ref.max_pool2d(y, 2)
    y = ref.conv2d(y, w2, padding=1, groups=8, activation="relu6")
    y = ref.global_avg_pool2d(y)
    y = ref.conv2d(y, w3)
    close(buf.array((1, 10, 1, 1), offset=t5.offset), y, fan_in=72)
    assert res.layers_done == 5
    assert res.macs == 1 * 8 * 16 * 16 * 27 + 8 * 8 * 8 * 9 + 80
    assert res.cycles > 0 and res.device_ns > 0
    assert res.bytes_written == 4 * (8 * 256 + 8 * 64 + 8 * 64 + 8 + 10)


# A bad second layer: the driver refuses the job before the device sees it
# (the device's own naming of each bad field is tested with raw descriptors
# in tests/host/test_device_raw.py), and nothing is written.
BAD_LAYERS = {
    "shape": (dict(h_out=5), "conv"),
    "kernel": (dict(kh=17, kw=17, h_out=1, w_out=1, h_in=17, w_in=17), "conv"),
    "pad": (dict(pad_top=65), "conv"),
    "groups": (dict(groups=3, c_in=3), "conv"),
    "op": ({}, 9),
    "pool-dilation": (dict(dil_h=2, h_out=3), "maxpool"),
    "pool-pad": (dict(kh=2, kw=2, stride_h=2, stride_w=2, pad_top=2, h_out=5, w_out=4),
                 "maxpool"),
    "pool-channels": (dict(c_out=4), "avgpool"),
    "zero-batch": (dict(n=0), "conv"),
}


@pytest.mark.parametrize("case", list(BAD_LAYERS))
def test_bad_descriptor_is_refused_and_touches_nothing(dev, case):
    change, op = BAD_LAYERS[case]
    buf = dev.buffer(1 << 18)
    mem = buf.array(1 << 16)
    mem[...] = 7.0
    good = geometry(1, 8, 8, 8, 8, 3, pad=1)
    bad = dict(geometry(1, 8, 8, 8, 8, 3, pad=1), **change)
    if op != "conv":
        bad["groups"] = 1
    t = lambda off: Tensor(buf.handle, off)  # noqa: E731
    weight = t(8192) if op == "conv" else None
    layers = [Layer("conv", t(0), t(4096), t(8192), None, "none", good),
              Layer(op, t(0), t(32768), weight, None, "none", bad)]
    with pytest.raises(pyaccel.AccelError) as e:
        dev.submit(layers)
    assert e.value.errno == errno.EINVAL
    assert np.all(mem == 7.0), "a refused job wrote memory"


def test_dma_error_fault(dev, rng):
    inject("dma-error")
    x = rng.standard_normal((1, 2, 4, 4), dtype=np.float32)
    with pytest.raises(pyaccel.JobError, match="at the job: dma") as e:
        dev.conv2d(x, np.ones((2, 2, 1, 1), np.float32))
    assert e.value.result.layer is None
    close(dev.conv2d(x, np.ones((2, 2, 1, 1), np.float32)), ref.conv2d(x, np.ones((2, 2, 1, 1), np.float32)))


def test_error_after_n_jobs_fault(dev, rng):
    x = rng.standard_normal((1, 2, 4, 4), dtype=np.float32)
    w = np.ones((2, 2, 1, 1), np.float32)
    inject("error-after 2")
    dev.conv2d(x, w)
    with pytest.raises(pyaccel.JobError, match="injected"):
        dev.conv2d(x, w)
    dev.conv2d(x, w)
