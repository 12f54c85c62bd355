"""In-guest stress suites (run by tests/stress/stress.py inside the board):
ioctl fuzz, fault recovery, load, life cycle, isolation. Prints nothing but
progress; writes every figure to a JSON file.

    python3 tests/stress/guest_stress.py OUT.json [--seconds S] [--calls N]
"""
from __future__ import annotations

import argparse
import collections
import errno
import gc
import json
import mmap
import os
import random
import re
import signal
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "guest"))
import pyaccel  # noqa: E402
from devctl import DEBUGFS, SYSFS, inject, stat  # noqa: E402
from pyaccel import Layer, Tensor, uapi  # noqa: E402
from pyaccel.device import _libc as libc  # noqa: E402 - ioctl without exceptions
from pyaccel import reference as ref
from pyaccel.uapi import ffi

MODULE = "/pyaccel/build/kernel/convaccel.ko"
KERNEL_TROUBLE = re.compile(r"BUG:|WARNING:|Oops|Call trace:|Unable to handle|refcount_t:")
KERNEL_POINTER = re.compile(r"\bf{4}[0-9a-f]{12}\b", re.I)


def log(msg: str) -> None:
    print(f"[stress] {msg}", file=sys.stderr, flush=True)


def kernel_trouble() -> int:
    out = subprocess.run(["dmesg"], capture_output=True, text=True).stdout
    return sum(bool(KERNEL_TROUBLE.search(line)) for line in out.splitlines())


def leaked_buffers() -> int:
    gc.collect()
    deadline = time.monotonic() + 10
    while stat("buffers") and time.monotonic() < deadline:
        time.sleep(0.05)
    return stat("buffers")


def check_conv(dev, rng, count: int = 5) -> int:
    """Wrong results of a few random convolutions (must be 0)."""
    wrong = 0
    for _ in range(count):
        c = int(rng.integers(1, 9))
        x = rng.standard_normal((1, c, 9, 9), dtype=np.float32)
        w = rng.standard_normal((c + 2, c, 3, 3), dtype=np.float32)
        try:
            got = dev.conv2d(x, w, padding=1, timeout=30)
            wrong += not np.allclose(got, ref.conv2d(x, w, padding=1), rtol=1e-4, atol=1e-4)
        except pyaccel.AccelError:
            wrong += 1
    return wrong


# --- ioctl fuzz ------------------------------------------------------------

STRUCTS = {"INFO": "struct convaccel_info", "BUFFER_CREATE": "struct convaccel_buffer_create",
           "BUFFER_DESTROY": "struct convaccel_buffer_destroy",
           "SUBMIT": "struct convaccel_submit", "WAIT": "struct convaccel_wait"}
def raw_ioctl(fd: int, request: int, arg) -> int:
    """ioctl returning -errno (the fuzz wants every errno, not exceptions)."""
    return 0 if libc.ioctl(fd, request, arg) >= 0 else -ffi.errno


def fuzz_value(rnd: random.Random, handles: list[int], jobs: list[int]) -> int:
    return rnd.choice([0, 1, 2, 3, 4, 7, 8, 64, 4096, 0xFFFFFFFF, 0x7FFFFFFF, 2**31, 2**63,
                       2**64 - 1, rnd.getrandbits(64), rnd.getrandbits(16),
                       rnd.choice(handles or [1]), rnd.choice(jobs or [1])])


def fuzz_layers(rnd, handles, count):
    arr = ffi.new("struct convaccel_layer[]", count)
    for i in range(count):
        l = arr[i]
        geo = dict(op=rnd.choice([1, 2, 3, 0, 9]), n=1, c_in=rnd.randint(1, 4), h_in=8, w_in=8,
                   kh=rnd.choice([1, 3]), groups=1, stride_h=1, stride_w=1, dil_h=1, dil_w=1)
        geo.update(c_out=geo["c_in"], kw=geo["kh"], h_out=9 - geo["kh"], w_out=9 - geo["kh"])
        for k, v in geo.items():
            setattr(l, k, v)
        for t in ("input", "weight", "bias", "output"):
            getattr(l, t).handle = rnd.choice(handles or [0])
            getattr(l, t).offset = rnd.choice([0, 4096, 8192])
        for _ in range(rnd.randint(0, 4)):      # corrupt some fields
            name = rnd.choice(uapi.struct_fields("struct convaccel_layer"))
            if name in ("input", "weight", "bias", "output"):
                setattr(getattr(l, name), rnd.choice(["handle", "pad", "offset"]),
                        fuzz_value(rnd, handles, []) & 0xFFFFFFFF)
            else:
                setattr(l, name, fuzz_value(rnd, handles, []) & 0xFFFFFFFF)
    return arr


def ioctl_fuzz(calls: int, seed: int) -> dict:
    rnd = random.Random(seed)
    errnos: collections.Counter = collections.Counter()
    dev = pyaccel.open()
    other = pyaccel.open()
    foreign = [other.buffer(1 << 16).handle]
    handles: list[int] = [dev.buffer(1 << 16).handle for _ in range(3)]
    jobs: list[int] = []
    keep = []
    for i in range(calls):
        name = rnd.choice(list(STRUCTS))
        arg = ffi.new(STRUCTS[name] + " *")
        raw = ffi.buffer(arg)
        kind = rnd.random()
        if kind < 0.15:                                      # random bytes
            raw[:] = bytes(rnd.getrandbits(8) for _ in range(len(raw)))
        else:                                                 # random fields
            for field in uapi.struct_fields(STRUCTS[name]):
                if rnd.random() < 0.5:
                    try:
                        setattr(arg, field, fuzz_value(rnd, handles + foreign, jobs))
                    except (OverflowError, TypeError):
                        pass
        if name == "SUBMIT" and rnd.random() < 0.8:
            n = rnd.choice([1, 1, 2, 5])
            layers = fuzz_layers(rnd, handles + foreign, n)
            keep = [layers]
            arg.layers = int(ffi.cast("uintptr_t", layers))
            arg.layer_count = n if rnd.random() < 0.9 else fuzz_value(rnd, [], []) & 0xFFFFFFFF
            arg.layer_size = ffi.sizeof("struct convaccel_layer") if rnd.random() < 0.9 else \
                rnd.choice([0, 8, 160, 4096])
            arg.flags = 0 if rnd.random() < 0.9 else 1
            arg.job_id = 0
            arg.timeout_ms = rnd.choice([0, 0, 0, 5, 1000])
        if name == "BUFFER_CREATE" and rnd.random() < 0.5:
            arg.size, arg.flags, arg.handle, arg.mmap_offset = rnd.choice([1, 4096, 1 << 20]), 0, 0, 0
        if name == "WAIT" and rnd.random() < 0.7:
            arg.job_id = rnd.choice(jobs or [1])
            arg.timeout_ns = time.monotonic_ns() + rnd.choice([0, 10**6, 10**8])
            if rnd.random() < 0.5:
                arg.layer_stats = 0
        request = uapi.ioctl_number(name)
        if rnd.random() < 0.05:                               # wrong size/dir/nr
            request ^= 1 << rnd.randrange(32)
        ret = raw_ioctl(dev.fileno(), request, arg)
        errnos[errno.errorcode.get(-ret, str(-ret)) if ret else "ok"] += 1
        if ret == 0 and name == "SUBMIT" and request == uapi.ioctl_number("SUBMIT"):
            jobs.append(arg.job_id)
        if ret == 0 and name == "BUFFER_CREATE" and request == uapi.ioctl_number("BUFFER_CREATE"):
            handles.append(arg.handle)
            if len(handles) > 12:                             # keep memory bounded
                h = handles.pop(3)
                raw_ioctl(dev.fileno(), uapi.ioctl_number("BUFFER_DESTROY"),
                          ffi.new("struct convaccel_buffer_destroy *", {"handle": h}))
        if ret == 0 and name == "WAIT" and arg.job_id in jobs:
            jobs.remove(arg.job_id)
        if rnd.random() < 0.01:                               # mmap with a random offset
            try:
                mmap.mmap(dev.fileno(), 4096, offset=(fuzz_value(rnd, handles, []) << 12)
                          & ((1 << 63) - 4096)).close()
            except (OSError, OverflowError, ValueError):
                pass
        if i % 1000 == 0:
            log(f"ioctl fuzz: {i}/{calls} calls")
    del keep
    dev.close()
    other.close()
    inject("delay-us 0")
    inject("error-after 0")
    with pyaccel.open() as d:
        wrong = check_conv(d, np.random.default_rng(seed), 10)
    return {"calls": calls, "errnos": dict(errnos), "wrong_after": wrong}


def in_children(worker, args_list: list[tuple]) -> tuple[int, int]:
    """Run worker(*args, result_fd) in one forked process per args; each
    writes two counters to result_fd. Returns their sums."""
    children = []
    for args in args_list:
        rfd, wfd = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(rfd)
            worker(*args, wfd)          # ends with os._exit
        os.close(wfd)
        children.append((pid, rfd))
    total = [0, 0]
    for pid, rfd in children:
        os.waitpid(pid, 0)
        counters = os.read(rfd, 64).split() or [b"0", b"1"]   # nothing: the child failed
        os.close(rfd)
        total[0] += int(counters[0])
        total[1] += int(counters[1])
    return total[0], total[1]


# --- fault recovery --------------------------------------------------------

FAULTS = ["hang", "dma-error", "lost-irq", "error-after 1", "delay-us 50000"]


def _queue_worker(seed: int, jobs: int, result_fd: int) -> None:
    rng = np.random.default_rng(seed)
    wrong = lost = 0
    try:
        with pyaccel.open() as d:
            for _ in range(jobs):
                x = rng.standard_normal((1, 4, 8, 8), dtype=np.float32)
                w = rng.standard_normal((4, 4, 3, 3), dtype=np.float32)
                for attempt in range(3):      # a faulted job is retried, as an app would
                    try:
                        got = d.conv2d(x, w, padding=1, timeout=30)
                        wrong += not np.allclose(got, ref.conv2d(x, w, padding=1),
                                                 rtol=1e-4, atol=1e-4)
                        break
                    except pyaccel.JobError:
                        continue
                else:
                    lost += 1
    except BaseException:
        lost += jobs
    os.write(result_fd, f"{wrong} {lost}\n".encode())
    os._exit(0)


def fault_recovery(rounds: int) -> dict:
    injected = recovered = lost = wrong = 0
    times = []
    for r in range(rounds):
        fault = FAULTS[r % len(FAULTS)]
        resets = stat("resets")
        with pyaccel.open() as dev:
            inject(fault)
            injected += 1
            t0 = time.monotonic()
            # a single job meets the fault (hang: budget 300 ms), then the device must work
            b = dev.buffer(1 << 16)
            b.array(1 << 12)[...] = 1.0
            t = lambda o: Tensor(b.handle, o)  # noqa: E731
            geo = dict(n=1, c_in=2, h_in=4, w_in=4, c_out=2, h_out=4, w_out=4, groups=1,
                       kh=1, kw=1, stride_h=1, stride_w=1, dil_h=1, dil_w=1)
            res = dev.submit([Layer("conv", t(0), t(4096), t(8192), None, "none", geo)],
                             timeout_ms=300).wait(10, check=False)
            expected = {"hang": "timeout", "dma-error": "error", "error-after 1": "error"}
            if res.status != expected.get(fault, "ok"):
                lost += 1
            inject("delay-us 0")
            ok = check_conv(dev, np.random.default_rng(r), 3) == 0
            times.append(time.monotonic() - t0)
            recovered += ok
            wrong += not ok
            if fault == "hang" and stat("resets") != resets + 1:
                lost += 1
        # the same fault while three processes queue jobs
        inject(fault)
        w, l = in_children(_queue_worker, [(seed + 10 * r, 8) for seed in range(3)])
        wrong += w
        lost += l
        inject("delay-us 0")
        inject("error-after 0")
        log(f"fault recovery: round {r + 1}/{rounds} ({fault})")
    return {"injected": injected, "recovered": recovered, "lost_or_wrong": lost + wrong,
            "recover_s_mean": float(np.mean(times)), "recover_s_max": float(np.max(times))}


# --- load ------------------------------------------------------------------

def _load_worker(seed: int, deadline: float, result_fd: int) -> None:
    rng = np.random.default_rng(seed)
    jobs = wrong = 0
    with pyaccel.open() as d:
        while time.monotonic() < deadline:
            c = int(rng.integers(1, 33))
            h = int(rng.integers(4, 33))
            k = int(rng.choice([1, 3, 5]))
            x = rng.standard_normal((1, c, h, h), dtype=np.float32)
            w = rng.standard_normal((int(rng.integers(1, 33)), c, k, k), dtype=np.float32)
            got = d.conv2d(x, w, padding=k // 2, activation="relu", timeout=60)
            want = ref.conv2d(x, w, padding=k // 2, activation="relu")
            wrong += not np.allclose(got, want, rtol=1e-4, atol=1e-4 * (c * k * k) ** 0.5)
            jobs += 1
    os.write(result_fd, f"{jobs} {wrong}\n".encode())
    os._exit(0)


def meminfo(key: str) -> int:
    for line in open("/proc/meminfo"):
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def load(processes: int, seconds: float) -> dict:
    gc.collect()
    buffers, nbytes = stat("buffers"), stat("buffer_bytes")
    slab = meminfo("Slab")
    done = stat("jobs_done")
    deadline = time.monotonic() + seconds
    jobs, wrong = in_children(_load_worker, [(seed, deadline) for seed in range(processes)])
    return {"processes": processes, "seconds": seconds, "jobs": jobs,
            "jobs_per_s": jobs / seconds, "wrong": wrong,
            "driver_jobs": stat("jobs_done") - done,
            "buffers_leaked": leaked_buffers() - buffers,
            "buffer_bytes_leaked": stat("buffer_bytes") - nbytes,
            "slab_delta_kb": meminfo("Slab") - slab}


# --- life cycle -------------------------------------------------------------

def lifecycle(cycles: int) -> dict:
    warn = kernel_trouble()
    for _ in range(cycles):
        gc.collect()
        subprocess.run(["rmmod", "convaccel"], check=True)
        subprocess.run(["insmod", MODULE], check=True)
    drv = "/sys/bus/platform/drivers/convaccel"
    for _ in range(cycles):
        open(f"{drv}/unbind", "w").write("a100000.accel")
        open(f"{drv}/bind", "w").write("a100000.accel")
    kills = 5
    for _ in range(kills):
        inject("delay-us 300000")
        pid = os.fork()
        if pid == 0:
            d = pyaccel.open()
            b = d.buffer(1 << 16)
            t = lambda o: Tensor(b.handle, o)  # noqa: E731
            geo = dict(n=1, c_in=2, h_in=4, w_in=4, c_out=2, h_out=4, w_out=4, groups=1,
                       kh=1, kw=1, stride_h=1, stride_w=1, dil_h=1, dil_w=1)
            for _ in range(4):
                d.submit([Layer("conv", t(0), t(4096), t(8192), None, "none", geo)])
            time.sleep(60)
            os._exit(0)
        time.sleep(0.3)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    inject("delay-us 0")
    dev = pyaccel.open()
    views = [dev.buffer(4096).array(16) for _ in range(4)]
    dev.close()                                  # arrays still mapped
    closed_ok = all(float(v.sum()) == 0.0 for v in views)
    del views
    opens = [pyaccel.open() for _ in range(200)]
    for d in opens:
        d.close()
    return {"load_unload_cycles": cycles, "unbind_bind_cycles": cycles, "kills": kills,
            "close_with_mapped_arrays_ok": int(closed_ok), "opens": 200,
            "buffers_leaked": leaked_buffers(), "warnings": kernel_trouble() - warn}


# --- isolation ---------------------------------------------------------------

def isolation() -> dict:
    breaches = 0
    a, b = pyaccel.open(), pyaccel.open()
    buf = a.buffer(4096)
    secret = buf.array(4, dtype=np.uint8)
    secret[:] = [1, 2, 3, 4]
    geo = dict(n=1, c_in=1, h_in=4, w_in=4, c_out=1, h_out=4, w_out=4, groups=1, kh=1, kw=1,
               stride_h=1, stride_w=1, dil_h=1, dil_w=1)
    t = Tensor(buf.handle)
    job = a.submit([Layer("conv", t, t, t, None, "none", geo)])
    try:                                        # map a's buffer through b's file
        mmap.mmap(b.fileno(), 4096, offset=buf.handle << 32).close()
        breaches += 1
    except OSError as e:
        breaches += e.errno != errno.ENOENT
    for call in (lambda: b.submit([Layer("conv", t, t, t, None, "none", geo)]),
                 lambda: b.ioctl("BUFFER_DESTROY", ffi.new(
                     "struct convaccel_buffer_destroy *", {"handle": buf.handle})),
                 lambda: b.ioctl("WAIT", ffi.new("struct convaccel_wait *",
                                                 {"job_id": job.id}))):
        try:
            call()
            breaches += 1
        except pyaccel.AccelError as e:
            breaches += e.errno != errno.ENOENT
    job.wait(10)
    mode = os.stat("/dev/convaccel0").st_mode & 0o777
    nonroot = subprocess.run([sys.executable, "-c", "import pyaccel; pyaccel.open()"],
                             capture_output=True, text=True,
                             preexec_fn=lambda: os.setuid(65534))
    breaches += nonroot.returncode == 0
    leaks = 0
    info = ffi.new("struct convaccel_info *")
    a.ioctl("INFO", info)
    leaks += bool(KERNEL_POINTER.search(bytes(ffi.buffer(info)).hex()))
    res = a.submit([Layer("conv", t, t, t, None, "none", geo)])
    req = ffi.new("struct convaccel_wait *", {"job_id": res.id, "timeout_ns": 2**62})
    a.ioctl("WAIT", req)
    words = np.frombuffer(bytes(ffi.buffer(req)), dtype=np.uint64)
    leaks += int(np.any((words >> np.uint64(48)) == np.uint64(0xFFFF)))
    for name in os.listdir(SYSFS):
        path = os.path.join(SYSFS, name)
        if os.path.isfile(path) and os.access(path, os.R_OK):
            try:
                leaks += bool(KERNEL_POINTER.search(open(path).read()))
            except OSError:
                pass
    dmesg = subprocess.run(["dmesg"], capture_output=True, text=True).stdout
    leaks += sum(bool(KERNEL_POINTER.search(l)) for l in dmesg.splitlines() if "convaccel" in l)
    a.close()
    b.close()
    return {"node_mode": oct(mode), "breaches": breaches, "kernel_address_leaks": leaks}


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--calls", type=int, default=20000)
    p.add_argument("--seconds", type=float, default=60)
    p.add_argument("--processes", type=int, default=4)
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--cycles", type=int, default=50)
    a = p.parse_args()
    warn0 = kernel_trouble()
    results = {}
    for name, fn in (("ioctl_fuzz", lambda: ioctl_fuzz(a.calls, 1)),
                     ("fault_recovery", lambda: fault_recovery(a.rounds)),
                     ("load", lambda: load(a.processes, a.seconds)),
                     ("lifecycle", lambda: lifecycle(a.cycles)),
                     ("isolation", isolation)):
        log(f"{name} ...")
        t0 = time.monotonic()
        results[name] = fn()
        results[name]["wall_s"] = round(time.monotonic() - t0, 1)
        with open(a.out, "w") as f:
            json.dump(results, f, indent=1)
    results["kernel_warnings"] = kernel_trouble() - warn0
    with open(a.out, "w") as f:
        json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
