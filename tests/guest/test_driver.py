"""The driver's ioctls: every success path and every documented error,
timeouts and recovery through the device's fault injection, poll, signals,
several processes, and a process killed mid-job."""
from __future__ import annotations

import errno
import gc
import mmap
import multiprocessing
import os
import select
import signal
import time

import numpy as np
import pytest

import pyaccel
from pyaccel import Layer, Tensor, uapi
from pyaccel import reference as ref
from pyaccel.uapi import ffi

from conftest import inject, stat

LAYER_SIZE = ffi.sizeof("struct convaccel_layer")


def errno_of(fn, *args, **kwargs) -> int:
    """The errno of the AccelError fn raises."""
    with pytest.raises(pyaccel.AccelError) as e:
        fn(*args, **kwargs)
    return e.value.errno


def create(dev, size, **fields):
    req = ffi.new("struct convaccel_buffer_create *", dict(size=size, **fields))
    dev.ioctl("BUFFER_CREATE", req)
    return req


def destroy(dev, handle, pad=0):
    dev.ioctl("BUFFER_DESTROY", ffi.new("struct convaccel_buffer_destroy *",
                                        dict(handle=handle, pad=pad)))


# --- buffers ----------------------------------------------------------------

@pytest.mark.parametrize("size", [1, 4095, 4096, 4097, 1 << 20])
def test_buffer_sizes_map_and_hold_data(dev, size):
    with dev.buffer(size) as buf:
        a = buf.array(size, dtype=np.uint8)
        a[...] = np.arange(size) % 251
        assert np.array_equal(buf.array(size, dtype=np.uint8), np.arange(size) % 251)


def test_buffer_create_errors(dev):
    max_bytes = dev.info.max_buffer_mb << 20
    assert errno_of(create, dev, 0) == errno.EINVAL
    assert errno_of(create, dev, 4096, flags=1) == errno.EINVAL
    assert errno_of(create, dev, 4096, handle=5) == errno.EINVAL
    assert errno_of(create, dev, max_bytes + 1) == errno.E2BIG
    assert errno_of(create, dev, 1 << 62) == errno.E2BIG


def test_buffer_destroy_errors(dev):
    req = create(dev, 4096)
    assert errno_of(destroy, dev, req.handle, 1) == errno.EINVAL
    destroy(dev, req.handle)
    assert errno_of(destroy, dev, req.handle) == errno.ENOENT
    assert errno_of(destroy, dev, 12345) == errno.ENOENT


def test_mapping_outlives_handle_and_file(dev):
    gc.collect()                    # earlier tests' views must not count
    before = stat("buffers")
    buf = dev.buffer(4096)
    view = buf.array(1024)
    view[:] = 3.0
    buf.destroy()                   # handle gone, mapping stays
    dev.close()                     # file closed too
    assert view.sum() == 3.0 * 1024
    assert stat("buffers") == before + 1
    del view, buf
    gc.collect()
    assert stat("buffers") == before


def test_other_files_handles_and_jobs_are_enoent(dev):
    """dev's file has no buffers or jobs: the other file's ids mean nothing to it."""
    with pyaccel.open() as other:
        theirs = other.buffer(4096)
        t = Tensor(theirs.handle)
        geo = dict(n=1, c_in=1, h_in=4, w_in=4, c_out=1, h_out=4, w_out=4, groups=1, kh=1,
                   kw=1, stride_h=1, stride_w=1, dil_h=1, dil_w=1)
        assert errno_of(dev.submit, [Layer("conv", t, t, t, None, "none", geo)]) == errno.ENOENT
        assert errno_of(destroy, dev, theirs.handle) == errno.ENOENT
        with pytest.raises(OSError) as e:
            mmap.mmap(dev.fileno(), 4096, offset=theirs.handle << 32)
        assert e.value.errno == errno.EINVAL         # no such buffer in this file
        job = other.submit([Layer("conv", t, t, t, None, "none", geo)])
        req = ffi.new("struct convaccel_wait *", dict(job_id=job.id))
        assert errno_of(dev.ioctl, "WAIT", req) == errno.ENOENT
        assert job.wait(5).ok


# --- submit -------------------------------------------------------------------

GEO = dict(n=1, c_in=2, h_in=4, w_in=4, c_out=2, h_out=4, w_out=4, groups=1, kh=1, kw=1,
           stride_h=1, stride_w=1, dil_h=1, dil_w=1)


@pytest.fixture
def buf(dev):
    b = dev.buffer(1 << 16)
    b.array(1 << 14)[...] = 1.0
    return b


def raw_submit(dev, layer_list, **fields):
    arr = ffi.new("struct convaccel_layer[]", max(1, len(layer_list)))
    for i, layer in enumerate(layer_list):
        layer.fill(arr[i])
    req = dict(layers=int(ffi.cast("uintptr_t", arr)), layer_count=len(layer_list),
               layer_size=LAYER_SIZE)
    req.update(fields)
    creq = ffi.new("struct convaccel_submit *", req)
    dev.ioctl("SUBMIT", creq)
    return creq.job_id, arr


def one(buf, **change):
    t = lambda o: Tensor(buf.handle, o)  # noqa: E731
    return Layer("conv", t(0), t(4096), t(8192), None, "none", dict(GEO, **change))


def test_submit_and_wait_success(dev, buf):
    job_id, _ = raw_submit(dev, [one(buf)])
    assert job_id > 0
    req = ffi.new("struct convaccel_wait *", dict(job_id=job_id, timeout_ns=2**62))
    dev.ioctl("WAIT", req)
    assert req.status == uapi.CONSTANTS["CONVACCEL_JOB_STATUS_OK"]
    assert req.macs == 2 * 2 * 16 and req.latency_ns > 0
    assert np.all(buf.array(32, offset=4096) == 2.0)
    assert errno_of(dev.ioctl, "WAIT", req) == errno.ENOENT      # retired


@pytest.mark.parametrize("fields, err", [
    (dict(layer_count=0), errno.EINVAL),
    (dict(layer_count=1025), errno.EINVAL),
    (dict(layer_size=LAYER_SIZE - 8), errno.EINVAL),
    (dict(layer_size=LAYER_SIZE + 4), errno.EINVAL),
    (dict(flags=4), errno.EINVAL),
    (dict(job_id=7), errno.EINVAL),
    (dict(layers=16), errno.EFAULT),
], ids=["count-0", "count-1025", "size-small", "size-odd", "flags", "job-id-in",
        "bad-pointer"])
def test_submit_header_errors(dev, buf, fields, err):
    assert errno_of(raw_submit, dev, [one(buf)], **fields) == err


def test_submit_longer_struct_with_zero_tail(dev, buf):
    size = LAYER_SIZE + 8
    raw = ffi.new("char[]", size)
    one(buf).fill(ffi.cast("struct convaccel_layer *", raw))
    req = ffi.new("struct convaccel_submit *", dict(
        layers=int(ffi.cast("uintptr_t", raw)), layer_count=1, layer_size=size))
    dev.ioctl("SUBMIT", req)
    raw[size - 1] = b"\x01"
    req.job_id = 0
    assert errno_of(dev.ioctl, "SUBMIT", req) == errno.E2BIG     # a nonzero tail


def test_ioctl_structs_grow(dev):
    """A newer userspace's longer struct with a zero tail is taken; with a
    nonzero tail it is E2BIG (copy_struct_from_user); an argument shorter
    than the struct's first version is EINVAL."""
    import fcntl

    size = ffi.sizeof("struct convaccel_buffer_create")
    number = lambda n: (uapi.ioctl_number("BUFFER_CREATE") & ~(0x3FFF << 16)) | (n << 16)  # noqa: E731
    req = ffi.new("struct convaccel_buffer_create *", dict(size=4096))
    arg = bytearray(bytes(ffi.buffer(req)) + bytes(16))
    fcntl.ioctl(dev.fileno(), number(size + 16), arg)
    out = ffi.cast("struct convaccel_buffer_create *", ffi.from_buffer(arg))
    assert out.handle > 0 and arg[size:] == bytes(16)
    arg = bytearray(bytes(ffi.buffer(req)) + bytes(15) + b"\x01")
    with pytest.raises(OSError) as e:
        fcntl.ioctl(dev.fileno(), number(size + 16), arg)
    assert e.value.errno == errno.E2BIG
    with pytest.raises(OSError) as e:
        fcntl.ioctl(dev.fileno(), number(size - 8), bytearray(bytes(ffi.buffer(req))[:size - 8]))
    assert e.value.errno == errno.EINVAL


@pytest.mark.parametrize("change, err", [
    (dict(pad=1), errno.EINVAL),
    (dict(groups=0), errno.EINVAL),
    (dict(activation=7), errno.EINVAL),
    (dict(flags=2), errno.EINVAL),
    (dict(h_in=1 << 20), errno.EINVAL),                 # h_out does not follow
    (dict(h_in=128, w_in=128, h_out=128, w_out=128), errno.EOVERFLOW),
    (dict(n=1 << 31, c_in=1 << 31, h_in=1 << 31, w_in=1 << 31), errno.EINVAL),
    (dict(input_offset=2), errno.EINVAL),
    (dict(input_offset=1 << 16), errno.EOVERFLOW),
    (dict(input_offset=2**64 - 4), errno.EOVERFLOW),
    (dict(input_handle=999), errno.ENOENT),
    (dict(input_handle=0), errno.ENOENT),
    (dict(input_pad=1), errno.EINVAL),
], ids=lambda v: errno.errorcode[v] if not isinstance(v, dict) else
   "-".join(f"{k}={hex(x) if x > 999 else x}" for k, x in v.items()))
def test_submit_layer_errors(dev, buf, change, err):
    arr = ffi.new("struct convaccel_layer[]", 1)
    one(buf).fill(arr[0])
    for k, v in change.items():
        if k.startswith("input_"):
            setattr(arr[0].input, k[6:], v)
        else:
            setattr(arr[0], k, v)
    req = ffi.new("struct convaccel_submit *", dict(
        layers=int(ffi.cast("uintptr_t", arr)), layer_count=1, layer_size=LAYER_SIZE))
    assert errno_of(dev.ioctl, "SUBMIT", req) == err


def test_pooling_with_weight_is_einval(dev, buf):
    t = Tensor(buf.handle, 0)
    layer = Layer("maxpool", t, Tensor(buf.handle, 4096), t, None, "none",
                  dict(GEO, kh=2, kw=2, stride_h=2, stride_w=2, h_out=2, w_out=2))
    assert errno_of(dev.submit, [layer]) == errno.EINVAL


def test_too_many_unfinished_jobs_is_ebusy(dev, buf):
    jobs = [dev.submit([one(buf)]) for _ in range(64)]
    assert errno_of(dev.submit, [one(buf)]) == errno.EBUSY
    for j in jobs:
        j.wait(10)
    dev.submit([one(buf)]).wait(10)


# --- wait, poll, signals ----------------------------------------------------

def test_wait_errors_and_timeout(dev, buf):
    req = ffi.new("struct convaccel_wait *", dict(job_id=4242))
    assert errno_of(dev.ioctl, "WAIT", req) == errno.ENOENT
    req.job_id = 2**40
    assert errno_of(dev.ioctl, "WAIT", req) == errno.ENOENT
    inject("delay-us 300000")
    job = dev.submit([one(buf)])
    with pytest.raises(pyaccel.AccelError) as e:
        job.wait(0)
    assert e.value.errno == errno.ETIMEDOUT
    assert job.wait(5).ok                   # the job stayed valid


def test_poll_signals_completion(dev, buf):
    inject("delay-us 200000")
    p = select.poll()
    p.register(dev.fileno(), select.POLLIN)
    job = dev.submit([one(buf)])
    assert p.poll(0) == []
    assert p.poll(5000) == [(dev.fileno(), select.POLLIN)]
    job.wait(0)
    assert p.poll(0) == []


def test_signal_interrupts_wait_and_job_stays_valid(dev, buf):
    inject("delay-us 1000000")
    job = dev.submit([one(buf)])
    old = signal.signal(signal.SIGALRM, lambda *a: None)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.2)
        with pytest.raises(pyaccel.AccelError) as e:
            job.wait(5)
        assert e.value.errno == errno.EINTR
    finally:
        signal.signal(signal.SIGALRM, old)
    assert job.wait(5).ok


# --- timeouts and recovery ----------------------------------------------------

def test_hang_times_out_resets_and_recovers(dev, buf):
    resets, timeouts = stat("resets"), stat("timeouts")
    inject("hang")
    hung = dev.submit([one(buf)], timeout_ms=300)
    queued = [dev.submit([one(buf, c_out=1, c_in=2)]) for _ in range(3)]
    r = hung.wait(10, check=False)
    assert r.status == "timeout"
    for j in queued:                    # re-run after the reset, correct results
        assert j.wait(10).ok
    assert stat("resets") == resets + 1 and stat("timeouts") == timeouts + 1
    assert dev.submit([one(buf)]).wait(10).ok
    assert np.all(buf.array(32, offset=4096) == 2.0)


def test_lost_interrupt_is_recovered(dev, buf):
    lost, resets = stat("lost_irqs"), stat("resets")
    inject("lost-irq")
    r = dev.submit([one(buf)], timeout_ms=200).wait(10)
    assert r.ok
    assert stat("lost_irqs") == lost + 1
    assert stat("resets") == resets
    assert dev.submit([one(buf)]).wait(10).ok


def test_debugfs_recover_reruns_queued_jobs(dev, buf):
    inject("delay-us 300000")
    jobs = [dev.submit([one(buf)]) for _ in range(3)]
    with open("/sys/kernel/debug/convaccel0/recover", "w") as f:
        f.write("1")
    inject("delay-us 0")
    assert all(j.wait(10).ok for j in jobs)


# --- several processes -------------------------------------------------------

def _worker(seed: int, jobs: int, q) -> None:
    try:
        rng = np.random.default_rng(seed)
        with pyaccel.open() as d:
            for _ in range(jobs):
                c = int(rng.integers(1, 9))
                x = rng.standard_normal((1, c, 9, 9), dtype=np.float32)
                w = rng.standard_normal((c + 1, c, 3, 3), dtype=np.float32)
                got = d.conv2d(x, w, padding=1, timeout=30)
                np.testing.assert_allclose(got, ref.conv2d(x, w, padding=1), rtol=1e-4, atol=1e-4)
        q.put((seed, "ok"))
    except BaseException as e:  # report everything to the parent
        q.put((seed, repr(e)))


def test_four_processes_submit_concurrently():
    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(seed, 15, q)) for seed in range(4)]
    done_before = stat("jobs_done")
    for p in procs:
        p.start()
    results = dict(q.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(10)
    assert results == {seed: "ok" for seed in range(4)}
    assert stat("jobs_done") >= done_before + 60


def test_process_killed_mid_job_leaks_nothing(dev):
    buffers, nbytes = stat("buffers"), stat("buffer_bytes")
    inject("delay-us 2000000")
    pid = os.fork()
    if pid == 0:
        try:
            with pyaccel.open() as d:
                b = d.buffer(1 << 16)
                t = lambda o: Tensor(b.handle, o)  # noqa: E731
                for _ in range(3):
                    d.submit([Layer("conv", t(0), t(4096), t(8192), None, "none", GEO)])
                os.write(1, b"")
                time.sleep(30)
        finally:
            os._exit(0)
    time.sleep(0.5)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    inject("delay-us 0")
    deadline = time.monotonic() + 15
    while stat("buffers") != buffers and time.monotonic() < deadline:
        time.sleep(0.1)
    assert (stat("buffers"), stat("buffer_bytes")) == (buffers, nbytes)
    x = np.ones((1, 2, 4, 4), np.float32)
    assert np.all(dev.conv2d(x, np.ones((2, 2, 1, 1), np.float32)) == 2.0)


def test_files_share_the_device_round_robin(buf):
    """File A queues 12 slow jobs, then file B one: B's job runs after A's
    jobs already on the device, not after all of A's."""
    inject("delay-us 20000")
    with pyaccel.open() as a, pyaccel.open() as b:
        ab, bb = a.buffer(1 << 16), b.buffer(1 << 16)
        t = lambda h, o: Tensor(h, o)  # noqa: E731
        layer = lambda h: Layer("conv", t(h, 0), t(h, 4096), t(h, 8192), None, "none", GEO)  # noqa: E731
        def submit(f, h):
            """(job, earliest and latest time the driver can have stamped it)"""
            t0 = time.monotonic_ns()
            job = f.submit([layer(h)])
            return job, t0, time.monotonic_ns()

        a_jobs = [submit(a, ab.handle) for _ in range(12)]
        b_job, b0, b1 = submit(b, bb.handle)
        b_lat = b_job.wait(10).latency_ns
        # each job's end, as early and as late as the submit's own duration allows
        a_lat = [(j.wait(10).latency_ns, t0, t1) for j, t0, t1 in a_jobs]
        a_ends = [(t0 + lat, t1 + lat) for lat, t0, t1 in a_lat]
        depth = a.info.queue_depth
    # A's jobs that surely ended after B was submitted and before B ended: at
    # most those already on the device and the one A's turn gets (a busy guest
    # may finish many of A's jobs before B even submits: those do not count;
    # counting only sure ones keeps a slow submit from looking like a wait)
    ahead = sum(lo > b1 and hi < b0 + b_lat for lo, hi in a_ends)
    assert ahead <= depth + 1, f"B waited behind {ahead} of A's jobs"


def test_buffer_used_by_a_queued_job_stays_alive(dev):
    gc.collect()
    buffers = stat("buffers")
    inject("delay-us 200000")
    b = dev.buffer(1 << 16)
    b.array(32)[...] = 1.0
    t = lambda o: Tensor(b.handle, o)  # noqa: E731
    job = dev.submit([Layer("conv", t(0), t(4096), t(8192), None, "none", GEO)])
    b.destroy()                               # handle gone while the job waits
    assert stat("buffers") == buffers + 1     # the job still holds it
    assert job.wait(10).ok
    assert stat("buffers") == buffers
