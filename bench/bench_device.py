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

int8 (--suite int8, part of the default "all"): representative layers of
MobileNet-v2 and ResNet-18 at 224, batch 1 (the stems, 3x3 stride 1 and 2,
1x1 expand/project/downsample, depthwise; each counted as often as it occurs
in its net), our exact int8 convolution (cvc_conv2d_s8, per-channel
requantization, no activation) against PyTorch's float32 F.conv2d and
onnxruntime's int8 QLinearConv (an in-memory one-node model, int8
activations and per-channel int8 weights, the same scales), all three with
the same thread count, alternating as above. ratio_torch = torch / ours,
ratio_ort = onnxruntime / ours (higher: ours is faster). onnxruntime
requantizes in float and rounds half to even, the device rounds half up in
fixed point: their outputs may differ by 1 (more is a MISMATCH).

Writes bench/results-device.json, and the int8 table into bench/README.md
(between its "bench-device int8" markers).
"""
from __future__ import annotations

import argparse
import itertools
import json
import math
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
sys.path.insert(0, str(TOP / "scripts"))
import blasenv  # noqa: E402

HEADER = TOP / "qemu" / "compute" / "convaccel_compute.h"
README_INT8_BEGIN = "<!-- bench-device int8: begin (bench/bench_device.py) -->"
README_INT8_END = "<!-- bench-device int8: end -->"
ISA_NAMES = {1: "portable", 2: "avx2", 3: "avx512vnni"}


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
    act: str = "none"   # the fused activation the device runs (CVC_ACT_<name>)

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
    """MobileNet-v1 1.0 at 224 as the device runs it: ReLU6 after every
    convolution but the classifier (models.mobilenet_v1)."""
    layers = [Layer("mobilenet_v1", "conv0", 3, 32, 224, 3, 2, 1, act="relu6")]
    blocks = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)] + [(512, 1)] * 5 + \
        [(1024, 2), (1024, 1)]
    c, hw = 32, 112
    for i, (c_out, s) in enumerate(blocks, 1):
        dw = Layer("mobilenet_v1", f"dw{i}", c, c, hw, 3, s, 1, groups=c, act="relu6")
        hw = dw.hw_out
        layers += [dw, Layer("mobilenet_v1", f"pw{i}", c, c_out, hw, 1, 1, 0,
                             act="relu6")]
        c = c_out
    return layers + [Layer("mobilenet_v1", "fc", 1024, 1000, 1, 1, 1, 0)]


def allconv6() -> list[Layer]:
    layers, c, hw = [], 3, 224
    for i, c_out in enumerate([64, 128, 256, 512, 1024], 1):
        layers.append(Layer("allconv6", f"conv{i}", c, c_out, hw, 3, 2, 1, act="relu"))
        c, hw = c_out, layers[-1].hw_out
    return layers + [Layer("allconv6", "classifier", 1024, 10, hw, 1, 1, 0)]


# int8 layers: (name, c_in, c_out, hw, k, stride, pad, groups, occurrences in the net)
MOBILENET_V2_INT8 = [
    ("stem", 3, 32, 224, 3, 2, 1, 1, 1),
    ("b1.dw", 32, 32, 112, 3, 1, 1, 32, 1),
    ("b1.project", 32, 16, 112, 1, 1, 0, 1, 1),
    ("b2.expand", 16, 96, 112, 1, 1, 0, 1, 1),
    ("b2.dw.s2", 96, 96, 112, 3, 2, 1, 96, 1),
    ("b3.expand", 24, 144, 56, 1, 1, 0, 1, 2),
    ("b3.dw", 144, 144, 56, 3, 1, 1, 144, 1),
    ("b3.project", 144, 24, 56, 1, 1, 0, 1, 1),
    ("b8.expand", 64, 384, 14, 1, 1, 0, 1, 4),
    ("b8.dw", 384, 384, 14, 3, 1, 1, 384, 4),
    ("b8.project", 384, 64, 14, 1, 1, 0, 1, 3),
    ("b15.dw", 960, 960, 7, 3, 1, 1, 960, 3),
    ("head", 320, 1280, 7, 1, 1, 0, 1, 1),
]
RESNET18_INT8 = [
    ("stem7x7", 3, 64, 224, 7, 2, 3, 1, 1),
    ("l1.3x3", 64, 64, 56, 3, 1, 1, 1, 4),
    ("l2.3x3.s2", 64, 128, 56, 3, 2, 1, 1, 1),
    ("l2.down1x1", 64, 128, 56, 1, 2, 0, 1, 1),
    ("l2.3x3", 128, 128, 28, 3, 1, 1, 1, 3),
    ("l3.3x3.s2", 128, 256, 28, 3, 2, 1, 1, 1),
    ("l3.down1x1", 128, 256, 28, 1, 2, 0, 1, 1),
    ("l3.3x3", 256, 256, 14, 3, 1, 1, 1, 3),
    ("l4.3x3.s2", 256, 512, 14, 3, 2, 1, 1, 1),
    ("l4.3x3", 512, 512, 7, 3, 1, 1, 1, 3),
]


def int8_layers() -> list[tuple[Layer, int]]:
    return [(Layer(net, name, *shape), count)
            for net, table in (("mobilenet_v2", MOBILENET_V2_INT8), ("resnet18", RESNET18_INT8))
            for name, *shape, count in table]


def build_library() -> str:
    return subprocess.run(["bash", str(TOP / "qemu" / "compute" / "build.sh")], check=True,
                          capture_output=True, text=True).stdout.strip()


def openblas_core(mode: str, library: str) -> str:
    """Arrange OpenBLAS's kernel choice, which it makes once, when it loads.

    "env": what the device gets when scripts/board.py starts QEMU from the
    same shell: OPENBLAS_CORETYPE if set, else OpenBLAS's detection, unless
    that fell back to pre-AVX2 kernels on an AVX2 or AVX-512 CPU
    (scripts/blasenv.py).
    "detect": OpenBLAS's own detection (drops OPENBLAS_CORETYPE).
    Anything else: that core (OPENBLAS_CORETYPE=mode).
    Returns what OPENBLAS_CORETYPE is now ("" for unset).
    """
    if mode == "detect":
        os.environ.pop("OPENBLAS_CORETYPE", None)
    elif mode == "env":
        os.environ.update(blasenv.environ(Path(library)))
    else:
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


def conv_desc(ffi, lib, layer: Layer, act: str):
    """The library's struct cvc_conv of `layer` at batch 1, with the fused
    activation `act` ("none", "relu", ...: CVC_ACT_<act>)."""
    ho = layer.hw_out
    return ffi.new("struct cvc_conv *", dict(
        n=1, c_in=layer.c_in, h_in=layer.hw, w_in=layer.hw, c_out=layer.c_out, h_out=ho,
        w_out=ho, kh=layer.k, kw=layer.k, stride_h=layer.stride, stride_w=layer.stride,
        dil_h=1, dil_w=1, pad_top=layer.pad, pad_left=layer.pad, groups=layer.groups,
        act=getattr(lib, f"CVC_ACT_{act.upper()}")))


def float_inputs(rng: np.random.Generator,
                 layer: Layer) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random float32 input, weights and bias of `layer`, uniform in [-1, 1),
    drawn from `rng` in that order."""
    x = rng.uniform(-1, 1, (1, layer.c_in, layer.hw, layer.hw)).astype(np.float32)
    w = rng.uniform(-1, 1, (layer.c_out, layer.c_in // layer.groups, layer.k, layer.k))
    b = rng.uniform(-1, 1, layer.c_out).astype(np.float32)
    return x, w.astype(np.float32), b


def bench_layer(ffi, lib, layer: Layer, args) -> dict:
    rng = np.random.default_rng(0)
    x, w, b = float_inputs(rng, layer)
    out = np.empty((1, layer.c_out, layer.hw_out, layer.hw_out), np.float32)

    p = conv_desc(ffi, lib, layer, layer.act if args.act else "none")
    px, pw, pb, po = (ffi.from_buffer("float[]", a) for a in (x, w, b, out))
    act = {"none": lambda y: y, "relu": F.relu, "relu6": F.relu6}[layer.act if args.act
                                                                   else "none"]

    def ours():
        if lib.cvc_conv2d(p, px, pw, pb, po) != 0:
            raise MemoryError("cvc_conv2d failed")

    tx, tw, tb = (torch.from_numpy(a) for a in (x, w, b))

    def theirs():
        return act(F.conv2d(tx, tw, tb, stride=layer.stride, padding=layer.pad,
                            groups=layer.groups))

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


def library_chain(ffi, lib, layers: list[Layer], repeats: int, warmup: int = 3) -> list:
    """The layers as the device runs a network: one after the other, each
    reading the previous layer's output, each with its own weights (the
    whole working set passes through the caches once per pass), `repeats`
    passes; each call timed. Returns per-layer lists of ms."""
    rng = np.random.default_rng(0)
    calls, bufs = [], []
    x = rng.uniform(-1, 1, (1, layers[0].c_in, layers[0].hw, layers[0].hw)).astype(np.float32)
    for layer in layers:
        if x.size != layer.c_in * layer.hw * layer.hw:      # the classifier after the pool
            x = rng.uniform(-1, 1, (1, layer.c_in, layer.hw, layer.hw)).astype(np.float32)
        w = rng.uniform(-1, 1, (layer.c_out, layer.c_in // layer.groups, layer.k, layer.k))
        w = (w / np.sqrt(w[0].size)).astype(np.float32)
        b = rng.uniform(-1, 1, layer.c_out).astype(np.float32)
        o = np.empty((1, layer.c_out, layer.hw_out, layer.hw_out), np.float32)
        p = conv_desc(ffi, lib, layer, layer.act)
        args = [p] + [ffi.from_buffer("float[]", a) for a in (x, w, b, o)]
        bufs.append((x, w, b, o))
        calls.append(args)
        x = o
    times: list[list[float]] = [[] for _ in layers]
    for r in range(warmup + repeats):
        for k, args in enumerate(calls):
            t0 = time.perf_counter_ns()
            if lib.cvc_conv2d(*args) != 0:
                raise MemoryError("cvc_conv2d failed")
            if r >= warmup:
                times[k].append((time.perf_counter_ns() - t0) / 1e6)
    return times


def library_times(ffi, lib, layers: list[Layer], repeats: int, warmup_s: float = 0.1) -> list:
    """Our library alone on each layer (with its activation, the library's
    default threads, as the device calls it), each layer repeated on hot
    caches (bench-device's way), and the layers chained as in a network
    (library_chain): ms lists. `make bench` puts them next to the same
    layers' device_ns inside QEMU."""
    chain = library_chain(ffi, lib, layers, repeats)
    out = []
    for layer, chained in zip(layers, chain):
        rng = np.random.default_rng(0)
        x, w, b = float_inputs(rng, layer)
        o = np.empty((1, layer.c_out, layer.hw_out, layer.hw_out), np.float32)
        p = conv_desc(ffi, lib, layer, layer.act)
        px, pw, pb, po = (ffi.from_buffer("float[]", a) for a in (x, w, b, o))

        def ours():
            if lib.cvc_conv2d(p, px, pw, pb, po) != 0:
                raise MemoryError("cvc_conv2d failed")

        time.sleep(0.02)
        out.append(dict(name=layer.name, shape=layer.shape, act=layer.act,
                        times_ms=time_it(ours, repeats, warmup_s), chain_times_ms=chained))
    return out


def rescale_record(m: float) -> tuple[int, int]:
    """A real factor m > 0 as (M, S), docs/hardware.md "int8 arithmetic"."""
    f, e = math.frexp(m)
    mult, shift = round(f * 2 ** 31), 31 - e
    if mult == 2 ** 31:
        mult, shift = 2 ** 30, shift - 1
    return mult, shift


def qlinear_conv_session(layer: Layer, q: dict, w: np.ndarray, b: np.ndarray, threads: int):
    """onnxruntime on a one-node QLinearConv model built in memory."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    ho = layer.hw_out
    inits = [numpy_helper.from_array(np.asarray(v, dt), name) for name, v, dt in [
        ("xs", q["x_scale"], np.float32), ("xz", q["zp_in"], np.int8), ("w", w, np.int8),
        ("ws", q["w_scale"], np.float32), ("wz", np.zeros(layer.c_out), np.int8),
        ("ys", q["y_scale"], np.float32), ("yz", q["zp_out"], np.int8), ("b", b, np.int32)]]
    node = helper.make_node("QLinearConv", ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz", "b"],
                            ["y"], kernel_shape=[layer.k] * 2, strides=[layer.stride] * 2,
                            pads=[layer.pad] * 4, group=layer.groups)
    graph = helper.make_graph(
        [node], layer.name,
        [helper.make_tensor_value_info("x", TensorProto.INT8, [1, layer.c_in, layer.hw, layer.hw])],
        [helper.make_tensor_value_info("y", TensorProto.INT8, [1, layer.c_out, ho, ho])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def bench_int8_layer(ffi, lib, layer: Layer, args) -> dict:
    rng = np.random.default_rng(0)
    ho = layer.hw_out
    fan_in = layer.c_in // layer.groups * layer.k ** 2
    x = rng.integers(-128, 128, (1, layer.c_in, layer.hw, layer.hw)).astype(np.int8)
    w = rng.integers(-127, 128, (layer.c_out, layer.c_in // layer.groups, layer.k, layer.k))
    w = w.astype(np.int8)
    b = rng.integers(-2 ** 16, 2 ** 16, layer.c_out).astype(np.int32)
    # Scales: accumulators of std ~ 74 * 74 * sqrt(fan_in) land at an output std ~ 40.
    x_scale, zp_in, zp_out = 0.02, 3, -5
    w_scale = rng.uniform(0.005, 0.01, layer.c_out)
    m_target = 40 / (74 * 74 * np.sqrt(fan_in))
    y_scale = float(x_scale * w_scale.mean() / m_target)
    records = [rescale_record(float(np.float32(x_scale) * np.float32(ws) / np.float32(y_scale)))
               for ws in w_scale]
    requant = np.array(records, np.int32)
    q = dict(x_scale=x_scale, w_scale=w_scale, y_scale=y_scale, zp_in=zp_in, zp_out=zp_out)
    out = np.empty((1, layer.c_out, ho, ho), np.int8)

    p = conv_desc(ffi, lib, layer, "none")
    cq = ffi.new("struct cvc_quant *", dict(
        zp_in=zp_in, zp_out=zp_out, act_min=-128, act_max=127,
        requant=ffi.from_buffer("int32_t[]", requant), lut=ffi.NULL))
    px, pw, po = (ffi.from_buffer("int8_t[]", a) for a in (x, w, out))
    pb = ffi.from_buffer("int32_t[]", b)

    def ours():
        if lib.cvc_conv2d_s8(p, cq, px, pw, pb, po) != 0:
            raise MemoryError("cvc_conv2d_s8 failed")

    tx, tw, tb = (torch.from_numpy(a.astype(np.float32)) for a in (x, w, b))

    def theirs():
        return F.conv2d(tx, tw, tb, stride=layer.stride, padding=layer.pad, groups=layer.groups)

    sess = qlinear_conv_session(layer, q, w, b, args.threads)
    binding = sess.io_binding()
    binding.bind_cpu_input("x", x)
    binding.bind_output("y", "cpu")

    def ort_run():
        sess.run_with_iobinding(binding)

    times: dict[str, list[float]] = {"ours": [], "torch": [], "ort": []}
    with torch.inference_mode(), OtherLoad() as load:
        for _ in range(args.rounds):
            for name, fn in (("ours", ours), ("torch", theirs), ("ort", ort_run)):
                time.sleep(args.settle)
                times[name] += time_it(fn, args.repeats, args.warmup)
    ours()
    ort_run()
    diff = np.abs(out.astype(np.int32) - binding.copy_outputs_to_cpu()[0].astype(np.int32))
    med = {k: statistics.median(v) for k, v in times.items()}
    return dict(ours_ms=med["ours"], torch_ms=med["torch"], ort_ms=med["ort"],
                ratio_torch=med["torch"] / med["ours"], ratio_ort=med["ort"] / med["ours"],
                ours_min_ms=min(times["ours"]), torch_min_ms=min(times["torch"]),
                ort_min_ms=min(times["ort"]), samples=len(times["ours"]),
                other_load=round(load.fraction, 3), max_diff_vs_ort=int(diff.max()),
                frac_diff_vs_ort=round(float((diff > 0).mean()), 4),
                ok=bool(diff.max() <= 1))


INT8_HEAD = (f"{'net':<13}{'layer':<12}{'shape':<30}{'n':>2}{'MMACs':>8}{'int8 ms':>9}"
             f"{'torch ms':>9}{'ort ms':>8}{'x torch':>8}{'x ort':>7}{'load%':>6}")


def int8_row(name: str, layer: str, shape: str, n, macs: float, r: dict) -> str:
    return (f"{name:<13}{layer:<12}{shape:<30}{n:>2}{macs / 1e6:>8.1f}{r['ours_ms']:>9.3f}"
            f"{r['torch_ms']:>9.3f}{r['ort_ms']:>8.3f}{r['ratio_torch']:>8.2f}"
            f"{r['ratio_ort']:>7.2f}" + (f"{100 * r['other_load']:>6.0f}" if "other_load" in r
                                         else ""))


def run_int8(ffi, lib, args) -> tuple[dict, list[str]]:
    """The int8 suite: per-layer rows, per-net and total sums, and its printed lines."""
    lines = [INT8_HEAD, "-" * len(INT8_HEAD)]
    print("\n".join(lines), flush=True)
    rows, nets = [], {}
    for layer, n in int8_layers():
        r = bench_int8_layer(ffi, lib, layer, args)
        for _ in range(args.retries):
            if r["other_load"] <= args.max_load:
                break
            time.sleep(2)
            again = bench_int8_layer(ffi, lib, layer, args)
            r = min(r, again, key=lambda m: m["other_load"])
        rows.append(dict(asdict(layer), shape=layer.shape, count=n, macs=layer.macs, **r))
        t = nets.setdefault(layer.net, dict(ours_ms=0.0, torch_ms=0.0, ort_ms=0.0, macs=0))
        for k in ("ours_ms", "torch_ms", "ort_ms"):
            t[k] += n * r[k]
        t["macs"] += n * layer.macs
        flag = "" if r["ok"] else f"  MISMATCH vs onnxruntime by {r['max_diff_vs_ort']}"
        lines.append(int8_row(layer.net, layer.name, layer.shape, n, layer.macs, r) + flag)
        print(lines[-1], flush=True)
    total = {k: sum(t[k] for t in nets.values()) for k in ("ours_ms", "torch_ms", "ort_ms", "macs")}
    lines.append("-" * len(INT8_HEAD))
    for name, t in list(nets.items()) + [("total", total)]:
        t["ratio_torch"] = t["torch_ms"] / t["ours_ms"]
        t["ratio_ort"] = t["ort_ms"] / t["ours_ms"]
        lines.append(int8_row(name, "", "", "", t["macs"], t))
        print(lines[-1], flush=True)
    for key, what in (("ratio_torch", "PyTorch f32"), ("ratio_ort", "onnxruntime int8")):
        worst = min(rows, key=lambda r: r[key])
        lines.append(f"vs {what}: worst layer {worst['net']}/{worst['name']} {worst[key]:.2f}, "
                     f"layers >= 0.5x: {sum(r[key] >= 0.5 for r in rows)}/{len(rows)}")
        print(lines[-1])
    return dict(layers=rows, nets=nets, total=total), lines


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
    ap.add_argument("--suite", choices=["all", "float", "int8"], default="all",
                    help="float32 layers, int8 layers, or both (default)")
    ap.add_argument("--act", action=argparse.BooleanOptionalAction, default=True,
                    help="fuse each layer's activation as the device runs it (ReLU6 in "
                         "MobileNet, ReLU in allconv; torch applies it after F.conv2d); "
                         "--no-act: plain convolutions")
    ap.add_argument("--library", help="a build of the compute library to load instead of "
                                      "qemu/compute/build.sh's (e.g. one built with QEMU's "
                                      "flags)")
    ap.add_argument("--json", type=Path, default=TOP / "bench" / "results-device.json")
    ap.add_argument("--no-readme", action="store_true",
                    help="do not paste the int8 table into bench/README.md")
    args = ap.parse_args()

    path = args.library or build_library()
    forced = openblas_core(args.openblas_core, path)
    ffi, lib = load_library(path)
    lib.cvc_set_threads(args.threads)
    torch.set_num_threads(args.threads)

    layers = [layer for net in (mobilenet_v1(), allconv6()) for layer in net
              if (not args.net or layer.net in args.net) and args.suite != "int8"]
    # Identical shapes run once, counted as often as they occur.
    counts: dict[tuple, int] = {}
    unique: list[Layer] = []
    for layer in layers:
        key = (layer.net, layer.shape, layer.groups)
        if key not in counts:
            unique.append(layer)
        counts[key] = counts.get(key, 0) + 1

    env = dict(threads=args.threads, torch=torch.__version__, act=args.act, library=path,
               openblas_core=ffi.string(lib.openblas_get_corename()).decode(),
               openblas_coretype_env=forced, int8_isa=ISA_NAMES.get(lib.cvc_isa(), "?"),
               cpu=platform.processor() or platform.machine(), cores=os.cpu_count())
    if args.suite != "float":
        import onnxruntime
        env["onnxruntime"] = onnxruntime.__version__
    how = "OPENBLAS_CORETYPE" if forced else "detected by OpenBLAS"
    print(f"threads={env['threads']}  torch {env['torch']}  OpenBLAS kernels "
          f"{env['openblas_core']} ({how})  int8 ISA {env['int8_isa']}")

    results = {"env": env}
    ok = True
    if unique:
        results.update(run_float(ffi, lib, unique, counts, args))
        ok = all(r["ok"] for r in results["layers"])
    if args.suite != "float":
        results["int8"], lines = run_int8(ffi, lib, args)
        ok = ok and all(r["ok"] for r in results["int8"]["layers"])
        rows = results["int8"]["layers"]
        busy = max(r["other_load"] for r in rows)
        header = (f"threads={args.threads}, torch {env['torch']}, onnxruntime "
                  f"{env['onnxruntime']}, OpenBLAS {env['openblas_core']}, int8 ISA "
                  f"{env['int8_isa']}; other processes used up to {100 * busy:.0f}% of the "
                  f"machine during a layer")
        if not args.no_readme and args.json == TOP / "bench" / "results-device.json":
            sys.path.insert(0, str(TOP / "bench"))
            import report
            report.update_readme(TOP / "bench" / "README.md",
                                 "```\n" + "\n".join([header, *lines]) + "\n```",
                                 README_INT8_BEGIN, README_INT8_END)

    args.json.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {args.json.relative_to(TOP) if args.json.is_relative_to(TOP) else args.json}")
    return 0 if ok else 1


def run_float(ffi, lib, unique: list[Layer], counts: dict, args) -> dict:
    """The float32 suite (MobileNet-v1, allconv6) against torch."""
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
    return dict(layers=rows, nets=nets, total=total)


if __name__ == "__main__":
    sys.exit(main())
