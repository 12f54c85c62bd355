"""Benchmark: the device's compute library against PyTorch's CPU conv2d.

Runs every convolution layer shape of two networks, batch 1, float32 NCHW,
with bias and no activation (what F.conv2d computes), in one process:

- MobileNet-v1 (width 1.0, 224x224): the 3x3 stride-2 stem 3->32, the 13
  depthwise-separable blocks (depthwise 3x3 then pointwise 1x1) with output
  channels 64, 128, 128, 256, 256, 512 x6, 1024, 1024 and the paper's strides
  (padding 1 on every 3x3), and the 1x1 classifier 1024->1000 on 1x1.
- allconv6, our all-convolutional baseline: five 3x3 stride-2 pad-1 convs
  3->64->128->256->512->1024 from a 224x224 input (down to 7x7), then a 1x1
  classifier 1024->10 on the 7x7 map.

Identical layers (MobileNet's five 512-channel blocks) are timed once and
counted as often as they occur. Each layer: --rounds rounds of (pause,
our library: --warmup seconds of warm-up calls, then --repeats timed calls,
pause, the same for torch);
the median over all timed calls is kept. Our library gets
cvc_set_threads(T) and torch gets torch.set_num_threads(T).

ratio = torch_time / ours_time: our throughput relative to torch (1.0 is
parity, higher is faster). The total ratio is over the summed times.

Other processes' CPU use during each layer is measured and shown (load %):
on a busy machine both thread pools wait for cores and the numbers mean
little, so a layer measured under load is measured again (--max-load,
--retries), keeping the quietest measurement.

OpenBLAS picks its kernels when it loads, by CPU detection unless
OPENBLAS_CORETYPE names them; --openblas-core overrides (see openblas_core).
The JSON records which were used.

    make bench-device  (or $(scripts/venv.sh bench/requirements.txt) bench/bench_device.py) [--threads T] [--rounds R] [--repeats N]

Writes bench/results-device.json.
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import cffi
import numpy as np
import torch
import torch.nn.functional as F

TOP = Path(__file__).resolve().parents[1]
HEADER = TOP / "qemu" / "compute" / "convaccel_compute.h"


@dataclass(frozen=True)
class Layer:
    net: str
    name: str
    c_in: int
    c_out: int
    hw: int          # square input
    k: int
    stride: int
    pad: int
    groups: int = 1

    @property
    def hw_out(self) -> int:
        return (self.hw + 2 * self.pad - self.k) // self.stride + 1

    @property
    def macs(self) -> int:
        return self.c_out * self.hw_out ** 2 * (self.c_in // self.groups) * self.k ** 2

    @property
    def shape(self) -> str:
        kind = "dw" if self.groups == self.c_in and self.groups > 1 else "conv"
        return (f"{kind} {self.c_in}->{self.c_out} {self.k}x{self.k}/s{self.stride} "
                f"@{self.hw}")


def mobilenet_v1() -> list[Layer]:
    layers = [Layer("mobilenet_v1", "conv0", 3, 32, 224, 3, 2, 1)]
    blocks = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)] + [(512, 1)] * 5 + \
        [(1024, 2), (1024, 1)]
    c, hw = 32, 112
    for i, (c_out, s) in enumerate(blocks, 1):
        dw = Layer("mobilenet_v1", f"dw{i}", c, c, hw, 3, s, 1, groups=c)
        hw = dw.hw_out
        layers += [dw, Layer("mobilenet_v1", f"pw{i}", c, c_out, hw, 1, 1, 0)]
        c = c_out
    return layers + [Layer("mobilenet_v1", "fc", 1024, 1000, 1, 1, 1, 0)]


def allconv6() -> list[Layer]:
    layers, c, hw = [], 3, 224
    for i, c_out in enumerate([64, 128, 256, 512, 1024], 1):
        layers.append(Layer("allconv6", f"conv{i}", c, c_out, hw, 3, 2, 1))
        c, hw = c_out, layers[-1].hw_out
    return layers + [Layer("allconv6", "classifier", 1024, 10, hw, 1, 1, 0)]


def build_library() -> str:
    return subprocess.run(["bash", str(TOP / "qemu" / "compute" / "build.sh")], check=True,
                          capture_output=True, text=True).stdout.strip()


def openblas_core(mode: str) -> str:
    """Arrange OpenBLAS's kernel choice, which it makes once, when it loads.

    "env": as the environment says, like the device in a QEMU started from
    the same shell: OPENBLAS_CORETYPE if set, else OpenBLAS's detection.
    "detect": OpenBLAS's own detection (drops OPENBLAS_CORETYPE).
    Anything else: that core (OPENBLAS_CORETYPE=mode).
    Returns what OPENBLAS_CORETYPE is now ("" for unset).
    """
    if mode == "detect":
        os.environ.pop("OPENBLAS_CORETYPE", None)
    elif mode != "env":
        os.environ["OPENBLAS_CORETYPE"] = mode
    return os.environ.get("OPENBLAS_CORETYPE", "")


def load_library(path: str):
    text = re.sub(r"/\*.*?\*/", "", HEADER.read_text(), flags=re.S)
    ffi = cffi.FFI()
    ffi.cdef("\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#")))
    ffi.cdef("char *openblas_get_corename(void);")
    return ffi, ffi.dlopen(path)


def time_it(fn, repeats: int, warmup_s: float) -> list[float]:
    """Wall times of fn() in milliseconds, after warm-up calls for warmup_s
    (at least two). A virtual CPU that was idle runs slow for tens of
    milliseconds: a fixed count of warm-up calls is not enough."""
    start = time.perf_counter()
    for i in itertools.count():
        fn()
        if i >= 1 and time.perf_counter() - start >= warmup_s:
            break
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter_ns()
        fn()
        times.append((time.perf_counter_ns() - t0) / 1e6)
    return times


class OtherLoad:
    """CPU used by other processes while in the with-block, as a fraction of
    the machine (from /proc/stat minus our own CPU time): a busy machine
    makes both libraries' thread pools wait for cores, and the numbers noisy."""

    def _sample(self) -> tuple[float, float, float]:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        busy = sum(v) - v[3] - v[4]  # all but idle and iowait
        t = os.times()
        return busy / os.sysconf("SC_CLK_TCK"), t.user + t.system, time.monotonic()

    def __enter__(self) -> "OtherLoad":
        self.start = self._sample()
        return self

    def __exit__(self, *exc) -> None:
        (b0, s0, t0), (b1, s1, t1) = self.start, self._sample()
        self.fraction = max(0.0, (b1 - b0) - (s1 - s0)) / ((t1 - t0) * (os.cpu_count() or 1))


def bench_layer(ffi, lib, layer: Layer, args) -> dict:
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (1, layer.c_in, layer.hw, layer.hw)).astype(np.float32)
    w = rng.uniform(-1, 1, (layer.c_out, layer.c_in // layer.groups, layer.k, layer.k))
    w = w.astype(np.float32)
    b = rng.uniform(-1, 1, layer.c_out).astype(np.float32)
    ho = layer.hw_out
    out = np.empty((1, layer.c_out, ho, ho), np.float32)

    p = ffi.new("struct cvc_conv *", dict(
        n=1, c_in=layer.c_in, h_in=layer.hw, w_in=layer.hw, c_out=layer.c_out, h_out=ho,
        w_out=ho, kh=layer.k, kw=layer.k, stride_h=layer.stride, stride_w=layer.stride,
        dil_h=1, dil_w=1, pad_top=layer.pad, pad_left=layer.pad, groups=layer.groups, act=0))
    px, pw, pb, po = (ffi.from_buffer("float[]", a) for a in (x, w, b, out))

    def ours():
        if lib.cvc_conv2d(p, px, pw, pb, po) != 0:
            raise MemoryError("cvc_conv2d failed")

    tx, tw, tb = (torch.from_numpy(a) for a in (x, w, b))

    def theirs():
        return F.conv2d(tx, tw, tb, stride=layer.stride, padding=layer.pad,
                        groups=layer.groups)

    # Each library's idle worker threads spin for a while after a call
    # (ours: 0.2 ms; torch's OpenMP: its spin count): on a small machine
    # they would steal the other library's cores, so each library runs only
    # after a short pause (and a warm-up). Rounds alternate the libraries,
    # so that a passing load on the machine hits both alike.
    ours_t: list[float] = []
    torch_t: list[float] = []
    with torch.inference_mode(), OtherLoad() as load:
        for _ in range(args.rounds):
            time.sleep(args.settle)
            ours_t += time_it(ours, args.repeats, args.warmup)
            time.sleep(args.settle)
            torch_t += time_it(theirs, args.repeats, args.warmup)
        expected = theirs().numpy()
    ours_ms, torch_ms = statistics.median(ours_t), statistics.median(torch_t)
    fan_in = layer.c_in // layer.groups * layer.k ** 2
    max_err = float(np.abs(out - expected).max())
    return dict(ours_ms=ours_ms, torch_ms=torch_ms, ratio=torch_ms / ours_ms,
                ours_min_ms=min(ours_t), torch_min_ms=min(torch_t), samples=len(ours_t),
                other_load=round(load.fraction, 3), max_abs_err=max_err,
                ok=bool(max_err <= 1e-4 * np.sqrt(fan_in) * 10))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                    help="threads for both libraries (default: all cores)")
    ap.add_argument("--rounds", type=int, default=3, help="alternations of the two libraries")
    ap.add_argument("--repeats", type=int, default=15, help="timed calls per library and round")
    ap.add_argument("--settle", type=float, default=0.05,
                    help="seconds of idle before each library's runs (lets spinning threads sleep)")
    ap.add_argument("--warmup", type=float, default=0.1,
                    help="seconds of warm-up calls before each library's timed calls")
    ap.add_argument("--max-load", type=float, default=0.1,
                    help="measure a layer again while other processes used more than this "
                         "fraction of the machine (default 0.1)")
    ap.add_argument("--retries", type=int, default=4, help="at most this often (default 4)")
    ap.add_argument("--openblas-core", default="env", metavar="env|detect|NAME",
                    help="OpenBLAS kernels: as the environment says (default), OpenBLAS's "
                         "own detection, or that core (e.g. Haswell, SkylakeX)")
    ap.add_argument("--net", choices=["mobilenet_v1", "allconv6"], action="append",
                    help="only these nets (repeatable; default both)")
    ap.add_argument("--json", type=Path, default=TOP / "bench" / "results-device.json")
    args = ap.parse_args()

    path = build_library()
    forced = openblas_core(args.openblas_core)
    ffi, lib = load_library(path)
    lib.cvc_set_threads(args.threads)
    torch.set_num_threads(args.threads)

    layers = [layer for net in (mobilenet_v1(), allconv6()) for layer in net
              if not args.net or layer.net in args.net]
    # Identical shapes run once, counted as often as they occur.
    counts: dict[tuple, int] = {}
    unique: list[Layer] = []
    for layer in layers:
        key = (layer.net, layer.shape, layer.groups)
        if key not in counts:
            unique.append(layer)
        counts[key] = counts.get(key, 0) + 1

    env = dict(threads=args.threads, torch=torch.__version__,
               openblas_core=ffi.string(lib.openblas_get_corename()).decode(),
               openblas_coretype_env=forced,
               cpu=platform.processor() or platform.machine(), cores=os.cpu_count())
    how = "OPENBLAS_CORETYPE" if forced else "detected by OpenBLAS"
    print(f"threads={env['threads']}  torch {env['torch']}  OpenBLAS kernels "
          f"{env['openblas_core']} ({how})")
    head = f"{'net':<13}{'layer':<11}{'shape':<30}{'n':>2}{'MMACs':>8}{'ours ms':>9}" \
           f"{'torch ms':>9}{'ratio':>7}{'load%':>6}"
    print(head + "\n" + "-" * len(head))

    rows, nets = [], {}
    for layer in unique:
        n = counts[(layer.net, layer.shape, layer.groups)]
        r = bench_layer(ffi, lib, layer, args)
        for _ in range(args.retries):
            if r["other_load"] <= args.max_load:
                break
            time.sleep(2)  # let the other load pass, then measure again
            again = bench_layer(ffi, lib, layer, args)
            r = min(r, again, key=lambda m: m["other_load"])
        row = dict(asdict(layer), shape=layer.shape, count=n, macs=layer.macs, **r)
        rows.append(row)
        t = nets.setdefault(layer.net, dict(ours_ms=0.0, torch_ms=0.0, macs=0))
        t["ours_ms"] += n * r["ours_ms"]
        t["torch_ms"] += n * r["torch_ms"]
        t["macs"] += n * layer.macs
        flag = "" if r["ok"] else f"  MISMATCH max err {r['max_abs_err']:.3g}"
        print(f"{layer.net:<13}{layer.name:<11}{layer.shape:<30}{n:>2}{layer.macs / 1e6:>8.1f}"
              f"{r['ours_ms']:>9.3f}{r['torch_ms']:>9.3f}{r['ratio']:>7.2f}"
              f"{100 * r['other_load']:>6.0f}{flag}", flush=True)

    print("-" * len(head))
    for t in nets.values():
        t["ratio"] = t["torch_ms"] / t["ours_ms"]
    total = dict(ours_ms=sum(t["ours_ms"] for t in nets.values()),
                 torch_ms=sum(t["torch_ms"] for t in nets.values()),
                 macs=sum(t["macs"] for t in nets.values()))
    total["ratio"] = total["torch_ms"] / total["ours_ms"]
    for name, t in list(nets.items()) + [("total", total)]:
        print(f"{name:<13}{'':<11}{'':<30}{'':>2}{t['macs'] / 1e6:>8.1f}{t['ours_ms']:>9.3f}"
              f"{t['torch_ms']:>9.3f}{t['ratio']:>7.2f}")
    worst = sorted(rows, key=lambda r: r["ratio"])[:3]
    print("worst: " + ", ".join(f"{r['net']}/{r['name']} {r['ratio']:.2f}" for r in worst))
    busy = max(r["other_load"] for r in rows)
    if busy > 0.1:
        print(f"warning: other processes used up to {100 * busy:.0f}% of the machine during "
              "the run: the numbers are noisy")

    args.json.write_text(json.dumps(dict(env=env, layers=rows, nets=nets, total=total),
                                    indent=1) + "\n")
    print(f"wrote {args.json.relative_to(TOP) if args.json.is_relative_to(TOP) else args.json}")
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
