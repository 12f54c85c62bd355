"""Whole networks on the device against the numpy oracle, the compiled-model
API, and Python-side argument checks."""
from __future__ import annotations

import time

import numpy as np
import pytest

import pyaccel
from pyaccel import graph, models

TOL = dict(rtol=1e-4, atol=1e-5)   # softmax outputs; device float32 vs oracle float64


def run_and_check(dev, model, batch=1, seed=0):
    x = np.random.default_rng(seed).standard_normal((batch,) + model.input_shape,
                                                    dtype=np.float32)
    with model.compile(dev, batch) as net:
        inf = net(x)
    np.testing.assert_allclose(inf.output, model.reference(x), **TOL)
    return inf


@pytest.mark.parametrize("variant", list(models.ALLCONV_VARIANTS))
def test_allconv_variants(dev, variant):
    model = models.allconv(variant=variant)
    inf = run_and_check(dev, model)
    assert inf.job.macs == model.macs


@pytest.mark.parametrize("depth", [2, 7])
def test_allconv_depths(dev, depth):
    run_and_check(dev, models.allconv(0.5, depth=depth))


@pytest.mark.parametrize("alpha", [1.0, 0.75, 0.5, 0.25])
def test_mobilenet_widths(dev, alpha):
    model = models.mobilenet_v1(alpha, 128, num_classes=100)
    inf = run_and_check(dev, model)
    assert inf.job.macs == model.macs
    assert inf.output.shape == (1, 100)
    np.testing.assert_allclose(inf.output.sum(), 1.0, rtol=1e-5)


def test_mobilenet_full_size_batch_2(dev):
    model = models.mobilenet_v1(0.25, 224)
    inf = run_and_check(dev, model, batch=2)
    assert inf.job.macs == 2 * model.macs


def test_per_layer_statistics_add_up(dev):
    model = models.mobilenet_v1(0.5, 96, num_classes=10)
    inf = run_and_check(dev, model)
    assert [s.name for s in inf.layers] == [op.name for op in model.ops]
    ins = [model.input_shape] + model.shapes()[:-1]
    assert [s.macs for s in inf.layers] == [op.macs(s) for op, s in zip(model.ops, ins)]
    assert sum(s.device_ns for s in inf.layers) == inf.job.device_ns
    assert sum(s.bytes for s in inf.layers) == inf.job.bytes_read + inf.job.bytes_written
    assert sum(s.cycles for s in inf.layers) < inf.job.cycles      # + the job's overhead
    assert all(s.cycles > 0 for s in inf.layers)
    assert inf.modelled_ms == inf.job.cycles / (dev.info.model_clock_mhz * 1e3)
    st = inf.stages                   # the call's split: all of wall_ns, then the softmax
    assert min(st.input, st.submit, st.wait, st.output, st.softmax) > 0
    assert st.input + st.submit + st.wait + st.output == inf.wall_ns
    # the device starts at the doorbell, inside SUBMIT: it may finish before WAIT
    assert st.submit + st.wait >= inf.job.device_ns


def test_compiled_model_is_reusable_and_checks_input(dev):
    model = models.allconv(variant="quarter")
    rng = np.random.default_rng(3)
    with model.compile(dev) as net:
        for _ in range(3):
            x = rng.standard_normal((1,) + model.input_shape, dtype=np.float32)
            np.testing.assert_allclose(net(x).output, model.reference(x), **TOL)
        with pytest.raises(pyaccel.ShapeError, match="compiled for"):
            net(np.zeros((2,) + model.input_shape, np.float32))


def test_weights_from_npz(dev, tmp_path):
    model = models.allconv(variant="half", seed=1)
    model.save_npz(tmp_path / "w.npz")
    other = models.allconv(variant="half", seed=2)
    other.load_npz(tmp_path / "w.npz")
    x = np.random.default_rng(0).standard_normal((1,) + model.input_shape, dtype=np.float32)
    with other.compile(dev) as net:
        np.testing.assert_allclose(net(x).output, model.reference(x), **TOL)


def test_input_view_outlives_the_compiled_model(dev):
    model = models.allconv(variant="quarter")
    net = model.compile(dev)
    view = net.input
    net.close()
    view[...] = 1.0                 # still mapped: no crash
    assert float(view.sum()) == view.size
    del view


@pytest.mark.parametrize("kwargs, message", [
    (dict(weight=np.zeros((4, 4, 17, 17), np.float32)), "allows at most 16"),
    (dict(weight=np.zeros((4, 2, 3, 3), np.float32), groups=3), "groups=3 must divide"),
    (dict(weight=np.zeros((4, 3, 3, 3), np.float32)), "expects 3 input channels"),
    (dict(weight=np.zeros((4, 4, 3, 3), np.float32), padding=65), "at most 64"),
    (dict(weight=np.zeros((4, 4, 3, 3), np.float32), activation="tanh"), "activation"),
    (dict(weight=np.zeros((4, 4, 3, 3), np.float32), bias=np.zeros(3, np.float32)),
     r"bias must have shape \(4,\)"),
    (dict(weight=np.zeros((4, 4, 9, 9), np.float32)), "does not fit"),
])
def test_python_checks_catch_mistakes_before_the_driver(dev, kwargs, message):
    x = np.zeros((1, 4, 8, 8), np.float32)
    jobs_before = open("/sys/class/misc/convaccel0/jobs_done").read()
    with pytest.raises(pyaccel.ShapeError, match=message):
        dev.conv2d(x, **kwargs)
    assert open("/sys/class/misc/convaccel0/jobs_done").read() == jobs_before


def test_async_jobs_and_poll(dev):
    import select

    model = models.allconv(variant="quarter")
    with model.compile(dev) as net:
        jobs = [dev.submit(net._encoded) for _ in range(4)]
        p = select.poll()
        p.register(dev.fileno(), select.POLLIN)
        assert p.poll(10000)
        assert all(j.wait(10).ok for j in jobs)
