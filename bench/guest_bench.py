"""The guest half of `make bench`: runs inside the board, writes JSON.

    python3 bench/guest_bench.py [--json /out/guest.json] [--repeats N] [--quick]

Sections (each written to the JSON as soon as it is done):

- check: cpu_numpy against the oracle on small networks;
- tiny: submit-to-completion latency of a one-element 1x1 convolution from
  Python (the compiled, zero-copy way and the Device.conv2d way);
- main: every nets.MAIN network on the device (CompiledModel: e2e wall time
  around the call, driver latency, device_ns, per layer);
- modes: nets.MODES as one chain, one job per layer on the same buffers,
  and one Device.conv2d-style call per layer (copy in and out);
- scaling: nets.SCALING on the device;
- then every nets.MAIN network in float32 numpy on this CPU (cpu_numpy, run
  twice: it is slow), its output checked against the device's;
- zoo: nets.ZOO (ResNet-18, MobileNetV2) through the graph compiler;
- int8: nets.INT8 quantized on the host (bench/int8.py wrote the model
  into build/, which the guest sees read-only), on the device's int8 path;
  its output goes to /out/int8-output.npy for the host's bit-exact check
  against the golden model;
- batch: MobileNet-v1 1.0 at batch nets.BATCH;
- drift: MobileNet-v1 1.0 on the device once more, after the CPU runs.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import cpu_numpy  # noqa: E402
import nets  # noqa: E402
import pyaccel  # noqa: E402
from pyaccel import ops  # noqa: E402
from pyaccel import reference as ref  # noqa: E402
from pyaccel.graph import Conv2d, Model  # noqa: E402
from pyaccel.jobs import Layer, Tensor, encode  # noqa: E402
from stats import machine, repeat, summary  # noqa: E402


def log(msg: str) -> None:
    print(f"[guest {time.monotonic():7.1f}] {msg}", flush=True)


def net_input(shape: tuple, batch: int = 1) -> np.ndarray:
    """The benchmark's input for a network: standard normal, seed 1."""
    return np.random.default_rng(1).standard_normal((batch,) + tuple(shape), dtype=np.float32)


def tiny_latency(dev: pyaccel.Device, runs: int) -> dict:
    """One 1x1 conv of one element: what a job costs beyond its compute."""
    geometry = ops.window_geometry(dev, (1, 1, 1, 1), 1, 1, 1, 0, 1, 1)
    with dev.buffer(4096) as buf:
        buf.array(64)[:] = 1.0
        layer = Layer("conv", Tensor(buf.handle, 0), Tensor(buf.handle, 128),
                      Tensor(buf.handle, 64), geometry=geometry)
        arr = encode([layer])
        driver, device = [], []

        def job() -> None:
            r = dev.submit(arr).wait()
            driver.append(r.latency_ns)
            device.append(r.device_ns)

        wall = repeat(job, runs, warmup=20)
        driver, device = driver[20:], device[20:]
    x, w = np.ones((1, 1, 1, 1), np.float32), np.ones((1, 1, 1, 1), np.float32)
    copying = repeat(lambda: dev.conv2d(x, w), runs // 2, warmup=10)
    return dict(zero_copy=summary(wall), driver=summary(driver), device=summary(device),
                conv2d_copying=summary(copying))


def device_run(dev: pyaccel.Device, model, x: np.ndarray, repeats: int) -> dict:
    """The compiled network (a graph.Model: one v1 job; a GraphModel: the
    graph compiler), `repeats` timed calls after three warm-up calls."""
    t0 = time.perf_counter_ns()
    net = model.compile(dev, batch=len(x))
    compile_ns = time.perf_counter_ns() - t0
    try:
        for _ in range(3):
            net(x)
        wall, infs = [], []
        for _ in range(repeats):
            t0 = time.perf_counter_ns()
            inf = net(x)
            wall.append(time.perf_counter_ns() - t0)
            infs.append(inf)
    finally:
        net.close()
    last = infs[-1]
    layer_ns = np.array([[s.device_ns for s in inf.layers] for inf in infs])
    return dict(
        compile_ms=compile_ns / 1e6,
        e2e=summary(wall),
        call=summary([i.wall_ns for i in infs]),          # input write .. output read
        driver=summary([i.job.latency_ns for i in infs]),  # submit .. completion
        device=summary([i.job.device_ns for i in infs]),   # compute on the device
        overhead_share=float(np.median([1 - i.job.device_ns / w for i, w in zip(infs, wall)])),
        cycles=last.job.cycles, modelled_ms=last.modelled_ms, macs=last.job.macs,
        bytes=last.job.bytes_read + last.job.bytes_written,
        layers=[dict(name=s.name, op=s.op, macs=s.macs, cycles=s.cycles, bytes=s.bytes,
                     device_ms=float(np.median(layer_ns[:, k])) / 1e6)
                for k, s in enumerate(last.layers)],
        output=last.output)


def cpu_run(model: Model, x: np.ndarray, runs: int) -> tuple[dict, np.ndarray]:
    out = []
    times = repeat(lambda: out.append(cpu_numpy.forward(model, x)), runs, warmup=0)
    return summary(times), out[-1]


def per_layer_copying(dev: pyaccel.Device, model: Model, x: np.ndarray) -> np.ndarray:
    """Device.conv2d-style: each layer copies its input and weights in and
    its output out, in a buffer of its own."""
    y = x
    for op in model.ops:
        if isinstance(op, Conv2d):
            y = dev.conv2d(y, model.weights[f"{op.name}.weight"],
                           model.weights.get(f"{op.name}.bias"), op.stride, op.padding,
                           op.dilation, op.groups, op.activation)
        else:
            kernel, stride = op.window(y.shape[1:])
            y = ops.pool2d(dev, f"{op.kind}pool", y, kernel, stride, op.padding)
    return y


def modes(dev: pyaccel.Device, model: Model, x: np.ndarray, repeats: int) -> dict:
    """One chain vs one job per layer (zero-copy) vs one copying call per layer."""
    with model.compile(dev) as net:
        singles = [encode([layer]) for layer in net.layers]

        def per_layer_zero_copy() -> None:
            net.input[...] = x
            for arr in singles:
                dev.submit(arr).wait()

        chain = repeat(lambda: net(x), repeats, warmup=3)
        layered = repeat(per_layer_zero_copy, max(3, repeats // 2), warmup=2)
        expected = net(x).output
    copied = repeat(lambda: per_layer_copying(dev, model, x), max(3, repeats // 4), warmup=1)
    y = per_layer_copying(dev, model, x).reshape(1, -1)
    scores = ref.softmax(y, axis=1) if model.softmax else y
    return dict(layers=len(model.ops), chain=summary(chain), per_layer_zero_copy=summary(layered),
                per_layer_copying=summary(copied),
                max_abs_diff=float(np.abs(scores - expected).max()))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path, default=Path("/out/guest.json"))
    ap.add_argument("--repeats", type=int, default=40, help="timed device calls per network")
    ap.add_argument("--cpu-runs", type=int, default=2, help="numpy runs per network")
    ap.add_argument("--tiny-runs", type=int, default=200)
    ap.add_argument("--int8-model", help="a QuantizedModel .npz (bench/int8.py writes it)")
    ap.add_argument("--quick", action="store_true", help="few networks and repeats (for trying it out)")
    a = ap.parse_args()
    main_nets, scaling, mode_nets = nets.MAIN, nets.SCALING, nets.MODES
    if a.quick:
        a.repeats, a.cpu_runs, a.tiny_runs = 5, 1, 40
        main_nets = [n for n in main_nets if n.label in ("mobilenet_v1-0.25-224",
                                                           "allconv-quarter-d5-224x3")]
        scaling, mode_nets = scaling[:3], mode_nets[1:2]
    out: dict = dict(env=dict(machine(), python=platform.python_version(),
                              numpy=np.__version__, machine=platform.machine()),
                     settings=dict(repeats=a.repeats, cpu_runs=a.cpu_runs, tiny_runs=a.tiny_runs,
                                   warmup_calls=3))

    def save() -> None:
        a.json.write_text(json.dumps(out, indent=1) + "\n")

    log("cpu_numpy vs the oracle")
    out["check"] = dict(cpu_numpy_max_abs_err=cpu_numpy.max_error_vs_oracle())
    save()
    with pyaccel.open() as dev:
        out["env"]["device"] = dict(version=dev.info.version,
                                    model_clock_mhz=dev.info.model_clock_mhz)
        # A batch-8 job on a busy host can outlast the driver's default time
        # budget (timeout_ms, 2 s): the graph compiler submits with the default.
        budget = Path("/sys/class/misc/convaccel0/timeout_ms")
        if budget.exists():
            budget.write_text("60000\n")
        log("tiny job latency")
        out["tiny"] = tiny_latency(dev, a.tiny_runs)
        save()
        out["main"], outputs = {}, {}
        for net in main_nets:
            model = net.build()
            log(f"{net.label}: device")
            r = device_run(dev, model, net_input(model.input_shape), a.repeats)
            outputs[net.label] = r.pop("output")
            out["main"][net.label] = dict(net=net.to_dict(), params=model.params, **r)
            save()
        out["modes"] = {}
        for net in mode_nets:
            log(f"{net.label}: chain vs per-layer jobs vs copying")
            model = net.build()
            out["modes"][net.label] = modes(dev, model, net_input(model.input_shape), a.repeats)
            save()
        out["scaling"] = {}
        for net in scaling:
            log(f"{net.label}: device")
            model = net.build()
            r = device_run(dev, model, net_input(model.input_shape), max(5, a.repeats * 2 // 3))
            r.pop("output")
            out["scaling"][net.label] = dict(net=net.to_dict(), params=model.params, **r)
            save()
        out["zoo"] = {}
        for net in nets.ZOO:
            log(f"{net.label}: device (graph compiler)")
            model = net.build()
            r = device_run(dev, model, net_input(model.input_shape), a.repeats)
            r.pop("output")
            out["zoo"][net.label] = dict(net=net.to_dict(), params=model.params, **r)
            save()
        if a.int8_model and Path(a.int8_model).exists():
            from pyaccel.quantize import QuantizedModel

            log(f"{nets.INT8.label}: int8 on the device")
            qm = QuantizedModel.load(a.int8_model)
            r = device_run(dev, qm, net_input(qm.input_shape), a.repeats)
            np.save(a.json.parent / "int8-output.npy", r.pop("output"))
            out["int8"] = dict(net=nets.INT8.to_dict(), model=a.int8_model, **r)
            save()
        # batch: through the graph compiler (its liveness-planned arena; the
        # v1 CompiledModel keeps every activation of every image: 166 MB)
        net = nets.INT8
        log(f"{net.label}: device, batch {nets.BATCH} (graph compiler)")
        model = net.build()
        r = device_run(dev, model, net_input(model.input_shape, nets.BATCH),
                       max(5, a.repeats // 4))
        r.pop("output")
        out["batch"] = dict(net=net.to_dict(), batch=nets.BATCH, **r)
        save()
        # The CPU runs come last: they leave the guest's memory in another
        # state, which moves the device's times (see "drift").
        for net in main_nets:
            model = net.build()
            log(f"{net.label}: numpy on the CPU, {a.cpu_runs} run(s)")
            r = out["main"][net.label]
            r["cpu"], y = cpu_run(model, net_input(model.input_shape), a.cpu_runs)
            r["cpu_vs_device_max_abs_diff"] = float(np.abs(y - outputs[net.label]).max())
            save()
        net = main_nets[-1] if a.quick else nets.MOBILENET_1
        log(f"{net.label}: device again, after the CPU runs")
        model = net.build()
        again = device_run(dev, model, net_input(model.input_shape), a.repeats)
        first = out["main"][net.label]
        out["drift"] = dict(label=net.label, device_first=first["device"],
                            device_after_cpu_runs=again["device"], e2e_first=first["e2e"],
                            e2e_after_cpu_runs=again["e2e"])
    out["env"]["loadavg_end"] = machine()["loadavg"]
    save()
    log(f"wrote {a.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
