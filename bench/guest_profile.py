"""The guest half of `make profile`: runs inside the board.

    python3 bench/guest_profile.py --out /out [--int8-model PATH] [--seconds S]

Each phase (float: MobileNet-v1 1.0 float32, a CompiledModel; resnet18:
ResNet-18 float32 through the graph compiler; int8: the quantized
MobileNet-v1 of bench/int8.py through the graph compiler; tiny: a
one-element 1x1 convolution) calls its network in a loop. It writes
/out/phase-NAME.start when it is warm, runs until the host has profiled
QEMU and written /out/phase-NAME.done (or S seconds more than the host
asked for have passed), then writes /out/phase-NAME.json: the calls made,
and the median split of one call as the guest sees it (wall time around
the call, the driver's submit-to-completion latency, the device's compute).
After the host is done, a phase traces 100 more calls with ftrace
(guest_ftrace.py) and adds the kernel's split of one call ("ftrace").
"""
from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import nets  # noqa: E402
import pyaccel  # noqa: E402
import guest_ftrace  # noqa: E402
from guest_bench import net_input  # noqa: E402
from pyaccel import ops, uapi  # noqa: E402
from pyaccel.compiled import Stages  # noqa: E402
from pyaccel.jobs import Layer, Tensor, encode  # noqa: E402


def loop(out: Path, name: str, call, limit_s: float) -> dict:
    """Call call() (returns a JobResult, or an Inference with its Stages)
    until the host says done."""
    for _ in range(3):
        call()
    (out / f"phase-{name}.start").write_text(f"{time.monotonic()}\n")
    done = out / f"phase-{name}.done"
    wall, driver, device, stages = [], [], [], []
    deadline = time.monotonic() + limit_s
    while not done.exists() and time.monotonic() < deadline:
        t0 = time.perf_counter_ns()
        r = call()
        wall.append(time.perf_counter_ns() - t0)
        job = getattr(r, "job", r)
        driver.append(job.latency_ns)
        device.append(job.device_ns)
        if getattr(r, "stages", None) is not None:
            stages.append(dataclasses.astuple(r.stages))
    med = lambda v: float(np.median(v)) / 1e6 if v else 0.0  # noqa: E731
    r = dict(calls=len(wall), wall_ms=med(wall), driver_ms=med(driver), device_ms=med(device),
             host_done=done.exists())
    if stages:
        names = [f.name for f in dataclasses.fields(Stages)]
        r["stages_ms"] = {n: med([s[i] for s in stages]) for i, n in enumerate(names)}
    r["ftrace"] = traced(call)
    tmp = out / f"phase-{name}.json.tmp"        # renamed: the host never reads half of it
    with open(tmp, "w") as f:
        f.write(json.dumps(r) + "\n")
        f.flush()
        os.fsync(f.fileno())                    # 9p may cache writes in the guest
    os.replace(tmp, out / f"phase-{name}.json")
    return r


def traced(call, calls: int = 100) -> dict:
    """The kernel's split of one call (guest_ftrace), or why there is none."""
    try:
        with guest_ftrace.Trace() as t:
            for _ in range(calls):
                t.mark("B")
                call()
                t.mark("E")
    except (OSError, guest_ftrace.TraceError) as e:
        return dict(error=str(e))
    return t.split(uapi.ioctl_number("SUBMIT"), uapi.ioctl_number("WAIT"))


def network(dev: pyaccel.Device, out: Path, name: str, model, limit_s: float) -> dict:
    """One network's phase. Its buffers are freed on return: the views of
    them die with this frame (a mapped buffer keeps its memory), so the next
    network's large buffers find the device's memory free."""
    net = model.compile(dev)
    try:
        x = net_input(model.input_shape)
        return loop(out, name, lambda: net(x), limit_s)
    finally:
        net.close()


def tiny(dev: pyaccel.Device, out: Path, limit_s: float) -> dict:
    geometry = ops.window_geometry(dev, (1, 1, 1, 1), 1, 1, 1, 0, 1, 1)
    with dev.buffer(4096) as buf:
        buf.array(64)[:] = 1.0
        arr = encode([Layer("conv", Tensor(buf.handle, 0), Tensor(buf.handle, 128),
                            Tensor(buf.handle, 64), geometry=geometry)])
        return loop(out, "tiny", lambda: dev.submit(arr).wait(), limit_s)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("/out"))
    ap.add_argument("--int8-model", help="a QuantizedModel .npz (bench/int8.py writes it)")
    ap.add_argument("--seconds", type=float, default=120,
                    help="the longest a phase waits for the host")
    a = ap.parse_args()
    results = {}
    with pyaccel.open() as dev:
        results["float"] = network(dev, a.out, "float", nets.MOBILENET_1.build(), a.seconds)
        gc.collect()
        results["resnet18"] = network(dev, a.out, "resnet18", nets.ZOO[0].build(), a.seconds)
        gc.collect()
        if a.int8_model and Path(a.int8_model).exists():
            from pyaccel.quantize import QuantizedModel

            qm = QuantizedModel.load(a.int8_model)
            results["int8"] = network(dev, a.out, "int8", qm, a.seconds)
            gc.collect()
        results["tiny"] = tiny(dev, a.out, a.seconds)
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
