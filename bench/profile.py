"""`make profile`: where QEMU's time goes while the guest runs a network.

    $(scripts/venv.sh bench/requirements.txt) bench/profile.py [--seconds S] [--json PATH]

Boots the board (QEMU with -name debug-threads=on, so its threads carry
names), runs bench/guest_profile.py in the guest and, in each of its phases
(float: MobileNet-v1 1.0 float32; resnet18: ResNet-18 float32; int8: the
quantized MobileNet-v1; tiny: a one-element 1x1 convolution), samples QEMU for S seconds with
`perf record -e cpu-clock` (a software clock: virtual machines often have
no hardware counters). The samples are split by thread:

- vCPU ("CPU n/TCG"): the emulated CPU running the guest (Python, numpy,
  the kernel, the driver), as TCG-translated code and QEMU's helpers;
- device ("convaccel"): the device's worker thread and its compute pool
  (threads take their creator's name), i.e. the layers' compute and DMA;
- main loop (QEMU's main thread): the completion interrupt, timers, 9p;
- other QEMU threads (RCU, I/O workers).

Writes bench/profile.json (cores each group kept busy, the top symbols of
the device's and the vCPUs' threads, the guest's split of one call, and
the kernel's split of it from ftrace: bench/guest_ftrace.py) and
pastes a table into bench/README.md. perf must be installed (linux-perf,
scripts/setup-host.sh) and allowed to sample (root, or
kernel.perf_event_paranoid <= 1).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
TOP = HERE.parent
sys.path.insert(0, str(TOP / "scripts"))
import board  # noqa: E402

import int8  # noqa: E402
import report  # noqa: E402
from guest_ftrace import SEGMENTS  # noqa: E402
from hostenv import build, wait_for_quiet  # noqa: E402

PHASES = ("float", "resnet18", "int8", "tiny")
FREQ = 997
BEGIN, END = "<!-- profile: begin (bench/profile.py) -->", "<!-- profile: end -->"


def qemu_pid(out_dir: Path, timeout: float = 120) -> int:
    """The QEMU whose command line names out_dir (board.run's 9p share)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for p in Path("/proc").iterdir():
            if not p.name.isdigit():
                continue
            try:
                cmd = (p / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if cmd and cmd[0].endswith(b"qemu-system-aarch64") and \
                    any(str(out_dir).encode() in a for a in cmd):
                return int(p.name)
        time.sleep(0.2)
    sys.exit(f"profile: no QEMU serving {out_dir} within {timeout:.0f} s")


def group(comm: str) -> str:
    if comm.startswith("CPU ") and comm.endswith("/TCG"):
        return "vcpu"
    if comm == "convaccel":
        return "device"
    if comm.startswith("qemu-system"):
        return "main"
    return "other"


def samples(data: Path) -> list[tuple[str, str, str, int]]:
    """(comm, dso, symbol, samples) rows of a perf.data file."""
    out = subprocess.run(["perf", "report", "-i", str(data), "--stdio", "--no-children",
                          "--sort", "comm,dso,sym", "-F", "sample,comm,dso,sym",
                          "--field-separator", "\t"],
                         capture_output=True, text=True, check=True).stdout
    rows = []
    for line in out.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split("\t")
        if len(parts) < 4 or not parts[0].strip().isdigit():
            continue
        n, comm, dso, sym = int(parts[0]), parts[1].strip(), parts[2].strip(), parts[3].strip()
        sym = re.sub(r"^\[[.k]\]\s*", "", sym)
        dso = "TCG code" if dso.startswith("[JIT]") else dso
        rows.append((comm, dso, sym, n))
    return rows


def summarize(rows: list, seconds: float, top: int = 8) -> dict:
    """Cores each thread group kept busy, and each group's top symbols."""
    per = defaultdict(int)
    syms: dict[str, dict] = defaultdict(lambda: defaultdict(int))
    for comm, dso, sym, n in rows:
        g = group(comm)
        per[g] += n
        name = "TCG-generated guest code" if dso == "TCG code" else f"{sym} ({dso})"
        syms[g][name] += n
    total = sum(per.values()) or 1
    ticks = FREQ * seconds
    return dict(
        samples=total,
        cores={g: round(per[g] / ticks, 3) for g in ("vcpu", "device", "main", "other")},
        share={g: round(per[g] / total, 4) for g in ("vcpu", "device", "main", "other")},
        top={g: [dict(symbol=s, share=round(n / max(per[g], 1), 4))
                 for s, n in sorted(syms[g].items(), key=lambda kv: -kv[1])[:top]]
             for g in ("device", "vcpu")})


def record(pid: int, data: Path, seconds: float) -> None:
    subprocess.run(["perf", "record", "-q", "-e", "cpu-clock", "-F", str(FREQ), "-p", str(pid),
                    "-o", str(data), "--", "sleep", str(seconds)],
                   check=True, stdout=subprocess.DEVNULL)


def table(results: dict) -> str:
    lines = [f"perf -e cpu-clock on QEMU, {results['seconds']:.0f} s per phase "
             f"({results['cores']} host cores); cores kept busy per thread group, "
             "and the guest's median call:",
             f"{'phase':<7} {'vCPUs':>6} {'device':>7} {'main':>6} {'other':>6}   "
             f"{'calls':>6} {'call ms':>8} {'driver ms':>9} {'device ms':>9}"]
    for name, p in results["phases"].items():
        c, g = p["perf"]["cores"], p["guest"]
        lines.append(f"{name:<7} {c['vcpu']:>6.2f} {c['device']:>7.2f} {c['main']:>6.2f} "
                     f"{c['other']:>6.2f}   {g['calls']:>6} {g['wall_ms']:>8.3f} "
                     f"{g['driver_ms']:>9.3f} {g['device_ms']:>9.3f}")
    for name, p in results["phases"].items():
        if p["guest"].get("stages_ms"):
            lines.append(f"{name} call, stages on the guest's CPU (ms): " + ", ".join(
                f"{k} {v:.3f}" for k, v in p["guest"]["stages_ms"].items()))
    lines.append("ftrace in the guest (bench/guest_ftrace.py), median microseconds of one "
                 "traced call:")
    lines.append(f"{'phase':<9}" + "".join(f"{k[:12]:>13}" for k in SEGMENTS) +
                 f"{'total':>9}{'slept':>9}")
    for name, p in results["phases"].items():
        f = p["guest"].get("ftrace", {})
        if f.get("calls"):
            lines.append(f"{name:<9}" + "".join(f"{f[k]:>13.1f}" for k in SEGMENTS) +
                         f"{f['total']:>9.0f}{f['slept']:>5}/{f['calls']:<3}")
        else:
            lines.append(f"{name:<9}no trace: {f.get('error', 'no complete call')}")
    for name, p in results["phases"].items():
        for grp in ("device", "vcpu"):
            top = p["perf"]["top"][grp][:5]
            if top:
                lines.append(f"{name} {grp} threads: " + "; ".join(
                    f"{t['symbol'][:60]} {100 * t['share']:.0f}%" for t in top))
    return "\n".join(lines)


def read_json(path: Path, guest: threading.Thread, timeout: float = 120) -> dict:
    """The guest's JSON file once it is whole (9p shows it when the guest's
    writes reach the host)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            if not guest.is_alive() and not path.exists():
                break
            time.sleep(0.2)
    sys.exit(f"profile: no complete {path} from the guest")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10, help="perf record time per phase")
    ap.add_argument("--json", type=Path, default=HERE / "profile.json")
    a = ap.parse_args()
    if not shutil.which("perf"):
        sys.exit("profile: perf is not installed (apt-get install linux-perf)")
    build()
    int8.prepare()
    out_dir = board.BUILD / "profile-run"
    out_dir.mkdir(parents=True, exist_ok=True)
    for f in [*out_dir.glob("phase-*"), *out_dir.glob("perf-*")]:
        f.unlink()
    wait_for_quiet(60)
    cmd = (f"python3 bench/guest_profile.py --out /out --seconds {a.seconds * 6 + 60:.0f} "
           f"--int8-model {int8.MODEL.relative_to(TOP)}")
    run: dict = {}
    guest = threading.Thread(target=lambda: run.setdefault("r", board.run(
        cmd, out_dir=out_dir, timeout=1800, extra_args=["-name", "pyaccel,debug-threads=on"])))
    guest.start()
    pid = qemu_pid(out_dir)
    phases = {}
    for name in PHASES:
        start = out_dir / f"phase-{name}.start"
        while not start.exists():
            if not guest.is_alive():
                sys.exit(f"profile: the guest ended before phase {name}; console in "
                         f"{out_dir}/console.log")
            time.sleep(0.2)
        data = out_dir / f"perf-{name}.data"
        record(pid, data, a.seconds)
        (out_dir / f"phase-{name}.done").write_text("")
        phases[name] = dict(perf=summarize(samples(data), a.seconds),
                            guest=read_json(out_dir / f"phase-{name}.json", guest))
        print(f"profile: {name}: {phases[name]['perf']['cores']}", flush=True)
    guest.join()
    r = run["r"]
    if not r.ok:
        sys.exit(f"profile: the guest run failed (status {r.status}): {r.problems}; "
                 f"console in {out_dir}/console.log")
    results = dict(seconds=a.seconds, cores=os.cpu_count(), phases=phases,
                   qemu_env={k: v for k, v in board.blasenv.environ(
                       board.BUILD / "libconvaccel_compute.so").items()
                       if k.startswith("OPENBLAS")})
    a.json.write_text(json.dumps(results, indent=1) + "\n")
    text = table(results)
    print(text)
    if a.json == HERE / "profile.json":
        report.update_readme(HERE / "README.md", f"```\n{text}\n```", BEGIN, END)
    return 0


if __name__ == "__main__":
    sys.exit(main())
