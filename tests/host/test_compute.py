"""The device's compute kernels (qemu/compute, as build/libconvaccel_compute.so)
against the numpy oracle (pyaccel.reference), and the oracle against naive loops.

Tolerance: inputs and weights are uniform in [-1, 1), and the library sums
fan_in = c_in / groups * kh * kw float32 products in an order of its own
(OpenBLAS's blocked GEMM), while the oracle sums in float64. Each float32
addition rounds by at most 2**-24 of the partial sum; the errors of a sum of
fan_in such terms behave like a random walk, and partial sums grow like
sqrt(fan_in), so the absolute error grows roughly like fan_in * 2**-24 for the
worst orderings and far less in practice. ``atol = 1e-4 * sqrt(fan_in)`` with
``rtol = 1e-4`` leaves two or more orders of magnitude of headroom over the
errors observed, yet still catches any wrong tap, offset or channel (those
change results by O(0.1..1)). Pooling sums at most kh * kw terms: same rule.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import threading
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from pyaccel import reference as ref

cffi = pytest.importorskip("cffi")

TOP = Path(__file__).resolve().parents[2]
HEADER = TOP / "qemu" / "compute" / "convaccel_compute.h"
SOURCE = TOP / "qemu" / "compute" / "convaccel_compute.c"
ACTS = {None: 0, "relu": 1, "relu6": 2}


def header_cdef() -> str:
    """The header as cffi cdef text: comments and preprocessor lines removed."""
    text = re.sub(r"/\*.*?\*/", "", HEADER.read_text(), flags=re.S)
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))


@pytest.fixture(scope="session")
def cvc():
    """(ffi, lib) for the library, built first if missing or older than its sources."""
    proc = subprocess.run(["bash", str(TOP / "qemu" / "compute" / "build.sh")],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.fail(f"building the compute library failed:\n{proc.stderr[-4000:]}",
                    pytrace=False)
    ffi = cffi.FFI()
    ffi.cdef(header_cdef())
    return ffi, ffi.dlopen(proc.stdout.strip())


def tolerance(fan_in: int) -> dict:
    return {"rtol": 1e-4, "atol": 1e-4 * np.sqrt(fan_in)}


def rand(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return rng.uniform(-1, 1, shape).astype(np.float32)


# --- calling the library -------------------------------------------------------

def _ptr(ffi, a: np.ndarray | None):
    return ffi.NULL if a is None else ffi.from_buffer("float[]", a)


def lib_conv2d(cvc, x, weight, bias=None, stride=(1, 1), pads=(0, 0, 0, 0), dilation=(1, 1),
               groups=1, activation=None) -> np.ndarray:
    """The library's conv2d with pyaccel.reference's conventions (pads: t, b, l, r)."""
    ffi, lib = cvc
    n, c_in, h, w = x.shape
    c_out, _, kh, kw = weight.shape
    top, bottom, left, right = pads
    h_out = ref.conv_output_size(h, kh, stride[0], top, bottom, dilation[0])
    w_out = ref.conv_output_size(w, kw, stride[1], left, right, dilation[1])
    p = ffi.new("struct cvc_conv *", dict(
        n=n, c_in=c_in, h_in=h, w_in=w, c_out=c_out, h_out=h_out, w_out=w_out, kh=kh, kw=kw,
        stride_h=stride[0], stride_w=stride[1], dil_h=dilation[0], dil_w=dilation[1],
        pad_top=top, pad_left=left, groups=groups, act=ACTS[activation]))
    out = np.full((n, c_out, h_out, w_out), np.nan, np.float32)
    x, weight = np.ascontiguousarray(x), np.ascontiguousarray(weight)
    assert lib.cvc_conv2d(p, _ptr(ffi, x), _ptr(ffi, weight), _ptr(ffi, bias),
                          _ptr(ffi, out)) == 0
    return out


def lib_pool(cvc, kind: str, x, kernel, stride, pads=(0, 0, 0, 0), activation=None):
    ffi, lib = cvc
    n, c, h, w = x.shape
    top, bottom, left, right = pads
    h_out = ref.conv_output_size(h, kernel[0], stride[0], top, bottom)
    w_out = ref.conv_output_size(w, kernel[1], stride[1], left, right)
    p = ffi.new("struct cvc_pool *", dict(
        n=n, c=c, h_in=h, w_in=w, h_out=h_out, w_out=w_out, kh=kernel[0], kw=kernel[1],
        stride_h=stride[0], stride_w=stride[1], pad_top=top, pad_left=left,
        act=ACTS[activation]))
    out = np.full((n, c, h_out, w_out), np.nan, np.float32)
    fn = lib.cvc_maxpool2d if kind == "max" else lib.cvc_avgpool2d
    assert fn(p, _ptr(ffi, np.ascontiguousarray(x)), _ptr(ffi, out)) == 0
    return out


# --- convolution menu ----------------------------------------------------------

@dataclass
class Conv:
    id: str
    n: int = 1
    c_in: int = 4
    c_out: int = 8
    hw: tuple = (9, 9)
    k: tuple = (3, 3)
    stride: tuple = (1, 1)
    pads: tuple = (0, 0, 0, 0)   # top, bottom, left, right
    dilation: tuple = (1, 1)
    groups: int = 1
    bias: bool = True
    act: str | None = None
    extra: dict = field(default_factory=dict)


CONVS = [
    Conv("1x1-pointwise", c_in=16, c_out=24, k=(1, 1)),
    Conv("1x1-pointwise-batch3-relu", n=3, c_in=16, c_out=24, k=(1, 1), act="relu"),
    Conv("1x1-stride2", c_in=8, c_out=8, k=(1, 1), stride=(2, 2)),
    Conv("1x1-padded", c_in=8, c_out=8, k=(1, 1), pads=(1, 0, 0, 2)),
    Conv("1x1-to-1x1-classifier", c_in=64, c_out=10, hw=(1, 1), k=(1, 1)),
    Conv("3x3"),
    Conv("3x3-pad1", pads=(1, 1, 1, 1)),
    Conv("3x3-pad1-nobias", pads=(1, 1, 1, 1), bias=False),
    Conv("3x3-stride2-pad1-relu6", stride=(2, 2), pads=(1, 1, 1, 1), act="relu6"),
    Conv("3x3-stride3", hw=(13, 11), stride=(3, 3)),
    Conv("3x3-stride2x1", stride=(2, 1), pads=(1, 1, 1, 1)),
    Conv("3x3-asym-pad", pads=(0, 2, 1, 0)),
    Conv("3x3-asym-pad-stride2", hw=(10, 12), stride=(2, 2), pads=(0, 1, 0, 1)),
    Conv("3x3-dilation2", hw=(11, 11), dilation=(2, 2), pads=(2, 2, 2, 2)),
    Conv("3x3-dilation2x3", hw=(12, 14), dilation=(2, 3), pads=(1, 2, 3, 0)),
    Conv("3x3-batch3-odd7x9-relu", n=3, hw=(7, 9), pads=(1, 1, 1, 1), act="relu"),
    Conv("3x3-single-channel", c_in=1, c_out=1, hw=(8, 8)),
    Conv("3x3-single-in-many-out", c_in=1, c_out=6, hw=(8, 8), pads=(1, 1, 1, 1)),
    Conv("5x5-pad2", hw=(12, 12), k=(5, 5), pads=(2, 2, 2, 2)),
    Conv("7x7-stride2-pad3-stem", c_in=3, c_out=16, hw=(23, 23), k=(7, 7), stride=(2, 2),
         pads=(3, 3, 3, 3), act="relu"),
    Conv("11x11-stride4", c_in=3, c_out=8, hw=(35, 35), k=(11, 11), stride=(4, 4),
         pads=(2, 2, 2, 2)),
    Conv("1x3-rect", k=(1, 3), pads=(0, 0, 1, 1)),
    Conv("3x1-rect", k=(3, 1), pads=(1, 1, 0, 0)),
    Conv("2x5-rect-stride2x1", hw=(9, 11), k=(2, 5), stride=(2, 1), pads=(1, 0, 2, 2)),
    Conv("kernel-equals-input", hw=(5, 5), k=(5, 5)),
    Conv("groups2", c_in=8, c_out=12, groups=2, pads=(1, 1, 1, 1)),
    Conv("groups4-stride2-relu6", c_in=16, c_out=8, groups=4, stride=(2, 2),
         pads=(1, 1, 1, 1), act="relu6"),
    Conv("groups4-1x1", n=2, c_in=16, c_out=16, k=(1, 1), groups=4),
    Conv("depthwise-3x3", c_in=8, c_out=8, groups=8, pads=(1, 1, 1, 1)),
    Conv("depthwise-3x3-stride2-relu6", c_in=8, c_out=8, hw=(14, 14), groups=8,
         stride=(2, 2), pads=(0, 1, 0, 1), act="relu6"),
    Conv("depthwise-3x3-stride2-pad1-batch3", n=3, c_in=6, c_out=6, hw=(9, 7), groups=6,
         stride=(2, 2), pads=(1, 1, 1, 1)),
    Conv("depthwise-5x5-pad2-nobias", c_in=4, c_out=4, hw=(11, 13), k=(5, 5), groups=4,
         pads=(2, 2, 2, 2), bias=False),
    Conv("depthwise-stride3-dilation2", c_in=4, c_out=4, hw=(16, 17), groups=4,
         stride=(3, 3), dilation=(2, 2), pads=(2, 1, 0, 2)),
    Conv("depthwise-multiplier2", c_in=4, c_out=8, groups=4, pads=(1, 1, 1, 1)),
    Conv("depthwise-3x1-stride1x2-dilation2x1", c_in=6, c_out=6, hw=(9, 12), k=(3, 1),
         groups=6, stride=(1, 2), dilation=(2, 1), pads=(2, 1, 0, 1)),
    Conv("depthwise-7x7-on-7x7-pad3", c_in=64, c_out=64, hw=(7, 7), k=(7, 7), groups=64,
         pads=(3, 3, 3, 3), act="relu"),
    Conv("depthwise-wide-rows-relu", c_in=4, c_out=4, hw=(5, 67), groups=4,
         pads=(1, 1, 1, 1), act="relu"),
    Conv("wide-256-to-512-3x3", c_in=256, c_out=512, hw=(6, 5), pads=(1, 1, 1, 1)),
    Conv("wide-256-to-512-1x1", c_in=256, c_out=512, hw=(4, 4), k=(1, 1)),
    # Large enough to be split across threads: by output columns, by rows.
    Conv("pointwise-split-columns-relu6", c_in=64, c_out=32, hw=(40, 40), k=(1, 1),
         act="relu6"),
    Conv("pointwise-split-rows-relu", c_in=256, c_out=256, hw=(7, 7), k=(1, 1), act="relu"),
    Conv("classifier-1024-to-1000-on-1x1", c_in=1024, c_out=1000, hw=(1, 1), k=(1, 1)),
    # Enough im2col rows (128 * 9 * 48 floats a row) for several bands.
    Conv("im2col-bands", c_in=128, c_out=4, hw=(60, 48), pads=(1, 1, 1, 1)),
]


@pytest.mark.parametrize("case", CONVS, ids=lambda c: c.id)
def test_conv2d_matches_reference(cvc, case: Conv) -> None:
    rng = np.random.default_rng(zlib.crc32(case.id.encode()))
    x = rand(rng, case.n, case.c_in, *case.hw)
    weight = rand(rng, case.c_out, case.c_in // case.groups, *case.k)
    bias = rand(rng, case.c_out) if case.bias else None
    args = dict(stride=case.stride, dilation=case.dilation, groups=case.groups,
                activation=case.act)
    expected = ref.conv2d(x, weight, bias, padding=case.pads, **args)
    got = lib_conv2d(cvc, x, weight, bias, pads=case.pads, **args)
    fan_in = case.c_in // case.groups * case.k[0] * case.k[1]
    np.testing.assert_allclose(got, expected, **tolerance(fan_in))


@pytest.mark.parametrize("activation", [None, "relu", "relu6"], ids=str)
def test_activation_clamps(cvc, activation) -> None:
    """Outputs spread well past 0 and 6, so the clamps are really exercised."""
    rng = np.random.default_rng(7)
    x = rand(rng, 1, 16, 6, 6) * 4
    weight = rand(rng, 8, 16, 3, 3)
    got = lib_conv2d(cvc, x, weight, rand(rng, 8), pads=(1, 1, 1, 1), activation=activation)
    plain = ref.conv2d(x, weight, None, padding=1)
    assert plain.min() < -6 and plain.max() > 6
    if activation == "relu":
        assert got.min() == 0 and got.max() > 6
    if activation == "relu6":
        assert got.min() == 0 and got.max() == 6


def test_conv_macs(cvc) -> None:
    ffi, lib = cvc
    p = ffi.new("struct cvc_conv *", dict(n=2, c_in=8, c_out=6, h_out=5, w_out=7, kh=3, kw=2,
                                          groups=2))
    assert lib.cvc_conv_macs(p) == 2 * 6 * 5 * 7 * (8 // 2) * 3 * 2
    big = ffi.new("struct cvc_conv *", dict(n=64, c_in=4096, c_out=4096, h_out=64, w_out=64,
                                            kh=3, kw=3, groups=1))
    assert lib.cvc_conv_macs(big) == 64 * 4096 * 4096 * 64 * 64 * 9  # > 2**32: no overflow


@pytest.mark.parametrize("threads", [1, 2, 3], ids=lambda t: f"threads{t}")
def test_thread_counts_agree(cvc, threads: int) -> None:
    """Every split of the work gives the same results as the default split."""
    ffi, lib = cvc
    rng = np.random.default_rng(threads)
    x = rand(rng, 2, 64, 40, 40)
    cases = [(rand(rng, 64, 1, 3, 3), dict(groups=64, pads=(1, 1, 1, 1))),
             (rand(rng, 32, 64, 3, 3), dict(pads=(1, 1, 1, 1), stride=(2, 2))),
             (rand(rng, 32, 64, 1, 1), {})]
    try:
        lib.cvc_set_threads(0)
        default = [lib_conv2d(cvc, x, w, **kw) for w, kw in cases]
        lib.cvc_set_threads(threads)
        split = [lib_conv2d(cvc, x, w, **kw) for w, kw in cases]
    finally:
        lib.cvc_set_threads(0)
    for (w, kw), a, b in zip(cases, default, split):
        np.testing.assert_allclose(a, b, **tolerance(w[0].size))


def test_concurrent_callers(cvc) -> None:
    """Reentrancy: several threads (cffi drops the GIL) run different convs at once."""
    rng = np.random.default_rng(11)
    jobs = []
    for i in range(6):
        x = rand(rng, 1, 32, 24 + i, 20)
        if i % 2:
            w, kw = rand(rng, 32, 1, 3, 3), dict(groups=32, pads=(1, 1, 1, 1))
        else:
            w, kw = rand(rng, 16, 32, 3, 3), dict(pads=(1, 1, 1, 1), stride=(2, 2))
        jobs.append((x, w, kw, ref.conv2d(x, w, None, padding=kw["pads"],
                                          stride=kw.get("stride", 1),
                                          groups=kw.get("groups", 1))))
    errors: list[BaseException] = []

    def worker(x, w, kw, expected):
        try:
            for _ in range(20):
                np.testing.assert_allclose(lib_conv2d(cvc, x, w, **kw), expected,
                                           **tolerance(w[0].size))
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=job) for job in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]


# --- pooling -------------------------------------------------------------------

@dataclass
class Pool:
    id: str
    kind: str
    shape: tuple = (1, 4, 8, 8)
    k: tuple = (2, 2)
    stride: tuple = (2, 2)
    pads: tuple = (0, 0, 0, 0)
    act: str | None = None


POOLS = [
    Pool("max-2x2-s2", "max"),
    Pool("max-3x3-s2-pad1", "max", shape=(2, 3, 9, 9), k=(3, 3), pads=(1, 1, 1, 1)),
    Pool("max-3x3-s1-asym-pad", "max", shape=(1, 2, 7, 9), k=(3, 3), stride=(1, 1),
         pads=(0, 1, 1, 0)),
    Pool("max-3x2-s2x1-odd", "max", shape=(3, 5, 7, 9), k=(3, 2), stride=(2, 1)),
    # rows long enough for the vectorized stride-2 loops and their tails
    Pool("max-3x3-s2-pad1-wide", "max", shape=(1, 3, 40, 75), k=(3, 3), pads=(1, 1, 1, 1)),
    Pool("avg-3x3-s2-pad1-wide", "avg", shape=(1, 3, 40, 75), k=(3, 3), pads=(1, 1, 1, 1)),
    Pool("max-global-relu", "max", shape=(2, 6, 7, 7), k=(7, 7), stride=(1, 1), act="relu"),
    Pool("avg-2x2-s2", "avg"),
    Pool("avg-3x3-s2-pad1", "avg", shape=(2, 3, 9, 9), k=(3, 3), pads=(1, 1, 1, 1)),
    Pool("avg-3x3-s1-asym-pad-relu6", "avg", shape=(1, 2, 7, 9), k=(3, 3), stride=(1, 1),
         pads=(1, 0, 0, 1), act="relu6"),
    Pool("avg-5x5-s3", "avg", shape=(1, 4, 16, 17), k=(5, 5), stride=(3, 3)),
    Pool("avg-global-7x7", "avg", shape=(2, 16, 7, 7), k=(7, 7), stride=(1, 1)),
    Pool("avg-global-13x11", "avg", shape=(1, 1024, 13, 11), k=(13, 11), stride=(1, 1)),
]


@pytest.mark.parametrize("case", POOLS, ids=lambda c: c.id)
def test_pool_matches_reference(cvc, case: Pool) -> None:
    rng = np.random.default_rng(zlib.crc32(case.id.encode()))
    x = rand(rng, *case.shape) * 8  # spread past 6 for relu6
    fn = ref.max_pool2d if case.kind == "max" else ref.avg_pool2d
    expected = ref._activate(fn(x, case.k, case.stride, case.pads), case.act)
    if case.k == case.shape[2:] and case.kind == "avg":
        np.testing.assert_allclose(ref.global_avg_pool2d(x), expected, rtol=1e-6, atol=1e-6)
    got = lib_pool(cvc, case.kind, x, case.k, case.stride, case.pads, case.act)
    np.testing.assert_allclose(got, expected, **tolerance(case.k[0] * case.k[1]))


# --- NaN ---------------------------------------------------------------------------

NAN_CASES = [
    ("conv3x3-relu", "conv", dict(pads=(1, 1, 1, 1), activation="relu")),
    ("conv3x3-relu6", "conv", dict(pads=(1, 1, 1, 1), activation="relu6")),
    ("conv1x1-relu", "conv1x1", dict(activation="relu")),
    ("depthwise-relu6", "depthwise", dict(pads=(1, 1, 1, 1), activation="relu6")),
    ("max-2x2", "max", dict(kernel=(2, 2), stride=(2, 2))),
    ("max-3x3-pad1-relu", "max", dict(kernel=(3, 3), stride=(1, 1), pads=(1, 1, 1, 1),
                                      activation="relu")),
    ("max-global", "max", dict(kernel=(8, 8), stride=(1, 1))),
    ("avg-2x2-relu6", "avg", dict(kernel=(2, 2), stride=(2, 2), activation="relu6")),
]


@pytest.mark.parametrize("case, kind, kw", NAN_CASES, ids=[c[0] for c in NAN_CASES])
def test_nan_propagates_like_pytorch(cvc, case, kind, kw) -> None:
    """A NaN input reaches every output whose window holds it, through every
    op and activation, as in PyTorch (and numpy's maximum and clip)."""
    rng = np.random.default_rng(zlib.crc32(case.encode()))
    x = rand(rng, 1, 4, 8, 8) * 8
    x[0, 1, 2, 3] = x[0, 2, 5, 5] = x[0, 3, 0, 0] = np.nan
    if kind in ("max", "avg"):
        fn = ref.max_pool2d if kind == "max" else ref.avg_pool2d
        act = kw.pop("activation", None)
        pads = kw.pop("pads", (0, 0, 0, 0))
        expected = ref._activate(fn(x, kw["kernel"], kw["stride"], pads), act)
        got = lib_pool(cvc, kind, x, kw["kernel"], kw["stride"], pads, act)
        fan_in = kw["kernel"][0] * kw["kernel"][1]
    else:
        groups = 4 if kind == "depthwise" else 1
        k = (1, 1) if kind == "conv1x1" else (3, 3)
        weight = rand(rng, 4, 4 // groups, *k)
        expected = ref.conv2d(x, weight, rand(rng, 4) * 0, padding=kw.get("pads", 0),
                              groups=groups, activation=kw["activation"])
        got = lib_conv2d(cvc, x, weight, groups=groups, **kw)
        fan_in = weight[0].size
    assert np.isnan(expected).any() and not np.isnan(expected).all()
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    np.testing.assert_allclose(got, expected, equal_nan=True, **tolerance(fan_in))


# --- bounded memory, cancellation, threads ----------------------------------------------

def run_isolated(cvc, code: str, affinity: set | None = None, extra_as_mb: int = 0) -> str:
    """Run code in a fresh Python process (a fresh thread pool) with the
    library loaded as lib (ffi, np, ref and lib_conv2d at hand); optionally
    pinned to CPUs, or with its address space capped at what it uses after
    loading plus extra_as_mb MiB. Returns its stdout."""
    prologue = f"""
import os, resource, sys
sys.path[:0] = {[str(TOP), str(Path(__file__).parent)]!r}
if {affinity!r} is not None:
    os.sched_setaffinity(0, {affinity!r})
import numpy as np
import cffi
from pyaccel import reference as ref
import test_compute as tc
ffi = cffi.FFI()
ffi.cdef(tc.header_cdef())
lib = ffi.dlopen({str(Path(os.environ.get("BUILD", TOP / "build")) /
                     "libconvaccel_compute.so")!r})
cvc = (ffi, lib)
def lib_conv2d(*a, **kw):
    return tc.lib_conv2d(cvc, *a, **kw)
def tasks():
    return len(os.listdir("/proc/self/task"))
if {extra_as_mb}:
    vm = [l for l in open("/proc/self/status") if l.startswith("VmSize")][0]
    limit = int(vm.split()[1]) * 1024 + {extra_as_mb} * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
"""
    proc = subprocess.run([sys.executable, "-c", prologue + code], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_default_threads_follow_the_cpu_affinity(cvc) -> None:
    """Pinned to one CPU, the library must not start a worker thread (it
    counted online cores, not the ones the process may run on)."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        pytest.skip("needs two CPUs")
    out = run_isolated(cvc, """
x = np.ones((1, 64, 64, 64), np.float32)
w = np.ones((64, 64, 3, 3), np.float32)
before = tasks()
lib_conv2d(x, w, pads=(1, 1, 1, 1))
print(before, tasks())
""", affinity={cpus[0]})
    before, after = map(int, out.split())
    assert after == before, f"{after - before} worker thread(s) started on one CPU"


def test_threads_per_call(cvc) -> None:
    """ctl.threads caps one call's threads without changing the process default."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        pytest.skip("needs two CPUs")
    out = run_isolated(cvc, """
x = np.ones((1, 64, 64, 64), np.float32)
w = np.ones((64, 64, 3, 3), np.float32)
out = np.zeros((1, 64, 64, 64), np.float32)
ctl = ffi.new("struct cvc_ctl *", dict(threads=1))
p = ffi.new("struct cvc_conv *", dict(n=1, c_in=64, h_in=64, w_in=64, c_out=64, h_out=64,
            w_out=64, kh=3, kw=3, stride_h=1, stride_w=1, dil_h=1, dil_w=1, pad_top=1,
            pad_left=1, groups=1, ctl=ctl))
before = tasks()
assert lib.cvc_conv2d(p, ffi.from_buffer("float[]", x), ffi.from_buffer("float[]", w),
                      ffi.NULL, ffi.from_buffer("float[]", out)) == 0
one = tasks()
ctl.threads = 2
assert lib.cvc_conv2d(p, ffi.from_buffer("float[]", x), ffi.from_buffer("float[]", w),
                      ffi.NULL, ffi.from_buffer("float[]", out)) == 0
print(before, one, tasks(), lib.cvc_default_threads())
""", affinity=set(cpus[:2]))
    before, one, two, default = map(int, out.split())
    assert (one - before, two - before, default) == (0, 1, 2)


def test_im2col_memory_is_bounded(cvc) -> None:
    """c_in 8192 with a 16x16 kernel: one output position is 2M im2col
    floats, so 'at least one output row' of im2col was gigabytes. Under an
    address-space cap of 512 MiB above what the process uses, the call must
    succeed (tiles also slice the kernel's rows, accumulating) and be right."""
    out = run_isolated(cvc, """
rng = np.random.default_rng(1)
x = rng.uniform(-1, 1, (1, 8192, 1, 271)).astype(np.float32)
w = rng.uniform(-1, 1, (2, 8192, 16, 16)).astype(np.float32)
b = rng.uniform(-1, 1, 2).astype(np.float32)
expected = ref.conv2d(x, w, b, padding=(8, 7, 0, 0), activation="relu")
got = lib_conv2d(x, w, b, pads=(8, 7, 0, 0), activation="relu")
np.testing.assert_allclose(got, expected, **tc.tolerance(8192 * 256))
print("ok", got.shape)
""", extra_as_mb=512)
    assert out.startswith("ok (1, 2, 1, 256)")


def test_large_depthwise_planes_are_right(cvc) -> None:
    """A plane whose padded copy exceeds the per-thread scratch bound goes by
    im2col instead: same results."""
    rng = np.random.default_rng(2)
    x = rand(rng, 1, 2, 2100, 2100)
    w = rand(rng, 2, 1, 3, 3)
    got = lib_conv2d(cvc, x, w, stride=(2, 2), pads=(1, 1, 1, 1), groups=2,
                     activation="relu6")
    expected = ref.conv2d(x, w, None, stride=2, padding=1, groups=2, activation="relu6")
    np.testing.assert_allclose(got, expected, **tolerance(9))


class CancelAtOnce:
    """A struct cvc_ctl (one thread) whose cancelled() callback says yes at
    every poll; `polls` counts them. Keep the object while the call runs: it
    holds the callback."""

    def __init__(self, ffi) -> None:
        self.polls = 0
        self._callback = ffi.callback("int(void *)", self._cancelled)
        self.ctl = ffi.new("struct cvc_ctl *", dict(threads=1, cancelled=self._callback))

    def _cancelled(self, _) -> int:
        self.polls += 1
        return 1


CANCEL_CASES = [
    ("conv-1x1", dict(n=1, c_in=1024, h_in=96, w_in=96, c_out=1024, h_out=96, w_out=96, kh=1,
                      kw=1, groups=1)),
    ("conv-3x3-im2col", dict(n=1, c_in=256, h_in=96, w_in=96, c_out=512, h_out=94, w_out=94,
                             kh=3, kw=3, groups=1)),
    ("depthwise", dict(n=1, c_in=1024, h_in=96, w_in=96, c_out=1024, h_out=82, w_out=82,
                       kh=15, kw=15, groups=1024)),
    ("maxpool", dict(n=1, c=1024, h_in=96, w_in=96, h_out=82, w_out=82, kh=15, kw=15)),
]


@pytest.mark.parametrize("case, shape", CANCEL_CASES, ids=[c[0] for c in CANCEL_CASES])
def test_cancel_stops_a_call_within_a_tile(cvc, case, shape) -> None:
    """Cancellation is polled between tiles: a call cancelled at its first
    poll does a small part of its work and returns CVC_CANCELLED."""
    ffi, lib = cvc
    pool = "c" in shape
    size = lambda *d: int(np.prod(d))  # noqa: E731
    c_out = shape["c"] if pool else shape["c_out"]
    x = np.ones(size(shape["n"], shape.get("c_in", shape.get("c")), shape["h_in"],
                     shape["w_in"]), np.float32)
    out = np.zeros(size(shape["n"], c_out, shape["h_out"], shape["w_out"]), np.float32)
    cancel = CancelAtOnce(ffi)
    common = dict(stride_h=1, stride_w=1, ctl=cancel.ctl, **shape)
    t0 = time.monotonic()
    if pool:
        p = ffi.new("struct cvc_pool *", common)
        ret = lib.cvc_maxpool2d(p, ffi.from_buffer("float[]", x), ffi.from_buffer("float[]", out))
    else:
        w = np.ones(size(shape["c_out"], shape["c_in"] // shape["groups"], shape["kh"],
                         shape["kw"]), np.float32)
        p = ffi.new("struct cvc_conv *", dict(dil_h=1, dil_w=1, **common))
        ret = lib.cvc_conv2d(p, ffi.from_buffer("float[]", x), ffi.from_buffer("float[]", w),
                             ffi.NULL, ffi.from_buffer("float[]", out))
    took = time.monotonic() - t0
    assert ret == lib.CVC_CANCELLED
    assert 1 <= cancel.polls <= 4 and took < 0.5, (cancel.polls, took)
    assert (out == 0).mean() > 0.5, "most of the output should not have been computed"


# --- the oracle itself ----------------------------------------------------------

def naive_conv2d(x, weight, bias, stride, pads, dilation, groups):
    """The textbook seven loops (plus groups), in float64: nothing shared with ref."""
    n, c_in, h, w = x.shape
    c_out, cin_g, kh, kw = weight.shape
    (sh, sw), (dh, dw), (top, bottom, left, right) = stride, dilation, pads
    h_out = (h + top + bottom - dh * (kh - 1) - 1) // sh + 1
    w_out = (w + left + right - dw * (kw - 1) - 1) // sw + 1
    cout_g = c_out // groups
    out = np.zeros((n, c_out, h_out, w_out))
    for b in range(n):
        for co in range(c_out):
            g = co // cout_g
            for oh in range(h_out):
                for ow in range(w_out):
                    acc = 0.0 if bias is None else float(bias[co])
                    for ci in range(cin_g):
                        for i in range(kh):
                            for j in range(kw):
                                ih = oh * sh + i * dh - top
                                iw = ow * sw + j * dw - left
                                if 0 <= ih < h and 0 <= iw < w:
                                    acc += float(x[b, g * cin_g + ci, ih, iw]) * \
                                        float(weight[co, ci, i, j])
                    out[b, co, oh, ow] = acc
    return out


def naive_pool(x, kind, k, stride, pads):
    n, c, h, w = x.shape
    top, bottom, left, right = pads
    h_out = (h + top + bottom - k[0]) // stride[0] + 1
    w_out = (w + left + right - k[1]) // stride[1] + 1
    out = np.zeros((n, c, h_out, w_out))
    for b in range(n):
        for ch in range(c):
            for oh in range(h_out):
                for ow in range(w_out):
                    vals = []
                    for i in range(k[0]):
                        for j in range(k[1]):
                            ih, iw = oh * stride[0] + i - top, ow * stride[1] + j - left
                            inside = 0 <= ih < h and 0 <= iw < w
                            vals.append(float(x[b, ch, ih, iw]) if inside else
                                        (-np.inf if kind == "max" else 0.0))
                    out[b, ch, oh, ow] = max(vals) if kind == "max" else sum(vals) / len(vals)
    return out


ORACLE_CONVS = [
    dict(n=2, c_in=3, c_out=4, hw=(6, 7), k=(3, 3), stride=(1, 1), pads=(1, 1, 1, 1),
         dilation=(1, 1), groups=1),
    dict(n=1, c_in=4, c_out=6, hw=(9, 8), k=(2, 3), stride=(2, 3), pads=(0, 2, 1, 0),
         dilation=(2, 1), groups=2),
    dict(n=1, c_in=4, c_out=4, hw=(7, 7), k=(3, 3), stride=(2, 2), pads=(1, 0, 0, 1),
         dilation=(1, 2), groups=4),
    dict(n=1, c_in=2, c_out=3, hw=(3, 3), k=(3, 3), stride=(1, 1), pads=(0, 0, 0, 0),
         dilation=(1, 1), groups=1),
]


@pytest.mark.parametrize("case", ORACLE_CONVS, ids=lambda c: "k{k[0]}x{k[1]}-g{groups}".format(**c))
@pytest.mark.parametrize("with_bias", [False, True], ids=["nobias", "bias"])
def test_reference_conv_matches_naive_loops(case: dict, with_bias: bool) -> None:
    rng = np.random.default_rng(3)
    x = rand(rng, case["n"], case["c_in"], *case["hw"])
    weight = rand(rng, case["c_out"], case["c_in"] // case["groups"], *case["k"])
    bias = rand(rng, case["c_out"]) if with_bias else None
    expected = naive_conv2d(x, weight, bias, case["stride"], case["pads"], case["dilation"],
                            case["groups"])
    got = ref.conv2d(x, weight, bias, stride=case["stride"], padding=case["pads"],
                     dilation=case["dilation"], groups=case["groups"])
    assert got.dtype == np.float32 and got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("kind", ["max", "avg"])
def test_reference_pools_match_naive_loops(kind: str) -> None:
    rng = np.random.default_rng(5)
    x = rand(rng, 2, 3, 7, 8)
    for k, stride, pads in [((2, 2), (2, 2), (0, 0, 0, 0)), ((3, 3), (2, 1), (1, 1, 1, 0)),
                            ((3, 2), (1, 2), (0, 1, 1, 1))]:
        fn = ref.max_pool2d if kind == "max" else ref.avg_pool2d
        np.testing.assert_allclose(fn(x, k, stride, pads), naive_pool(x, kind, k, stride, pads),
                                   rtol=1e-6, atol=1e-6)


def test_reference_small_ops() -> None:
    x = np.array([[-3.0, 0.5, 7.0], [1.0, 2.0, 3.0]], np.float32)
    np.testing.assert_array_equal(ref.relu(x), [[0, 0.5, 7], [1, 2, 3]])
    np.testing.assert_array_equal(ref.relu6(x), [[0, 0.5, 6], [1, 2, 3]])
    s = ref.softmax(x)
    np.testing.assert_allclose(s.sum(axis=-1), 1, rtol=1e-6)
    np.testing.assert_allclose(s[1], np.exp([1, 2, 3]) / np.exp([1, 2, 3]).sum(), rtol=1e-6)
    np.testing.assert_allclose(ref.softmax(x, axis=0)[:, 0], [np.exp(-4) / (1 + np.exp(-4)),
                                                             1 / (1 + np.exp(-4))], rtol=1e-6)
    assert np.isfinite(ref.softmax(np.array([1000.0, 0.0]))).all()
    assert ref.conv_output_size(224, 3, 2, 0, 1) == 112
    assert ref.conv_output_size(7, 3, 1, 2, 2, dilation=2) == 7
    padded = ref.max_pool2d(np.full((1, 1, 2, 2), -5, np.float32), 2, 1, (1, 0, 1, 0))
    assert padded.min() == -5  # -inf padding never wins over a real value


@pytest.mark.parametrize("call, message", [
    (lambda: ref.conv2d(np.zeros((1, 6, 5, 5)), np.zeros((4, 2, 3, 3)), groups=4),
     "groups=4 must divide"),
    (lambda: ref.conv2d(np.zeros((1, 6, 5, 5)), np.zeros((4, 2, 3, 3)), groups=2),
     "expected 3"),
    (lambda: ref.conv2d(np.zeros((1, 2, 3, 3)), np.zeros((4, 2, 5, 5))), "padded input"),
    (lambda: ref.conv2d(np.zeros((2, 3, 3)), np.zeros((4, 2, 1, 1))), "must be 4-D"),
    (lambda: ref.conv2d(np.zeros((1, 2, 3, 3)), np.zeros((4, 2, 1, 1)), np.zeros(3)),
     r"bias must have shape \(4,\)"),
    (lambda: ref.conv2d(np.zeros((1, 2, 3, 3)), np.zeros((4, 2, 1, 1)), stride=0), "stride"),
    (lambda: ref.conv2d(np.zeros((1, 2, 3, 3)), np.zeros((4, 2, 1, 1)), padding=(1, 2, 3)),
     "padding"),
    (lambda: ref.conv2d(np.zeros((1, 2, 3, 3)), np.zeros((4, 2, 1, 1)), activation="gelu"),
     "activation"),
    (lambda: ref.max_pool2d(np.zeros((1, 1, 2, 2)), 3), "padded input"),
], ids=["groups-not-dividing", "weight-channels", "kernel-too-big", "not-4d", "bias-shape",
        "stride-0", "padding-3-tuple", "activation", "pool-too-big"])
def test_reference_rejects_bad_shapes(call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()


# --- the source itself -----------------------------------------------------------

# QEMU 10's flags for target code (from its meson build with this gcc), plus -Werror.
QEMU_CFLAGS = """-std=gnu11 -O2 -Wall -Wextra -Werror -Wempty-body -Wendif-labels
-Wexpansion-to-defined -Wformat-security -Wformat-y2k -Wignored-qualifiers
-Wimplicit-fallthrough=2 -Winit-self -Wmissing-format-attribute -Wmissing-prototypes
-Wnested-externs -Wold-style-declaration -Wold-style-definition -Wredundant-decls
-Wshadow=local -Wstrict-prototypes -Wtype-limits -Wundef -Wvla -Wwrite-strings
-Wno-missing-include-dirs -Wno-psabi -Wno-shift-negative-value -mcx16 -msse2 -D_GNU_SOURCE
-D_FILE_OFFSET_BITS=64 -D_LARGEFILE_SOURCE -fno-strict-aliasing -fno-common -fwrapv
-ftrivial-auto-var-init=zero -fzero-call-used-regs=used-gpr -fPIE""".split()


@pytest.mark.skipif(not shutil.which("gcc"), reason="needs gcc")
@pytest.mark.parametrize("flags", [QEMU_CFLAGS, ["-std=c11", "-pedantic", "-O2", "-Wall",
                                                  "-Wextra", "-Werror"]],
                         ids=["qemu-flags", "c11-pedantic"])
def test_source_compiles_without_warnings(flags: list, tmp_path: Path) -> None:
    cflags = subprocess.run(["pkg-config", "--cflags", "openblas"], capture_output=True,
                            text=True).stdout.split()
    proc = subprocess.run(["gcc", *flags, *cflags, "-c", str(SOURCE),
                           "-o", str(tmp_path / "c.o")], capture_output=True, text=True,
                          env={**os.environ, "LC_ALL": "C"})
    assert proc.returncode == 0 and not proc.stderr, proc.stderr
