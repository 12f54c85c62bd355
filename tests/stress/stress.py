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
import random
import sys
import time
from pathlib import Path

TOP = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(TOP / "scripts"), str(TOP / "tests" / "host"), str(TOP)]

import board  # noqa: E402

QUICK = dict(calls=3000, seconds=10, processes=4, rounds=5, cycles=10, device_ops=20000)
FULL = dict(calls=30000, seconds=60, processes=4, rounds=15, cycles=50, device_ops=200000)


def device_fuzz(ops: int, seed: int = 7, asan: bool = False) -> dict:
    """Random register/descriptor traffic at the device model, no driver;
    with asan, under the AddressSanitizer build of QEMU."""
    import numpy as np

    from qtest import QTest
    from rawdevice import RAM_MB, reg, run_known_job
    from test_device_fuzz import fuzz_step

    qemu = board.BUILD / ("qemu-system-aarch64-asan" if asan else "qemu-system-aarch64")
    q = QTest(memory_mb=RAM_MB, qemu=qemu)
    log_path = q.log
    rnd = random.Random(seed)
    hangs = wrong = 0
    t0 = time.monotonic()
    try:
        for i in range(ops):
            fuzz_step(q, rnd, i)
        q.readl(reg("ID"))
        run_known_job(q, np.random.default_rng(seed))
    except AssertionError as e:          # the device no longer computes correctly
        print(f"device fuzz: {e}", file=sys.stderr)
        wrong += 1
    except Exception as e:  # noqa: BLE001 - QEMU gone or not answering
        print(f"device fuzz: {e}", file=sys.stderr)
        hangs += q.alive()
    log_text = log_path.read_text(errors="replace") if log_path.exists() else ""
    crashes = int(q.close() is not None)     # QEMU exited by itself
    sanitizer = log_text.count("ERROR: AddressSanitizer") + log_text.count("runtime error:")
    if sanitizer:
        print(log_text[-5000:], file=sys.stderr)
    return {"operations": ops, "qemu": qemu.name, "crashes": crashes, "hangs": hangs,
            "sanitizer_reports": sanitizer, "wrong_after": wrong,
            "wall_s": round(time.monotonic() - t0, 1)}


# (suite, figure, must be zero)
ROWS = [
    ("ioctl_fuzz", "calls", False), ("ioctl_fuzz", "errnos", False),
    ("ioctl_fuzz", "wrong_after", True),
    ("device_fuzz", "operations", False), ("device_fuzz", "qemu", False),
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
    p = QUICK if short else FULL
    out = TOP / "build" / "test-runs" / ("stress-short" if short else "stress")
    out.mkdir(parents=True, exist_ok=True)
    (out / "stress.json").unlink(missing_ok=True)
    cmd = (f"python3 tests/stress/guest_stress.py /out/stress.json --calls {p['calls']} "
           f"--seconds {p['seconds']} --processes {p['processes']} --rounds {p['rounds']} "
           f"--cycles {p['cycles']}")
    r = board.run(cmd, out_dir=out, timeout=3600, kernel=kernel)
    results = json.loads((out / "stress.json").read_text()) if (out / "stress.json").exists() \
        else {}
    results["board"] = {"kernel": r.kernel,
                        "kernel_warnings": results.pop("kernel_warnings", "missing"),
                        "boot_problems": len(r.problems) + (r.status != 0)}
    if r.problems or r.status:
        print("\n".join(r.problems) + f"\nguest status {r.status}; console: {out}/console.log",
              file=sys.stderr)
    asan = (board.BUILD / "qemu-system-aarch64-asan").exists() and not short
    results["device_fuzz"] = device_fuzz(p["device_ops"], asan=asan)
    text, bad = table(results)
    return results, text, bad


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--short", action="store_true")
    ap.add_argument("--kernel", choices=board.KERNELS)
    args = ap.parse_args()
    results, text, bad = run(args.short, args.kernel)
    (TOP / "tests" / "stress" / ("results-short.json" if args.short else "results.json")
     ).write_text(json.dumps(results, indent=1) + "\n")
    print(text)
    if bad:
        print("\nmust-be-zero figures that are not:\n  " + "\n  ".join(bad))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
