"""A board with two accelerators: each device-tree node gets its own
/dev/convaccelN, both compute, and unloading the driver frees both."""
from __future__ import annotations

from conftest import boot, tail


def test_two_instances(built):
    cmd = ("python3 -m pytest -q -p no:cacheprovider tests/guest/two_devices.py && "
           "rmmod convaccel && test ! -e /dev/convaccel0 && test ! -e /dev/convaccel1 "
           "&& echo UNLOADED")
    r = boot("two-instances", cmd, accels=2, timeout=300)
    assert r.status == 0 and not r.problems, f"{r.problems}\n{tail(r.console)}"
    assert "3 passed" in r.console and "UNLOADED" in r.console
