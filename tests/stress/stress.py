#!/usr/bin/env python3
"""make stress: reliability figures for the whole stack, in one table.

Boots the board once for the in-guest suites (ioctl fuzz, fault recovery,
load, life cycle, isolation), fuzzes the device model from the host over
qtest, prints one table, writes tests/stress/results.json, and exits 1 if
any must-be-zero figure is not zero.

    stress.py [--short] [--kernel K]
        --short: the quick version make test runs
        --kernel: the guest kernel (scripts/board.py: 6.1, 6.12, debug);
                  default $PYACCEL_KERNEL, else 6.1. make stress gives debug.

The full version fuzzes the AddressSanitizer build of QEMU when it exists
(make stress builds it: QEMU_ASAN=1 qemu/build.sh).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import sys
import time
from pathlib import Path

TOP = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(TOP / "scripts"), str(TOP / "tests" / "host"), str(TOP),
                str(TOP / "bench")]

import board  # noqa: E402

# calls/fuzz_s: the ioctl fuzz stops at whichever comes first (it reports both).
QUICK = dict(calls=4000, fuzz_s=12, seconds=6, processes=4, rounds=3, cycles=6,
             device_ops=12000, check_every=1200)
FULL = dict(calls=1_000_000, fuzz_s=900, seconds=60, processes=4, rounds=15, cycles=50,
            device_ops=1_000_000, check_every=10000)
# The full ioctl fuzz's time budget on a kernel whose calls are slower: the
# debug kernel (KASAN, lockdep, kmemleak under TCG) makes about 1,100 calls/s
# on an idle 2-core machine (about 230 on a loaded one) against 2,300-2,800
# on Debian's: its million calls take 15 min idle, over an hour loaded.
FULL_FUZZ_S = {"debug": 6000}


# The first line of a sanitizer report in QEMU's stderr: ASan's "==PID==ERROR:
# AddressSanitizer: ...", UBSan's "file:line:col: runtime error: ...".
SANITIZER_REPORT = re.compile(r"^.*(==\d+==ERROR: \w+Sanitizer|runtime error:).*$", re.M)


def sanitizer_reports(log: str) -> list[str]:
    """Each report, whole: from its first line to the next report or the end
    of that QEMU's log (a report ends the process: UBSan does not recover)."""
    starts = [m.start() for m in SANITIZER_REPORT.finditer(log)]
    return [log[a:b] for a, b in zip(starts, starts[1:] + [len(log)])]


def device_fuzz(ops: int, check_every: int, seed: int = 7, asan: bool = False) -> dict:
    """Random register/descriptor traffic at the device model, no driver, with
    a checked step (migration idle, fuzzed and busy, reset racing the
    worker, jobs above the limits) every check_every operations; with asan,
    under the AddressSanitizer + UBSan build of QEMU."""
    import numpy as np

    from rawdevice import reg, run_known_job
    from test_device_fuzz import Target, fuzz

    os.environ.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
    qemu = board.BUILD / ("qemu-system-aarch64-asan" if asan else "qemu-system-aarch64")
    t = Target(qemu)
    hangs = wrong = 0
    t0 = time.monotonic()
    try:
        fuzz(t, random.Random(seed), ops, check_every)
        t.q.readl(reg("ID"))
        run_known_job(t.q, np.random.default_rng(seed))
    except AssertionError as e:          # the device no longer computes correctly
        print(f"device fuzz: {e}", file=sys.stderr)
        wrong += 1
    except Exception as e:  # noqa: BLE001 - QEMU gone or not answering
        print(f"device fuzz: {e}", file=sys.stderr)
        hangs += t.q.alive()
    wall = time.monotonic() - t0
    t.close()
    reports = sanitizer_reports("".join(t.logs))
    for report in reports:
        print(f"device fuzz: sanitizer report:\n{report}", file=sys.stderr)
    for failure in t.failures:
        print(f"device fuzz: checked step failed: {failure}", file=sys.stderr)
    return {"operations": ops, "qemu": qemu.name, "checked_steps": dict(t.events),
            "check_failures": len(t.failures), "failures": t.failures,
            "crashes": t.crashes, "hangs": hangs, "sanitizer_reports": len(reports),
            "reports": reports, "wrong_after": wrong, "wall_s": round(wall, 1)}


# (suite, figure, must be zero)
ROWS = [
    ("ioctl_fuzz", "calls", False), ("ioctl_fuzz", "target_calls", False),
    ("ioctl_fuzz", "fuzz_s", False), ("ioctl_fuzz", "budget_s", False),
    ("ioctl_fuzz", "calls_per_s", False), ("ioctl_fuzz", "events", False),
    ("ioctl_fuzz", "errnos", False), ("ioctl_fuzz", "undocumented_errnos", True),
    ("ioctl_fuzz", "undocumented", False),
    ("ioctl_fuzz", "efault_state_lost", True), ("ioctl_fuzz", "worker_failures", True),
    ("ioctl_fuzz", "wrong_after", True), ("ioctl_fuzz", "buffers_leaked", True),
    ("ioctl_fuzz", "kernel_warnings", True),
    ("device_fuzz", "operations", False), ("device_fuzz", "qemu", False),
    ("device_fuzz", "wall_s", False), ("device_fuzz", "checked_steps", False),
    ("device_fuzz", "check_failures", True),
    ("device_fuzz", "crashes", True), ("device_fuzz", "sanitizer_reports", True),
    ("device_fuzz", "hangs", True), ("device_fuzz", "wrong_after", True),
    ("fault_recovery", "injected", False), ("fault_recovery", "recovered", False),
    ("fault_recovery", "recover_s_mean", False), ("fault_recovery", "recover_s_max", False),
    ("fault_recovery", "lost_or_wrong", True),
    ("load", "processes", False), ("load", "jobs", False), ("load", "jobs_per_s", False),
    ("load", "wrong", True), ("load", "buffers_leaked", True),
    ("load", "buffer_bytes_leaked", True), ("load", "slab_delta_kb", False),
    ("lifecycle", "load_unload_cycles", False), ("lifecycle", "unbind_bind_cycles", False),
    ("lifecycle", "kills", False), ("lifecycle", "opens", False),
    ("lifecycle", "buffers_leaked", True), ("lifecycle", "warnings", True),
    ("isolation", "node_mode", False), ("isolation", "breaches", True),
    ("isolation", "kernel_address_leaks", True),
    ("failnth", "run", False), ("failnth", "calls", False), ("failnth", "injected", False),
    ("failnth", "per_call", False), ("failnth", "errnos", False),
    ("failnth", "failures", True), ("failnth", "buffers_leaked", True),
    ("failnth", "kernel_warnings", True), ("failnth", "not_run_on_debug", True),
    ("board", "kernel", False),
    ("board", "kernel_warnings", True), ("board", "boot_problems", True),
]


def table(results: dict) -> tuple[str, list[str]]:
    lines = [f"{'suite':<15} {'figure':<22} {'value':>24}  must be 0",
             "-" * 72]
    bad = []
    for suite, figure, must_zero in ROWS:
        value = results.get(suite, {}).get(figure, "missing")
        if isinstance(value, dict):
            value = ", ".join(f"{k} {v}" for k, v in sorted(value.items(), key=lambda kv: -kv[1]))
        elif isinstance(value, float):
            value = f"{value:.3g}"
        ok = not must_zero or value in (0, "0")
        if not ok:
            bad.append(f"{suite}.{figure} = {value}")
        flag = ("ok" if ok else "FAIL") if must_zero else ""
        text = str(value)
        lines.append(f"{suite:<15} {figure:<22} {text:>24}  {flag}" if len(text) <= 24 else
                     f"{suite:<15} {figure:<22}\n    {text}")
    return "\n".join(lines), bad


def run(short: bool, kernel: str | None = None) -> tuple[dict, str, list[str]]:
    p = dict(QUICK if short else FULL)
    kern = board.guest_kernel(kernel)
    if not short:
        p["fuzz_s"] = FULL_FUZZ_S.get(kern.name, p["fuzz_s"])
    out = TOP / "build" / "test-runs" / ("stress-short" if short else "stress")
    out.mkdir(parents=True, exist_ok=True)
    (out / "stress.json").unlink(missing_ok=True)
    cmd = (f"python3 tests/stress/guest_stress.py /out/stress.json --calls {p['calls']} "
           f"--fuzz-seconds {p['fuzz_s']} "
           f"--seconds {p['seconds']} --processes {p['processes']} --rounds {p['rounds']} "
           f"--cycles {p['cycles']}")
    # The fuzz's budget, plus 15 min for boot and the other suites; board.run
    # scales the timeout for slow kernels, the fuzz budget is already theirs.
    r = board.run(cmd, out_dir=out, timeout=p["fuzz_s"] / kern.timeout_scale + 900,
                  kernel=kernel)
    results = json.loads((out / "stress.json").read_text()) if (out / "stress.json").exists() \
        else {}
    if "failnth" in results:     # the debug kernel has fault injection: it must run
        results["failnth"]["not_run_on_debug"] = int(
            r.kernel == "debug" and results["failnth"].get("run") != "yes")
    results["board"] = {"kernel": r.kernel,
                        "kernel_warnings": results.pop("kernel_warnings", "missing"),
                        "boot_problems": len(r.problems) + (r.status != 0)}
    if r.problems or r.status:
        print("\n".join(r.problems) + f"\nguest status {r.status}; console: {out}/console.log",
              file=sys.stderr)
    asan = (board.BUILD / "qemu-system-aarch64-asan").exists() and not short
    results["device_fuzz"] = device_fuzz(p["device_ops"], p["check_every"], asan=asan)
    text, bad = table(results)
    return results, text, bad


README_BEGIN = "<!-- stress: begin (tests/stress/stress.py) -->"
README_END = "<!-- stress: end -->"


def update_readme(results: dict) -> None:
    """The top README's reliability table, from a full run's results (never by hand)."""
    from report import update_readme as paste  # bench/report.py

    text, _ = table(results)
    paste(TOP / "README.md", f"```\n{text}\n```", README_BEGIN, README_END)


def results_path(short: bool) -> Path:
    """A full run's figures are committed (tests/stress/results.json, the
    README's table); the short run's (make test) stay in build/."""
    if short:
        return TOP / "build" / "test-runs" / "stress-short" / "results.json"
    return TOP / "tests" / "stress" / "results.json"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--short", action="store_true")
    ap.add_argument("--kernel", choices=board.KERNELS)
    ap.add_argument("--readme", action="store_true",
                    help="only paste tests/stress/results.json's table into README.md")
    args = ap.parse_args()
    if args.readme:
        update_readme(json.loads((TOP / "tests" / "stress" / "results.json").read_text()))
        return 0
    results, text, bad = run(args.short, args.kernel)
    results_path(args.short).write_text(json.dumps(results, indent=1) + "\n")
    if not args.short:
        update_readme(results)
    print(text)
    if bad:
        print("\nmust-be-zero figures that are not:\n  " + "\n  ".join(bad))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
