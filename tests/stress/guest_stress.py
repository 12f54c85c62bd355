"""In-guest stress suites (run by tests/stress/stress.py inside the board):
ioctl fuzz, fault recovery, load, life cycle, isolation, fail-nth. Prints nothing but
progress; writes every figure to a JSON file.

    python3 tests/stress/guest_stress.py OUT.json [--calls N] [--fuzz-seconds S]
        [--seconds S] [--processes P] [--rounds R] [--cycles C] [--only SUITE,...]
"""
from __future__ import annotations

import argparse
import errno
import gc
import json
import mmap
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "guest"))
import pyaccel  # noqa: E402
from devctl import SYSFS, inject, stat  # noqa: E402
import ioctl_fuzz  # noqa: E402
from pyaccel import Layer, Tensor  # noqa: E402
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


# --- ioctl fuzz (ioctl_fuzz.py) ----------------------------------------------

def ioctl_fuzz_suite(calls: int, seconds: float, seed: int) -> dict:
    """The stateful fuzz, then: the device computes right, every buffer is
    gone once the files are closed, the kernel log is clean."""
    warn, buffers = kernel_trouble(), stat("buffers")
    results = ioctl_fuzz.run_isolated(calls, seconds, seed)
    inject("delay-us 0")
    inject("error-after 0")
    with pyaccel.open() as d:
        results["wrong_after"] = check_conv(d, np.random.default_rng(seed), 10)
    results["buffers_leaked"] = leaked_buffers() - buffers
    results["kernel_warnings"] = kernel_trouble() - warn
    return results


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
        breaches += e.errno != errno.EINVAL     # no such buffer in b's file
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


def failnth() -> dict:
    """tests/guest/test_failnth.py's run(): every ioctl and mmap under each
    of its allocation failures in turn (debug kernel: fail-nth, failslab,
    fail_page_alloc, fail_usercopy). On a kernel without fault injection the
    suite is reported as not run, with the reason."""
    import test_failnth

    if not test_failnth.AVAILABLE:
        return {"run": "no: this kernel has no fault injection (the debug kernel has)",
                "failures": 0, "buffers_leaked": 0, "kernel_warnings": 0}
    warn0 = kernel_trouble()
    before = leaked_buffers()
    try:
        figures = test_failnth.run()
        failures, message = 0, ""
    except AssertionError as e:
        figures, failures, message = {"injected": {}, "errnos": {}}, 1, str(e)
        log(f"failnth: {e}")
    gc.collect()
    return {"run": "yes", "calls": len(figures["injected"]),
            "injected": sum(figures["injected"].values()), "per_call": figures["injected"],
            "errnos": figures["errnos"], "failures": failures, "failure": message,
            "buffers_leaked": leaked_buffers() - before,
            "kernel_warnings": kernel_trouble() - warn0}


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--calls", type=int, default=20000, help="ioctl fuzz: calls to make")
    p.add_argument("--fuzz-seconds", type=float, default=900, help="ioctl fuzz: time budget")
    p.add_argument("--seconds", type=float, default=60)
    p.add_argument("--processes", type=int, default=4)
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--cycles", type=int, default=50)
    p.add_argument("--only", help="comma-separated suites to run (default: all)")
    a = p.parse_args()
    warn0 = kernel_trouble()
    results = {}
    for name, fn in (("ioctl_fuzz", lambda: ioctl_fuzz_suite(a.calls, a.fuzz_seconds, 1)),
                     ("fault_recovery", lambda: fault_recovery(a.rounds)),
                     ("load", lambda: load(a.processes, a.seconds)),
                     ("lifecycle", lambda: lifecycle(a.cycles)),
                     ("isolation", isolation),
                     ("failnth", failnth)):
        if a.only and name not in a.only.split(","):
            continue
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
