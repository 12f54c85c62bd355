#!/usr/bin/env python3
"""Boot the pyaccel board: the one place that knows QEMU's command line.

    board.py dtb [--accels N]            build build/board-N.dtb
    board.py run [--accels N] [--kernel K] [-- CMD]
                                         boot; run CMD in the guest, or a shell

The boot DTB is the machine's own tree, dumped with exactly the CPU, SMP
and memory used to boot, plus our dts/ fragments, compiled with dtc.
The guest kernel is --kernel, else $PYACCEL_KERNEL (make's KERNEL=), else
6.1: Debian's bookworm kernel, whose files are build/Image, build/rootfs.cpio
and build/kernel/convaccel.ko; any other kernel K (6.12, debug) has its own
under build/kernels/K/ (scripts/build-all.sh makes them).
Only the standard library: the host's plain python3 runs it.
"""
from __future__ import annotations

import argparse
import atexit
import hashlib
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import blasenv

TOP = Path(__file__).resolve().parent.parent
BUILD = Path(os.environ.get("BUILD", TOP / "build"))
QEMU = BUILD / "qemu-system-aarch64"

# The guest kernels scripts/build-all.sh knows; the first is the default.
KERNELS = ("6.1", "6.12", "debug")
DEFAULT_KERNEL = KERNELS[0]
# Timeouts are multiplied by this for a kernel (KASAN, lockdep and kmemleak
# under TCG boot and run several times slower).
TIMEOUT_SCALE = {"debug": 4.0}

MACHINE = "virt-convaccel"
CPU = "cortex-a57"  # plain "max" emulates pointer auth and boots 5x slower
SMP = 2
MEMORY_MB = 2048
CMDLINE = "console=ttyAMA0 panic=-1 quiet rdinit=/init"
EXIT_MARKER = re.compile(r"^PYACCEL-EXIT (\d+)\s*$", re.M)

# Lines of a kernel log that mean the kernel is in trouble: BUG/WARNING/oops,
# KASAN ("BUG: KASAN: ..."), UBSAN, lockdep ("WARNING: possible circular
# locking dependency", "possible recursive locking", "inconsistent lock
# state", "suspicious RCU usage"), kmemleak, DMA-API debug, list debug.
KERNEL_PROBLEM = re.compile(
    r"(BUG:|WARNING:|Oops|Kernel panic|Unable to handle kernel|Internal error:"
    r"|Call trace:|general protection fault|UBSAN:|list_(add|del) corruption"
    r"|refcount_t:|INFO: task .* blocked|rcu: INFO:|soft lockup|hard LOCKUP"
    r"|possible circular locking|possible recursive locking|inconsistent lock state"
    r"|suspicious RCU usage|unreferenced object 0x|new suspected memory leaks"
    r"|DMA-API: (?!preallocated \d+ debug entries|debugging enabled by kernel config))"
)
# A printk timestamp, and the lines a report is made of after its first one.
TIMESTAMP = re.compile(r"^\[\s*\d+\.\d+\]\s?")
FRAME = re.compile(r"^\s+(\S+\+0x[0-9a-f]+/0x[0-9a-f]+|\(?<[A-Z]+>\)?|</?(IRQ|TASK|NMI)>)")
END_MARKER = re.compile(r"^-+\[ end trace [0-9a-f]* \]-+")
MAX_REPORT_LINES = 300


@dataclass(frozen=True)
class GuestKernel:
    """One guest kernel's boot files, as scripts/build-all.sh lays them out."""

    name: str
    image: Path
    initrd: Path
    module_dir: Path            # holds the convaccel.ko built for it
    timeout_scale: float = 1.0


def guest_kernel(name: str | None = None) -> GuestKernel:
    """The kernel `name`, else $PYACCEL_KERNEL's, else the default (6.1)."""
    name = name or os.environ.get("PYACCEL_KERNEL") or DEFAULT_KERNEL
    if name not in KERNELS:
        raise BoardError(f"unknown kernel {name!r} (known: {', '.join(KERNELS)})")
    if name == DEFAULT_KERNEL:
        return GuestKernel(name, BUILD / "Image", BUILD / "rootfs.cpio", BUILD / "kernel")
    base = BUILD / "kernels" / name
    return GuestKernel(name, base / "Image", base / "rootfs.cpio", base / "kernel",
                       TIMEOUT_SCALE.get(name, 1.0))


class BoardError(RuntimeError):
    """The board could not be built or booted; the message says why."""


def machine_args(accels: int) -> list[str]:
    return [
        "-M", f"{MACHINE},accels={accels}",
        "-cpu", CPU, "-smp", str(SMP), "-m", str(MEMORY_MB),
    ]


def dtb_path(accels: int) -> Path:
    return BUILD / f"board-{accels}.dtb"


def fragments(accels: int) -> list[Path]:
    return [TOP / "dts" / f"convaccel{i}.dtsi" for i in range(accels)]


def build_dtb(accels: int = 1, fragment_texts: list[str] | None = None) -> Path:
    """Dump the machine's tree, append our fragments, compile; return the DTB.

    fragment_texts replaces dts/'s fragments (tests use it for broken trees).
    """
    if fragment_texts is None:
        out = dtb_path(accels)
        texts = [f.read_text() for f in fragments(accels)]
        inputs = [QEMU, *fragments(accels)]
    else:
        texts = fragment_texts
        digest = hashlib.sha256("\0".join(texts).encode()).hexdigest()[:12]
        out = BUILD / f"board-{accels}-{digest}.dtb"
        inputs = [QEMU]
    for f in inputs:
        if not f.exists():
            raise BoardError(f"{f} is missing (run 'make artifacts')")
    if out.exists() and all(out.stat().st_mtime >= f.stat().st_mtime for f in inputs):
        return out
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "base.dtb"
        run_checked([str(QEMU), *machine_args(accels), "-machine", f"dumpdtb={base}",
                     "-display", "none", "-nic", "none"])
        dts = run_checked(["dtc", "-q", "-I", "dtb", "-O", "dts", str(base)])
        # A fixed seed in a file makes no sense: let the kernel get fresh ones.
        dts = re.sub(r"^\s*(rng-seed|kaslr-seed) = .*;\n", "", dts, flags=re.M)
        src = Path(tmp) / "board.dts"
        src.write_text(dts + "".join("\n" + strip_header(t) for t in texts))
        run_checked(["dtc", "-q", "-I", "dts", "-O", "dtb", "-o", str(out), str(src)])
    out.with_suffix(".dts").write_text(run_checked(["dtc", "-q", "-I", "dtb", "-O", "dts", str(out)]))
    return out


def strip_header(text: str) -> str:
    """A fragment may carry /dts-v1/; only the base tree may."""
    return text.replace("/dts-v1/;", "")


def run_checked(cmd: list[str]) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise BoardError(f"{shlex.join(cmd)} failed ({proc.returncode}):\n{proc.stderr}")
    return proc.stdout


@dataclass
class RunResult:
    """What one boot produced."""

    status: int | None          # the guest command's exit status; None: no report
    qemu_returncode: int | None  # None: QEMU was killed by our timeout
    console: str
    dmesg: str
    out_dir: Path
    timed_out: bool = False
    problems: list[str] = field(default_factory=list)
    kmemleak: str = ""          # /out/kmemleak.txt (kernels with kmemleak only)
    kernel: str = DEFAULT_KERNEL

    @property
    def ok(self) -> bool:
        return self.status == 0 and not self.problems


def boot_args(accels: int, out_dir: Path, interactive: bool, dtb: Path,
              kernel: GuestKernel | None = None) -> list[str]:
    kernel = kernel or guest_kernel()
    make = "make artifacts" + ("" if kernel.name == DEFAULT_KERNEL else f" KERNEL={kernel.name}")
    for f in (QEMU, kernel.image, kernel.initrd):
        if not f.exists():
            raise BoardError(f"{f} is missing (run '{make}')")
    args = [
        str(QEMU), *machine_args(accels),
        "-kernel", str(kernel.image), "-initrd", str(kernel.initrd), "-dtb", str(dtb),
        "-append", CMDLINE, "-nic", "none", "-no-reboot",
        "-fsdev", f"local,id=fs0,path={TOP},security_model=none,readonly=on",
        "-device", "virtio-9p-device,fsdev=fs0,mount_tag=pyaccel",
        "-fsdev", f"local,id=fs1,path={out_dir},security_model=none",
        "-device", "virtio-9p-device,fsdev=fs1,mount_tag=out",
        "-d", "guest_errors", "-D", str(out_dir / "qemu-guest-errors.log"),
    ]
    if interactive:
        args += ["-nographic"]
    else:
        args += ["-display", "none", "-monitor", "none", "-serial", "stdio"]
    return args


def run(command: str | None, accels: int = 1, timeout: float = 900,
        out_dir: Path | None = None, echo: bool = False, no_module: bool = False,
        dtb: Path | None = None, extra_args: list[str] = (),
        kernel: str | None = None) -> RunResult:
    """Boot the board, run `command` with sh in the guest, power off.

    The console goes to out_dir/console.log (and to our stdout with echo).
    dtb and extra_args (more QEMU options, e.g. -global convaccel.id=...)
    let tests boot deliberately broken boards. kernel picks the guest
    kernel (guest_kernel()); timeout is scaled by its timeout_scale.
    """
    kern = guest_kernel(kernel)
    timeout *= kern.timeout_scale
    out_dir = Path(out_dir or tempfile.mkdtemp(prefix="pyaccel-run-"))
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in ("status", "dmesg.txt", "kmemleak.txt", "cmd", "no-module", "module-dir"):
        (out_dir / stale).unlink(missing_ok=True)
    if command is not None:
        (out_dir / "cmd").write_text(command + "\n")
    if no_module:
        (out_dir / "no-module").write_text("")
    if kern.module_dir != BUILD / "kernel":
        # guest/run.sh bind-mounts this folder on build/kernel, where the
        # guest's tests look for convaccel.ko.
        try:
            rel = kern.module_dir.resolve().relative_to(TOP)
        except ValueError:
            raise BoardError(f"{kern.module_dir} is outside {TOP}: the guest cannot see it")
        (out_dir / "module-dir").write_text(f"{rel}\n")
    args = boot_args(accels, out_dir, command is None, dtb or build_dtb(accels), kern)
    args += list(extra_args)
    env = blasenv.environ(BUILD / "libconvaccel_compute.so")
    if command is None:                 # interactive: the console is this terminal
        rc = subprocess.call(args, env=env)
        status_file = out_dir / "status"
        status = int(status_file.read_text()) if status_file.exists() else None
        return RunResult(status, rc, "", "", out_dir, kernel=kern.name)

    console_path = out_dir / "console.log"
    timed_out = False
    with open(console_path, "w") as console:
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, errors="replace",
                                env=env)
        _LIVE.add(proc)
        pump = threading.Thread(target=_pump, args=(proc.stdout, console, echo), daemon=True)
        pump.start()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            proc.kill()
            proc.wait()
        finally:
            _LIVE.discard(proc)
        pump.join(timeout=10)
    text = console_path.read_text(errors="replace")
    dmesg_path = out_dir / "dmesg.txt"
    dmesg = dmesg_path.read_text(errors="replace") if dmesg_path.exists() else ""
    status_path = out_dir / "status"
    status = int(status_path.read_text()) if status_path.exists() else None
    if status is None and (m := EXIT_MARKER.search(text)):
        status = int(m.group(1))
    leaks = out_dir / "kmemleak.txt"
    result = RunResult(status, None if timed_out else proc.returncode, text, dmesg,
                       out_dir, timed_out, kernel=kern.name,
                       kmemleak=leaks.read_text(errors="replace") if leaks.exists() else "")
    result.problems = find_problems(result, timeout)
    return result


_LIVE: set = set()       # QEMU processes of runs in flight (a background boot's too)


@atexit.register
def _kill_live() -> None:
    """A run still in flight when Python exits (pytest -x, ^C) takes its QEMU along."""
    for proc in list(_LIVE):
        proc.kill()


def _pump(stream, console, echo: bool) -> None:
    for line in stream:
        console.write(line)
        console.flush()
        if echo:
            sys.stdout.write(line)
            sys.stdout.flush()


def find_problems(r: RunResult, timeout: float) -> list[str]:
    problems = []
    if r.timed_out:
        problems.append(f"the board did not power off within {timeout:.0f} s (killed)")
    elif r.qemu_returncode != 0:
        problems.append(f"QEMU exited with status {r.qemu_returncode} (crash or abort)")
    if r.status is None and not r.timed_out:
        problems.append("the guest never reported an exit status")
    seen = set()
    # The console also carries the guest command's output (a failing test
    # may print a regex or a log line): only its printk lines count there.
    console = "\n".join(line for line in r.console.splitlines()
                        if TIMESTAMP.match(line.lstrip("\r")))
    for text in (r.dmesg, console):
        for report in kernel_reports(text):
            if report[0] not in seen:
                seen.add(report[0])
                problems.append(f"kernel log: {report[0]}" + "".join(
                    f"\n    {line}" for line in report[1:]))
    if r.kmemleak.strip():
        problems.append("kmemleak: memory leaked during the run (/out/kmemleak.txt):\n"
                        + r.kmemleak.rstrip())
    return problems


def kernel_reports(log: str) -> list[list[str]]:
    """The kernel reports in a log, each as a list of lines: the line that
    matches KERNEL_PROBLEM, then the rest of the report up to its closing
    separator (KASAN, UBSAN), its "end trace" marker, or the end of its last
    stack trace (lockdep: the one after "stack backtrace:"). A matching line
    with no trace after it (e.g. kmemleak's count) is a report of one line.
    The stack dump of a deliberately injected fault (fail-nth, failslab...
    with verbose set: "FAULT_INJECTION: forcing a failure" just above) is
    no report."""
    lines = [line.rstrip("\r\n") for line in log.splitlines()]
    bare = [TIMESTAMP.sub("", line) for line in lines]
    reports, i = [], 0
    while i < len(lines):
        if not KERNEL_PROBLEM.search(lines[i]):
            i += 1
            continue
        title = bare[i]
        fenced = i > 0 and bare[i - 1].startswith("=" * 20)
        sanitizer = bool(re.search(r"BUG: KASAN|UBSAN:", title))
        lockdep = fenced and not sanitizer
        # how far the first trace may start: lockdep explains the locks first
        reach = MAX_REPORT_LINES if lockdep or sanitizer else 40
        in_trace = title.startswith("Call trace:")
        seen_trace, backtrace, end, j = in_trace, False, None, i + 1
        while j < len(lines) and j - i < MAX_REPORT_LINES:
            text = bare[j]
            if END_MARKER.match(text) or (sanitizer and text.startswith("=" * 20)):
                end = j + 1
                break
            if text.startswith("stack backtrace:"):
                backtrace = True
            elif text.startswith("Call trace:"):
                in_trace = seen_trace = True
            elif (not seen_trace and KERNEL_PROBLEM.search(text)
                  and not text.startswith("WARNING: CPU:")):
                break               # another report: this one had no trace
            elif in_trace and not FRAME.match(text):
                # the trace ended: so did the report, unless more follows
                # (KASAN's alloc/free stacks, lockdep's stacks before its last)
                if not sanitizer and (not lockdep or backtrace):
                    end = j
                    break
                in_trace = False
            elif not seen_trace and j - i >= reach:
                break
            j += 1
        else:
            if seen_trace:
                end = j
        if end is None:
            end = j if seen_trace else i + 1
        injected = title.startswith("Call trace:") and any(
            "FAULT_INJECTION: forcing a failure" in b for b in bare[max(0, i - 5):i])
        if not injected:
            reports.append([title.strip()] + [line.rstrip() for line in bare[i + 1:end]])
        i = end
    return reports


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="what", required=True)
    d = sub.add_parser("dtb", help="build the boot device tree")
    d.add_argument("--accels", type=int, default=1)
    r = sub.add_parser("run", help="boot and run a command (or a shell)")
    r.add_argument("--accels", type=int, default=1)
    r.add_argument("--timeout", type=float, default=900)
    r.add_argument("--out", type=Path, help="run folder (default: a new temporary one)")
    r.add_argument("--no-module", action="store_true", help="do not load convaccel.ko")
    r.add_argument("--kernel", choices=KERNELS,
                   help="guest kernel (default: $PYACCEL_KERNEL, else 6.1)")
    r.add_argument("command", nargs=argparse.REMAINDER)
    a = p.parse_args(argv)
    try:
        if a.what == "dtb":
            print(build_dtb(a.accels))
            return 0
        cmd = a.command[1:] if a.command[:1] == ["--"] else a.command
        t0 = time.monotonic()
        res = run(shlex.join(cmd) if len(cmd) > 1 else (cmd[0] if cmd else None),
                  a.accels, a.timeout, a.out, echo=True, no_module=a.no_module,
                  kernel=a.kernel)
    except BoardError as e:
        print(f"board: {e}", file=sys.stderr)
        return 2
    if not cmd:
        return res.status if res.status is not None else res.qemu_returncode or 1
    for problem in res.problems:
        print(f"board: {problem}", file=sys.stderr)
    print(f"board: guest exit status {res.status}, {time.monotonic() - t0:.1f} s, "
          f"console and dmesg in {res.out_dir}", file=sys.stderr)
    if res.status is None or res.problems:
        return res.status or 1
    return res.status


if __name__ == "__main__":
    sys.exit(main())
