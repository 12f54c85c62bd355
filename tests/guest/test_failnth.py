"""Error paths under allocation failure: for each ioctl and for mmap, fail
the 1st, 2nd, ... allocation the call makes (/proc/thread-self/fail-nth,
with failslab, fail_page_alloc and fail_usercopy) until the call succeeds. Every failed
call must return ENOMEM (or EFAULT for a failed user copy), leak nothing,
and leave the file usable.

Needs a kernel with CONFIG_FAULT_INJECTION, FAILSLAB, FAIL_PAGE_ALLOC and
FAULT_INJECTION_DEBUG_FS: the debug kernel (make stress, make test
KERNEL=debug). On other kernels it is skipped, with that reason.
"""
from __future__ import annotations

import contextlib
import errno
import gc
import mmap
import os
import time
from collections import Counter

import numpy as np
import pytest

import pyaccel
from pyaccel import Layer, Tensor
from pyaccel.uapi import ffi

from devctl import stat

FAIL_NTH = "/proc/thread-self/fail-nth"
DEBUGFS = "/sys/kernel/debug"
ALLOWED = {errno.ENOMEM, errno.EFAULT}
MAX_N = 500

AVAILABLE = os.path.exists(FAIL_NTH) and os.path.isdir(f"{DEBUGFS}/failslab")
pytestmark = pytest.mark.skipif(
    not AVAILABLE,
    reason="this kernel has no fault injection (fail-nth, failslab): "
           "run with the debug kernel (make stress, make test KERNEL=debug)")


@contextlib.contextmanager
def fault_injection():
    """Let fail-nth fail sleeping allocations too, quietly (a stack dump per
    injected failure would read as a kernel problem)."""
    saved = {}
    for attr in ("failslab", "fail_page_alloc", "fail_usercopy"):
        for name, value in (("ignore-gfp-wait", "N"), ("verbose", "0")):
            path = f"{DEBUGFS}/{attr}/{name}"
            if os.path.exists(path):
                saved[path] = open(path).read().strip()
                with open(path, "w") as f:
                    f.write(value)
    if os.path.exists(f"{DEBUGFS}/fail_page_alloc/min-order"):
        saved[f"{DEBUGFS}/fail_page_alloc/min-order"] = "1"
        with open(f"{DEBUGFS}/fail_page_alloc/min-order", "w") as f:
            f.write("0")
    yield
    for path, value in saved.items():
        with open(path, "w") as f:
            f.write(value)


def armed(fd: int) -> int:
    """fail-nth's count left (0: the fault was injected). Reading copies to
    user space, a fault point of its own (fail_usercopy): if the armed fault
    fails the read itself, the call before had no fault point left."""
    try:
        return int(os.pread(fd, 16, 0) or b"0")     # procfs: no lseek, but pread at 0
    except OSError as e:
        if e.errno != errno.EFAULT:
            raise
        return 1


def disarm(fd: int) -> None:
    """Write 0 to fail-nth. The write copies from user space, a fault point:
    if the armed fault fails the write, that disarms it too."""
    try:
        os.write(fd, b"0")
    except OSError as e:
        if e.errno != errno.EFAULT:
            raise


def each_failure(call, undo=None):
    """Run call() with its n-th fault point failing, n = 1, 2, ... until it
    runs whole. Return the errnos of the failed attempts (one per n).

    An injected fault the kernel absorbs (a fallback: a contiguous
    allocation retried from another pool, say) lets the call succeed: undo()
    then takes its effect back so the next n starts from the same state (no
    undo: stop there, the call has succeeded)."""
    fd = os.open(FAIL_NTH, os.O_RDWR)
    errors = []
    try:
        for n in range(1, MAX_N):
            os.write(fd, str(n).encode())
            try:
                call()
                err = None
            except (pyaccel.AccelError, OSError) as e:
                err = e.errno
            left = armed(fd)
            disarm(fd)
            if left:                                # no n-th fault point: it ran whole
                assert err is None, f"failed with errno {err} without an injected fault"
                return errors
            if err is None:                         # injected, and absorbed
                if undo is None:
                    return errors
                undo()
                continue
            errors.append(err)
    finally:
        os.close(fd)
    raise AssertionError(f"still failing after {MAX_N} injected allocation failures")


def check(errors: list, what: str, figures: dict) -> None:
    figures["injected"][what] = len(errors)
    figures["errnos"].update(errno.errorcode.get(e, str(e)) for e in errors)
    bad = [e for e in errors if e not in ALLOWED]
    assert not bad, f"{what}: an injected allocation failure gave errno {bad}, " \
                    f"not ENOMEM/EFAULT"


GEO = dict(n=1, c_in=2, h_in=4, w_in=4, c_out=2, h_out=4, w_out=4, groups=1, kh=1, kw=1,
           stride_h=1, stride_w=1, dil_h=1, dil_w=1)


def run() -> dict:
    """Every ioctl and mmap under each of its allocation failures in turn;
    raises AssertionError at the first wrong errno, leak or unusable file.
    Returns the failures injected per call and their errnos."""
    figures = {"injected": {}, "errnos": Counter()}
    with fault_injection():
        _every_call(figures)
    figures["errnos"] = dict(figures["errnos"])
    return figures


def test_failnth_every_ioctl_and_mmap():
    figures = run()
    assert sum(figures["injected"].values()), f"no allocation failure was injected: {figures}"
    print(figures)


def _every_call(figures: dict) -> None:
    gc.collect()
    before = stat("buffers")
    with pyaccel.open() as dev:
        info = ffi.new("struct convaccel_info *")
        check(each_failure(lambda: dev.ioctl("INFO", info)), "INFO", figures)

        # Arguments are made before arming: the injected failure must hit the
        # ioctl, not a Python allocation on the way to it.
        creq = ffi.new("struct convaccel_buffer_create *")
        made = []

        def create():
            creq.size, creq.handle, creq.mmap_offset = 1 << 16, 0, 0
            dev.ioctl("BUFFER_CREATE", creq)
            made.append(creq.handle)

        def uncreate():
            dev.ioctl("BUFFER_DESTROY", ffi.new("struct convaccel_buffer_destroy *",
                                                dict(handle=made.pop())))

        errors = each_failure(create, uncreate)
        check(errors, "BUFFER_CREATE", figures)
        assert len(made) == 1 and stat("buffers") == before + 1, "a failed create leaked"
        h = made[0]

        maps = []
        errors = each_failure(lambda: maps.append(
            mmap.mmap(dev.fileno(), 1 << 16, mmap.MAP_SHARED, offset=h << 32)),
            lambda: maps.pop().close())
        check(errors, "mmap", figures)
        np.frombuffer(maps[0], np.float32)[:] = 1.0

        t = lambda o: Tensor(h, o)  # noqa: E731
        arr = ffi.new("struct convaccel_layer[]", 1)
        Layer("conv", t(0), t(4096), t(8192), None, "none", GEO).fill(arr[0])
        sreq = ffi.new("struct convaccel_submit *")
        ids = []

        def submit():
            sreq.layers = int(ffi.cast("uintptr_t", arr))
            sreq.layer_count, sreq.layer_size = 1, ffi.sizeof("struct convaccel_layer")
            sreq.job_id = 0
            dev.ioctl("SUBMIT", sreq)
            ids.append(sreq.job_id)

        def unsubmit():
            dev.ioctl("WAIT", ffi.new("struct convaccel_wait *", dict(
                job_id=ids.pop(), timeout_ns=time.monotonic_ns() + 10**10)))

        check(each_failure(submit, unsubmit), "SUBMIT", figures)
        assert len(ids) == 1

        wreq = ffi.new("struct convaccel_wait *")

        def wait():
            wreq.job_id, wreq.timeout_ns = ids[0], time.monotonic_ns() + 10**10
            dev.ioctl("WAIT", wreq)
            assert wreq.status == 0

        check(each_failure(wait), "WAIT", figures)
        assert np.all(np.frombuffer(maps[0], np.float32)[1024:1024 + 32] == 2.0)

        dreq = ffi.new("struct convaccel_buffer_destroy *", dict(handle=h))

        def destroy():
            dev.ioctl("BUFFER_DESTROY", dreq)

        check(each_failure(destroy), "BUFFER_DESTROY", figures)
        # the file is still usable after all that
        x = np.ones((1, 1, 2, 2), np.float32)
        assert dev.conv2d(x, np.full((1, 1, 1, 1), 2, np.float32)).sum() == 8.0
        for m in maps:
            m.close()
    gc.collect()
    assert stat("buffers") == before, "buffers leaked under allocation failures"
