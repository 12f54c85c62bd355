"""In-guest fixtures. This suite runs inside the board (make test boots it);
on a machine without the device it fails with the reason, it never passes."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

import pyaccel
from devctl import DEBUGFS, SYSFS, inject, stat  # noqa: F401 - tests import them from here
from pyaccel import uapi

TOP = Path(__file__).resolve().parents[2]
MODULE = TOP / "build" / "kernel" / "convaccel.ko"
REGS = uapi.load(TOP / "include" / "convaccel_regs.h")[1]


def sh(cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, shell=True, capture_output=True, text=True, check=check)


def module_loaded() -> bool:
    return os.path.isdir("/sys/module/convaccel")


def load_module() -> None:
    if not module_loaded():
        sh(f"insmod {MODULE}")


def unload_module() -> None:
    """rmmod; earlier tests' unreferenced files and mappings are collected
    first (an open file or a mapping pins the module, by design)."""
    if module_loaded():
        import gc

        gc.collect()
        sh("rmmod convaccel")


@pytest.fixture
def regs() -> dict[str, int]:
    return REGS


@pytest.fixture
def dev():
    load_module()
    with pyaccel.open() as d:
        yield d


@pytest.fixture
def dmesg_mark():
    """Kernel log lines added during the test (the test may assert on them)."""
    before = len(sh("dmesg").stdout.splitlines())
    return lambda: sh("dmesg").stdout.splitlines()[before:]


@pytest.fixture(autouse=True)
def module_is_back():
    """Every test leaves the driver loaded for the next one."""
    yield
    load_module()


@pytest.fixture
def rng():
    import numpy as np

    return np.random.default_rng(1234)


@pytest.fixture(autouse=True)
def no_faults_left():
    """Faults a test injected but did not use must not leak into the next."""
    yield
    if os.path.exists(DEBUGFS):
        inject("delay-us 0")
        inject("error-after 0")
