"""python3 -m pyaccel: list, info, check, run, quantize, analyze, selftest, demo."""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from . import discovery, models
from . import reference as ref
from .device import open as open_device
from .errors import AccelError


def progress(message: str) -> None:
    """Long work says what it is doing (on stderr, so output stays clean)."""
    print(f"[pyaccel] {message}", file=sys.stderr, flush=True)


def device_arg(value: str | None):
    return int(value) if value and value.isdigit() else value


def cmd_list(args: argparse.Namespace) -> int:
    entries = discovery.devices()
    if not entries:
        print(f"no convaccel device: {discovery.why_none()}")
        return 1
    for e in entries:
        attrs = " ".join(f"{k}={v}" for k, v in sorted(e.attributes.items()))
        print(f"{e.node}  {e.platform_device}  {','.join(e.compatible)}  {attrs}")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    with open_device(device_arg(args.device)) as dev:
        print(f"{'device':<14} {dev.path}")
        print(f"{'hw version':<14} {dev.info.version}")
        for name, value in dev.info.fields.items():
            print(f"{name:<14} {value:#010x}" if name.startswith("hw_") else
                  f"{name:<14} {value}")
    return 0


GRAPH_FAMILIES = ("resnet", "mobilenet_v2", "shufflenet_v2", "densenet")
MODEL_CHOICES = ["mobilenet_v1", "allconv", *GRAPH_FAMILIES]


def build_model(args: argparse.Namespace):
    """A graph.Model (mobilenet_v1, allconv) or a compiler GraphModel (the zoo)."""
    res, classes = args.resolution or 224, args.classes or 1000
    if args.model == "resnet":
        return models.resnet(args.depth or 18, args.width, res, classes,
                             args.bottleneck_width, seed=args.seed)
    if args.model == "mobilenet_v2":
        return models.mobilenet_v2(args.width, res, classes, seed=args.seed)
    if args.model == "shufflenet_v2":
        return models.shufflenet_v2(args.width, res, classes, seed=args.seed)
    if args.model == "densenet":
        return models.densenet(args.depth or 121, args.growth_rate, res, classes, seed=args.seed)
    if args.model == "mobilenet_v1":
        m = models.mobilenet_v1(args.width, args.resolution or 224, args.classes or 1000,
                                args.seed)
    else:
        double = [int(v) for v in args.double.split(",") if v] if args.double else ()
        m = models.allconv(args.width, double, args.depth or 5, args.variant,
                           input_size=args.resolution or 32, num_classes=args.classes or 10,
                           seed=args.seed)
    if args.weights:
        m.load_npz(args.weights)
    return m


def stats_table(inf) -> str:
    mhz = inf.model_clock_mhz
    rows = [f"{'layer':<14} {'op':<8} {'MACs':>14} {'device ms':>10} {'model ms':>9} "
            f"{'bytes':>12}"]
    for s in inf.layers:
        rows.append(f"{s.name:<14} {s.op:<8} {s.macs:>14,} {s.device_ns / 1e6:>10.3f} "
                    f"{s.cycles / mhz / 1e3:>9.4f} {s.bytes:>12,}")
    j = inf.job
    rows.append(f"{'total':<14} {'':<8} {j.macs:>14,} {j.device_ns / 1e6:>10.3f} "
                f"{inf.modelled_ms:>9.4f} {j.bytes_read + j.bytes_written:>12,}")
    rows.append(f"device compute {j.device_ns / 1e6:.2f} ms, modelled "
                f"{inf.modelled_ms:.3f} ms ({j.cycles:,} cycles), job latency "
                f"{j.latency_ns / 1e6:.2f} ms, wall {inf.wall_ns / 1e6:.2f} ms, "
                f"{j.bytes_read + j.bytes_written:,} bytes moved")
    return "\n".join(rows)


def model_graph(args: argparse.Namespace):
    """The IR graph of the MODEL argument (a zoo name, or an .onnx file through
    pyaccel.onnx.load) at --batch."""
    if args.model.endswith(".onnx"):
        from . import onnx as onnx_frontend      # the ONNX frontend (pyaccel/onnx.py)

        return onnx_frontend.load_model(args.model).graph   # a QDQ model: its int8 graph
    if args.model not in MODEL_CHOICES:
        raise ValueError(f"unknown model {args.model!r}: one of {', '.join(MODEL_CHOICES)} "
                         f"or an .onnx file")
    model = build_model(args)
    return (model.batched(args.batch) if isinstance(model, models.GraphModel)
            else model.to_graph(args.batch))


def cmd_check(args: argparse.Namespace) -> int:
    """What runs where (device, CPU, view, and why) and the memory plan."""
    from .compiler import check_report

    info = None
    if args.device is not None:
        with open_device(device_arg(args.device)) as dev:
            info = dev.info
    graph = model_graph(args)
    print(check_report(graph, info))
    if args.model.endswith(".onnx"):
        from . import onnx as onnx_frontend
        from .quantize import QuantizedModel, precision_report

        model = onnx_frontend.load_model(args.model)
        if isinstance(model, QuantizedModel):
            print(precision_report(model))
    return 0


def model_header(model, verbose: bool) -> str:
    """What a run prints first: with --verbose the model's summary, else its
    name, parameters and MACs on one line."""
    if verbose:
        return model.summary()
    return f"{model.name}: {model.params:,} params, {model.macs:,} MACs"


def input_batch(args: argparse.Namespace, input_shape: tuple) -> np.ndarray:
    """The run's input: --input (an .npy file, reshaped to --batch images of
    input_shape), else a standard-normal batch seeded by --seed."""
    shape = (args.batch,) + input_shape
    if args.input:
        return np.load(args.input).astype(np.float32).reshape(shape)
    return np.random.default_rng(args.seed).standard_normal(shape, dtype=np.float32)


def cmd_run_graph(args: argparse.Namespace, model) -> int:
    """A zoo network through the graph compiler: per-layer table."""
    print(model_header(model, args.verbose))
    x = input_batch(args, model.input_shape)
    with open_device(device_arg(args.device)) as dev:
        progress("compiling: passes, partition, memory plan, uploading weights")
        with model.compile(dev, args.batch) as net:
            print(net.report().splitlines()[-1])
            net(x)                                       # warm-up
            inf = net(x)
    y = inf.output.reshape(args.batch, -1)
    top = np.argsort(-y[0])[:5]
    print("top-5:", ", ".join(f"{c}: {y[0][c]:.4f}" for c in top))
    print(inf.table())
    if args.check:
        progress("computing the numpy reference on the CPU")
        err = float(np.abs(y - model.reference(x)).max())
        print(f"max |device - reference| = {err:.3g}")
        return 0 if err < 1e-3 * max(1.0, float(np.abs(y).max())) else 1
    return 0


def calibration_data(spec: str, input_shape: tuple, images: int | None) -> np.ndarray:
    """--data: an .npz of images ("x", "images" or its first array), or
    random:N (N seeded standard-normal images: no dataset needed)."""
    if spec.startswith("random:"):
        n = int(spec.split(":", 1)[1])
        x = np.random.default_rng(1234).standard_normal((n,) + tuple(input_shape),
                                                        dtype=np.float32)
    else:
        from .quantize import calibration_array

        x = calibration_array(spec, input_shape)
    return x[:images] if images else x


def float_model(args: argparse.Namespace):
    """The MODEL argument as a compiler GraphModel (zoo, mobilenet_v1, .onnx)."""
    if args.model.endswith(".onnx"):
        from . import onnx as onnx_frontend

        return models.GraphModel(onnx_frontend.load(args.model))
    if args.model not in MODEL_CHOICES:
        raise ValueError(f"unknown model {args.model!r}: one of {', '.join(MODEL_CHOICES)} "
                         f"or an .onnx file")
    m = build_model(args)
    return m if isinstance(m, models.GraphModel) else models.GraphModel(m.to_graph(),
                                                                      dict(m.config))


def quantized_model(args: argparse.Namespace):
    """Quantize MODEL on --data (or load a saved quantized .npz)."""
    from .quantize import quantize

    if args.model.endswith(".npz"):
        return models.GraphModel.load(args.model)
    model = float_model(args)
    x = calibration_data(args.data, model.input_shape, args.images)
    keep = tuple(k for k in (args.keep_float or "").split(",") if k)
    progress(f"{model.name}: calibrating on {len(x)} image(s) ({args.method}), quantizing")
    return quantize(model, x, method=args.method, percentile=args.percentile,
                    keep_float=keep, auto_float=args.auto_float)


def cmd_quantize(args: argparse.Namespace) -> int:
    qm = quantized_model(args)
    prec = qm.precision
    kept = [k for k, v in prec.items() if v == "f32"]
    print(f"{qm.name}: {sum(v == 'int8' for v in prec.values())} int8 nodes, "
          f"{len(kept)} float32 ({', '.join(kept) or 'none'}); calibration {qm.calibration}")
    print(qm.memory_line())
    qm.save(args.out)
    print(f"saved {args.out} (python3 -m pyaccel run {args.out})")
    return 0


def cmd_analyze(args: argparse.Namespace) -> int:
    from . import analysis

    qm = quantized_model(args)
    x = calibration_data(args.data, qm.input_shape, args.images)[:args.analyze_images]
    if args.golden:
        result = analysis.analyze(qm, x, None, args.flag)
    else:
        try:
            dev = open_device(device_arg(args.device))
        except (AccelError, ImportError, OSError) as e:
            progress(f"no device ({e}): the int8 side is the golden model")
            result = analysis.analyze(qm, x, None, args.flag)
        else:
            with dev:
                result = analysis.analyze(qm, x, dev, args.flag)
    print(result.table())
    if args.png:
        why = analysis.plot(result, args.png)
        print(why or f"wrote {args.png}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    if args.model.endswith(".onnx"):            # pyaccel/onnx_cli.py (issue #12, ONNX half)
        from .onnx_cli import run as run_onnx
        return run_onnx(args)
    if args.model.endswith(".npz"):             # a saved (quantized) compiler model
        return cmd_run_graph(args, models.GraphModel.load(args.model))
    if args.model not in MODEL_CHOICES:
        raise ValueError(f"unknown model {args.model!r}: one of {', '.join(MODEL_CHOICES)}")
    model = build_model(args)
    if isinstance(model, models.GraphModel):
        return cmd_run_graph(args, model)
    print(model_header(model, args.verbose))
    x = input_batch(args, model.input_shape)
    with open_device(device_arg(args.device)) as dev:
        progress("uploading weights and preparing the job")
        with model.compile(dev, args.batch) as net:
            net(x)                                       # warm-up
            inf = net(x)
    top = np.argsort(-inf.output[0])[:5]
    print("top-5:", ", ".join(f"{c}: {inf.output[0][c]:.4f}" for c in top))
    print(stats_table(inf))
    if args.check:
        progress("computing the numpy reference on the CPU")
        want = model.reference(x)
        err = float(np.abs(inf.output - want).max())
        print(f"max |device - reference| = {err:.3g}")
        return 0 if err < 1e-3 else 1
    return 0


def cmd_selftest(args: argparse.Namespace) -> int:
    rng = np.random.default_rng(0)
    cases = [((1, 8, 12, 12), (16, 8, 3, 3), dict(padding=1, activation="relu")),
             ((2, 16, 9, 9), (16, 1, 3, 3), dict(groups=16, stride=2, padding=1)),
             ((1, 32, 4, 4), (10, 32, 1, 1), {})]
    failures = 0
    with open_device(device_arg(args.device)) as dev:
        for xs, ws, kw in cases:
            x = rng.standard_normal(xs, dtype=np.float32)
            w = rng.standard_normal(ws, dtype=np.float32)
            err = float(np.abs(dev.conv2d(x, w, **kw) - ref.conv2d(x, w, **kw)).max())
            ok = err < 1e-3
            failures += not ok
            print(f"conv2d x{xs} w{ws} {kw}: max error {err:.2e} {'ok' if ok else 'FAIL'}")
        x = rng.standard_normal((1, 4, 8, 8), dtype=np.float32)
        for name in ("max_pool2d", "avg_pool2d"):
            err = float(np.abs(getattr(dev, name)(x, 2) - getattr(ref, name)(x, 2)).max())
            failures += err >= 1e-5
            print(f"{name} x{x.shape}: max error {err:.2e} {'ok' if err < 1e-5 else 'FAIL'}")
    print("selftest:", "FAILED" if failures else "passed")
    return 1 if failures else 0


def demo_models() -> list[models.Model]:
    nets = [models.allconv(variant=v) for v in models.ALLCONV_VARIANTS]
    return nets + [models.mobilenet_v1(a) for a in (1.0, 0.75, 0.5, 0.25)]


def cmd_demo(args: argparse.Namespace) -> int:
    """Every demo network on the device, checked against the CPU reference."""
    rows = []
    with open_device(device_arg(args.device)) as dev:
        for model in demo_models():
            progress(f"{model.name}: compiling, running, checking against numpy")
            x = np.random.default_rng(1).standard_normal((1,) + model.input_shape,
                                                         dtype=np.float32)
            with model.compile(dev) as net:
                net(x)
                times = []
                for _ in range(args.repeat):
                    t0 = time.monotonic()
                    inf = net(x)
                    times.append(time.monotonic() - t0)
            err = float(np.abs(inf.output - model.reference(x)).max())
            rows.append((model.name, model.config.get("width_mult", model.config.get("width")),
                         model.params, model.macs, inf.job.device_ns / 1e6,
                         float(np.median(times)) * 1e3, inf.modelled_ms, err))
    print(f"{'model':<28} {'width':>5} {'params':>10} {'MACs':>13} {'device ms':>9} "
          f"{'e2e ms':>8} {'model ms':>8} {'max err':>8}")
    for r in rows:
        print(f"{r[0]:<28} {r[1]:>5g} {r[2]:>10,} {r[3]:>13,} {r[4]:>9.2f} {r[5]:>8.2f} "
              f"{r[6]:>8.3f} {r[7]:>8.1e}")
    return 0 if all(r[7] < 1e-3 for r in rows) else 1


def model_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help=f"one of {', '.join(MODEL_CHOICES)} (check: or an .onnx file; "
                   "run, analyze: or a saved .npz)")
    p.add_argument("--width", type=float, default=1.0, help="width multiplier")
    p.add_argument("--depth", type=int, help="allconv: conv layers (5); resnet: 18, 34, 50, "
                   "101, 152 (18); densenet: 121, 169, 201, 264 (121)")
    p.add_argument("--bottleneck-width", type=int, default=64,
                   help="resnet: bottleneck width (128 with depth 50: wide_resnet50_2)")
    p.add_argument("--growth-rate", type=int, default=32, help="densenet: k")
    p.add_argument("--double", default="", help="allconv: layers to double, e.g. 1,2")
    p.add_argument("--variant", help=f"allconv: one of {', '.join(models.ALLCONV_VARIANTS)}")
    p.add_argument("--resolution", type=int,
                   help="input size (default: allconv 32, the others 224)")
    p.add_argument("--classes", type=int, help="number of classes")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--seed", type=int, default=0, help="random weights and input")
    p.add_argument("--weights", help="mobilenet_v1, allconv: .npz of weights (pyaccel.graph)")
    p.add_argument("--input", help=".npy input (default: random)")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python3 -m pyaccel", description=__doc__)
    p.add_argument("-d", "--device", help="index (0, 1, ...) or device path; default: first")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list accelerators").set_defaults(func=cmd_list)
    sub.add_parser("info", help="show an accelerator's information").set_defaults(func=cmd_info)
    run = sub.add_parser("run", help="run a network on the device")
    check = sub.add_parser("check", help="support report and memory plan of a network "
                           "(no device needed; -d: that device's INFO)")
    for p_ in (run, check):
        model_arguments(p_)
    check.set_defaults(func=cmd_check)
    run.add_argument("--check", action="store_true", help="compare with the numpy reference")
    run.add_argument("-v", "--verbose", action="store_true", help="print the layer table")
    run.add_argument("--output", help=".onnx models: write the first output (float32 .npy)")
    run.set_defaults(func=cmd_run)
    qz = sub.add_parser("quantize", help="post-training int8 quantization of a network "
                        "(saved as an .npz that run and analyze take)")
    an = sub.add_parser("analyze", help="per-layer int8 vs float32 error of a network "
                        "(device, or the golden model without one)")
    for p_ in (qz, an):
        model_arguments(p_)
        p_.add_argument("--data", default="random:8",
                        help="calibration images: an .npz (key x/images, or its first array) "
                        "or random:N (default random:8)")
        p_.add_argument("--images", type=int, help="use only the first N calibration images")
        p_.add_argument("--method", choices=("minmax", "percentile"), default="minmax")
        p_.add_argument("--percentile", type=float, default=99.99)
        p_.add_argument("--keep-float", help="node names to keep in float32, comma-separated")
        p_.add_argument("--auto-float", type=int, default=0,
                        help="also keep the N layers with the largest error in float32")
    qz.add_argument("-o", "--out", required=True, help="the quantized model's .npz")
    qz.set_defaults(func=cmd_quantize)
    an.add_argument("--analyze-images", type=int, default=4,
                    help="images to compare on (the first of --data; default 4)")
    an.add_argument("--flag", type=int, default=1, help="layers to flag for float32")
    an.add_argument("--png", help="write a per-layer error plot (needs matplotlib)")
    an.add_argument("--golden", action="store_true",
                    help="the golden model even if a device is there")
    an.set_defaults(func=cmd_analyze)
    sub.add_parser("selftest", help="quick correctness check against numpy"
                   ).set_defaults(func=cmd_selftest)
    demo = sub.add_parser("demo", help="all demo networks, with a results table")
    demo.add_argument("--repeat", type=int, default=3)
    demo.set_defaults(func=cmd_demo)
    args = p.parse_args(argv)
    try:
        return args.func(args)
    except AccelError as e:
        print(f"pyaccel: {e}", file=sys.stderr)
        return 1
    except (ValueError, KeyError, OSError) as e:
        print(f"pyaccel: {e}", file=sys.stderr)
        return 2
