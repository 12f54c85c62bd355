"""The driver builds cleanly against every guest kernel, and for it.

For Debian's 6.1 (the default guest kernel) and 6.12 (make test KERNEL=6.12
boots it), convaccel.ko is cross-built with W=1 against the kernel's headers
(guest/kernel.sh fetches them once into the cache): kbuild must print
nothing but its known chatter (no compiler or modpost warning), and the
module's vermagic must equal that of the kernel's own modules, so that it
loads. The debug kernel (guest/debug-kernel.sh) is checked too when it is
already built (make stress or KERNEL=debug builds it; make test does not).
"""
from __future__ import annotations

import lzma
import re
import subprocess
from pathlib import Path

import pytest

TOP = Path(__file__).resolve().parents[2]
BUILD = TOP / "build" / "test-kernels"
# What kbuild may print on a clean build: external modules get no BTF
# against headers without a vmlinux (6.1), and our own log line.
CHATTER = re.compile(r"^(Skipping BTF generation for .* due to unavailability of vmlinux"
                     r"|\[pyaccel\] module ready: .*)$")


def vermagic(path: Path) -> str:
    data = path.read_bytes()
    if path.suffix == ".xz":
        data = lzma.decompress(data)
    start = data.index(b"vermagic=") + len(b"vermagic=")
    return data[start:data.index(b"\0", start)].decode()


def kernel_dir(*cmd: str) -> Path:
    proc = subprocess.run(["bash", *cmd], cwd=TOP, capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}", pytrace=False)
    return Path(proc.stdout.strip().splitlines()[-1])


def build(kdir: Path, name: str) -> Path:
    out = BUILD / name
    proc = subprocess.run(["bash", "kernel/build.sh", str(kdir), str(out), "W=1"], cwd=TOP,
                          capture_output=True, text=True)
    output = (proc.stdout + proc.stderr).splitlines()
    noise = [line for line in output if line.strip() and not CHATTER.match(line)]
    assert proc.returncode == 0, "\n".join(output[-60:])
    assert not noise, "the W=1 build printed:\n" + "\n".join(noise)
    return out / "convaccel.ko"


@pytest.mark.parametrize("series", ["6.1", "6.12"])
def test_module_builds_cleanly_for_debian_kernel(series):
    kdir = kernel_dir("guest/kernel.sh", series)
    kver = (kdir / "kver").read_text().strip()
    assert kver.startswith(series + "."), kver
    ko = build(kdir, series)
    # the kernel's own 9p module: its vermagic is what the kernel accepts
    mods = kdir / "root" / "lib" / "modules" / kver / "kernel" / "fs" / "9p"
    own = next(p for p in sorted(mods.iterdir()) if p.name.startswith("9p.ko"))
    assert vermagic(ko) == vermagic(own)
    assert vermagic(ko).split()[0] == kver


def test_module_builds_cleanly_for_debug_kernel():
    proc = subprocess.run(["bash", "guest/debug-kernel.sh", "--cached"], cwd=TOP,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip("the debug kernel is not built (make stress or KERNEL=debug builds it)")
    kdir = Path(proc.stdout.strip())
    kver = (kdir / "kver").read_text().strip()
    ko = build(kdir, "debug")
    magic = vermagic(ko).split()
    assert magic[0] == kver
    assert "mod_unload" in magic and "preempt" in magic


# --- board.py's reading of kernel reports (what the debug kernel prints) ----

SAMPLE = """\
[    1.000000] convaccel a100000.accel: ready
[    2.000000] ==================================================================
[    2.000001] BUG: KASAN: slab-use-after-free in convaccel_wait+0x1c/0x40 [convaccel]
[    2.000002] Read of size 4 at addr ffff000001234567 by task python3/100
[    2.000003] Call trace:
[    2.000004]  dump_backtrace+0xe4/0x140
[    2.000005]  convaccel_wait+0x1c/0x40 [convaccel]
[    2.000006]
[    2.000007] Freed by task 100:
[    2.000008]  kfree+0x2c/0x60
[    2.000009] ==================================================================
[    2.000010] Disabling lock debugging due to kernel taint
[    3.000001] ======================================================
[    3.000002] WARNING: possible circular locking dependency detected
[    3.000003] ------------------------------------------------------
[    3.000004] -> #1 (&ca->lock){+.+.}-{3:3}:
[    3.000005]        __mutex_lock+0x1/0x2
[    3.000006] stack backtrace:
[    3.000007] CPU: 1 PID: 101 Comm: python3
[    3.000008] Call trace:
[    3.000009]  convaccel_submit+0x10/0x20 [convaccel]
[    3.000010] convaccel a100000.accel: job 3 done
[    4.000000] ------------[ cut here ]------------
[    4.000001] DMA-API: convaccel a100000.accel: device driver frees DMA memory with wrong function
[    4.000002] WARNING: CPU: 0 PID: 102 at kernel/dma/debug.c:1000 check_unmap+0x1/0x2
[    4.000003] Call trace:
[    4.000004]  check_unmap+0x1/0x2
[    4.000005] ---[ end trace 0000000000000000 ]---
[    5.000000] kmemleak: 2 new suspected memory leaks (see /sys/kernel/debug/kmemleak)
[    5.000001] UBSAN: shift-out-of-bounds in drivers/x.c:1:2
[    5.000002] shift exponent 64 is too large for 64-bit type 'long long unsigned int'
[    5.000003] Call trace:
[    5.000004]  __ubsan_handle_shift_out_of_bounds+0x1/0x2
[    5.000005] ================================================================================
[    6.000000] the end
"""


def test_kernel_reports_are_read_whole():
    import sys
    sys.path.insert(0, str(TOP / "scripts"))
    import board

    reports = board.kernel_reports(SAMPLE)
    titles = [r[0] for r in reports]
    assert titles == [
        "BUG: KASAN: slab-use-after-free in convaccel_wait+0x1c/0x40 [convaccel]",
        "WARNING: possible circular locking dependency detected",
        "DMA-API: convaccel a100000.accel: device driver frees DMA memory with wrong function",
        "kmemleak: 2 new suspected memory leaks (see /sys/kernel/debug/kmemleak)",
        "UBSAN: shift-out-of-bounds in drivers/x.c:1:2",
    ]
    kasan, lockdep, dma, leak, ubsan = reports
    assert kasan[-1].startswith("=====") and " kfree+0x2c/0x60" in kasan
    assert lockdep[-1] == " convaccel_submit+0x10/0x20 [convaccel]"
    assert dma[-1].startswith("---[ end trace")
    assert leak == [titles[3]]
    assert "shift exponent 64" in ubsan[1] and ubsan[-1].startswith("=====")
    r = board.RunResult(0, 0, "", SAMPLE, TOP, kmemleak="unreferenced object 0xffff (size 64):\n")
    problems = board.find_problems(r, 1)
    assert len(problems) == 6 and problems[-1].startswith("kmemleak: memory leaked")
