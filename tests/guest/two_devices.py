"""Run only on a board with two accelerators (tests/host/test_multi_instance.py
boots one with -M virt-convaccel,accels=2); not collected by the normal suite."""
from __future__ import annotations

import os

import numpy as np

import pyaccel
from pyaccel import reference as ref


def test_each_node_gets_its_own_device():
    entries = pyaccel.devices()
    assert [(e.index, e.node, e.platform_device) for e in entries] == [
        (0, "/dev/convaccel0", "a100000.accel"), (1, "/dev/convaccel1", "a101000.accel")]


def test_both_devices_compute_and_interrupt():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((1, 4, 8, 8), dtype=np.float32)
    w = rng.standard_normal((4, 4, 3, 3), dtype=np.float32)
    for index in (0, 1):
        with pyaccel.open(index) as dev:
            assert dev.info.instance == index
            irqs = dev.query_info().irq_count
            np.testing.assert_allclose(dev.conv2d(x, w, padding=1), ref.conv2d(x, w, padding=1),
                                       rtol=1e-4, atol=1e-4)
            assert dev.query_info().irq_count > irqs
    lines = [line for line in open("/proc/interrupts") if "convaccel" in line]
    assert len(lines) == 2


def test_buffers_of_one_device_are_unknown_to_the_other():
    with pyaccel.open(0) as a, pyaccel.open(1) as b:
        buf = a.buffer(4096)
        assert os.path.exists("/sys/class/misc/convaccel1/buffers")
        assert int(open("/sys/class/misc/convaccel1/buffers").read()) == 0
        assert int(open("/sys/class/misc/convaccel0/buffers").read()) == 1
        del buf
        b.close()
