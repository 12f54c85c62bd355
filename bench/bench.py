"""`make bench`: the device against the guest's CPU and the host's PyTorch.

    $(scripts/venv.sh bench/requirements.txt) bench/bench.py [--quick] [--guest-json F]

1. builds the board's artifacts if needed (scripts/build-all.sh);
2. waits (up to --quiet-wait s) for the machine to be idle, then boots the
   board once to run bench/guest_bench.py (device and guest-CPU numbers,
   JSON in build/bench-run/guest.json);
3. after the board is off, times the same networks in PyTorch on the host
   (torch.set_num_threads(--threads)), end to end and per layer;
4. writes bench/results.json, prints the tables, draws bench/*.png.

Networks: bench/nets.py. Ratios and fits: bench/analysis.py.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
TOP = HERE.parent
README_BEGIN, README_END = "<!-- latest: begin (bench/bench.py) -->", "<!-- latest: end -->"
sys.path.insert(0, str(TOP / "scripts"))
import board  # noqa: E402

import analysis  # noqa: E402
import int8  # noqa: E402
from hostenv import OtherLoad, build, wait_for_quiet  # noqa: E402
import nets  # noqa: E402
import plots  # noqa: E402
import report  # noqa: E402
from stats import machine  # noqa: E402


def run_guest(args: argparse.Namespace) -> dict:
    run_dir = board.BUILD / "bench-run"
    (run_dir / "guest.json").unlink(missing_ok=True)
    (run_dir / "int8-output.npy").unlink(missing_ok=True)
    cmd = ("python3 bench/guest_bench.py --json /out/guest.json "
           f"--int8-model {int8.MODEL.relative_to(TOP)}" + (" --quick" if args.quick else ""))
    r = board.run(cmd, out_dir=run_dir, timeout=args.timeout, echo=True)
    if not r.ok:
        sys.exit(f"bench: the guest run failed (status {r.status}): {r.problems}; "
                 f"console in {run_dir}/console.log")
    return json.loads((run_dir / "guest.json").read_text())


def run_host(guest: dict, args: argparse.Namespace) -> dict:
    import torch

    import host_torch

    torch.set_num_threads(args.threads)
    by_label = nets.by_label()
    out: dict = {}
    for label in guest["main"]:
        print(f"bench: {label}: PyTorch on the host", flush=True)
        out[label] = host_torch.measure(by_label[label], args.repeats, args.layer_repeats)
    host = dict(env=host_torch.env(args.threads), nets=out, zoo={})
    zoo = {n.label: n for n in nets.ZOO}
    for label in guest.get("zoo", {}):
        print(f"bench: {label}: PyTorch on the host", flush=True)
        host["zoo"][label] = host_torch.measure_graph(zoo[label], args.repeats)
    if "batch" in guest:
        print(f"bench: {nets.INT8.label} batch {nets.BATCH}: PyTorch on the host",
              flush=True)
        host["batch"] = host_torch.measure_batch(nets.MOBILENET_1, nets.BATCH,
                                                 max(5, args.repeats // 3))
        host["batch1"] = host_torch.measure_batch(nets.MOBILENET_1, 1, args.repeats)
    print("bench: the device's compute library on the host (MobileNet-v1 1.0's layers)",
          flush=True)
    host["library"] = host_torch.library_layers(args.layer_repeats)
    if "int8" in guest:
        print(f"bench: {nets.INT8.label}: onnxruntime int8 and PyTorch float32 on the host",
              flush=True)
        x = host_torch.net_input(nets.INT8.build().input_shape)
        # PyTorch, and the library above, before onnxruntime: measured once,
        # PyTorch's MobileNet-v1 went from 16.0 to 18.0-21.8 ms right after
        # onnxruntime's runs (the run-to-run noise here is nearly as large)
        tf32 = host_torch.measure_graph(nets.INT8, args.repeats)
        host["int8"] = dict(torch=tf32,
                            onnxruntime=int8.onnxruntime(x, args.threads, args.repeats))
        dev_out = board.BUILD / "bench-run" / "int8-output.npy"
        if dev_out.exists():
            want = int8.golden(x)
            got = np.load(dev_out).reshape(want.shape)
            host["int8"]["bit_exact_vs_golden"] = bool(np.array_equal(got, want))
            host["int8"]["max_abs_diff_vs_golden"] = float(np.abs(got - want).max())
    return host


def _rel(path: Path) -> str:
    return str(path.relative_to(TOP) if path.is_relative_to(TOP) else path)


def checks(results: dict) -> list[str]:
    """Numerical agreement: a benchmark of wrong answers means nothing."""
    bad = []
    if results["check"]["cpu_numpy_max_abs_err"] > 1e-4:
        bad.append(f"cpu_numpy vs oracle: {results['check']['cpu_numpy_max_abs_err']:.2g}")
    for r in results["networks"]:
        for key in ("cpu_vs_device_max_abs_diff", "torch_vs_oracle_max_abs_err"):
            if r[key] > 1e-4:
                bad.append(f"{r['label']}: {key} = {r[key]:.2g}")
    i8 = results.get("int8")
    if i8 and not i8.get("bit_exact_vs_golden", False):
        bad.append(f"int8 {i8['label']}: device output != golden model "
                   f"(max abs diff {i8.get('max_abs_diff_vs_golden')})")
    for r in results.get("zoo", []):
        if r["torch_vs_oracle_max_abs_err"] > 1e-3 * max(1.0, r["oracle_max_abs"]):
            bad.append(f"{r['label']}: torch twin vs oracle {r['torch_vs_oracle_max_abs_err']:.2g}")
    for label, m in results["modes"].items():
        if m["max_abs_diff"] > 1e-4:
            bad.append(f"{label}: per-layer copying vs chain: {m['max_abs_diff']:.2g}")
    return bad


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a few networks, few repeats")
    ap.add_argument("--guest-json", type=Path, help="reuse a guest run's JSON (no boot)")
    ap.add_argument("--threads", type=int, default=2, help="PyTorch threads (default 2)")
    ap.add_argument("--repeats", type=int, default=30, help="PyTorch e2e repeats")
    ap.add_argument("--layer-repeats", type=int, default=20, help="PyTorch per-layer repeats")
    ap.add_argument("--quiet-wait", type=float, default=300,
                    help="seconds to wait at most for an idle machine before measuring")
    ap.add_argument("--timeout", type=float, default=1800, help="guest run timeout, s")
    ap.add_argument("--json", type=Path, default=HERE / "results.json")
    ap.add_argument("--report-only", action="store_true",
                    help="measure nothing: print --json's results, draw its figures and "
                         "paste them into the READMEs again")
    args = ap.parse_args()
    if args.report_only:
        results = json.loads(args.json.read_text())
        analysis.validate(results["targets"], results["env"])
        publish(results, args)
        return 1 if checks(results) else 0
    t_start = time.monotonic()
    if not args.guest_json:
        build()
    import bench_device
    # The device's OpenBLAS kernels (scripts/blasenv.py): QEMU gets them from
    # board.run, the library in this process from this environment.
    os.environ.update(board.blasenv.environ(Path(bench_device.build_library())))
    env: dict = dict(host=dict(machine(), python=platform.python_version(),
                               cpu=platform.processor() or platform.machine()),
                     # what the device (QEMU inherits it), the library and PyTorch ran with
                     openblas_env={k: v for k, v in os.environ.items()
                                   if k.startswith("OPENBLAS")})
    if args.guest_json:
        guest = json.loads(args.guest_json.read_text())
    else:
        env["int8_model"] = int8.prepare()
        env["other_load_before_guest"] = wait_for_quiet(args.quiet_wait)
        t0 = time.monotonic()
        with OtherLoad() as load:
            guest = run_guest(args)
        env["guest_run_s"] = round(time.monotonic() - t0, 1)
        env["other_load_during_guest"] = load.fraction
    env["guest"] = guest["env"]
    env["other_load_before_host"] = wait_for_quiet(args.quiet_wait)
    with OtherLoad() as load:
        host = run_host(guest, args)
    env["other_load_during_host"] = load.fraction
    env["torch"] = host["env"]
    env["host"]["loadavg_end"] = machine()["loadavg"]
    results = analysis.analyse(guest, host)
    analysis.validate(results["targets"], env)
    env["total_s"] = round(time.monotonic() - t_start, 1)
    results = dict(env=env, settings=dict(guest=guest["settings"], host=dict(
        repeats=args.repeats, layer_repeats=args.layer_repeats, warmup_calls=5,
        layer_warmup_calls=3, threads=args.threads)), **results)
    args.json.write_text(json.dumps(results, indent=1) + "\n")
    publish(results, args)
    bad = checks(results)
    for b in bad:
        print(f"bench: MISMATCH {b}", file=sys.stderr)
    return 1 if bad else 0


def publish(results: dict, args: argparse.Namespace) -> None:
    """Print the tables, draw the figures, paste into the READMEs (full runs)."""
    env = results["env"]
    print()
    print(report.full(results))
    figures = plots.all_figures(results, HERE if args.json == HERE / "results.json"
                                else args.json.parent, nets.MOBILENET_1.label)
    if not getattr(args, "quick", False) and args.json == HERE / "results.json":
        report.update_readme(HERE / "README.md", f"```\n{report.full(results)}\n```",
                             README_BEGIN, README_END)
        for readme in (HERE / "README.md", TOP / "README.md"):
            report.update_readme(readme, report.summary_md(results), report.SUMMARY_BEGIN,
                                 report.SUMMARY_END)
    print(f"\nwrote {_rel(args.json)}, " + ", ".join(_rel(p) for p in figures)
          + f" ({env['total_s']:.0f} s; other processes used "
            f"{100 * env.get('other_load_during_guest', 0):.0f}% of the machine during the "
            f"guest run, {100 * env['other_load_during_host']:.0f}% during PyTorch's)")


if __name__ == "__main__":
    sys.exit(main())
