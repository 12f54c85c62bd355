"""The host side of a measurement: the board's artifacts, and other
processes' load on this (small) machine."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

TOP = Path(__file__).resolve().parents[1]


def build() -> None:
    """Build or fetch the board's artifacts (quick when cached); exit on failure."""
    proc = subprocess.run(["bash", str(TOP / "scripts" / "build-all.sh")],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"building the board failed:\n{proc.stderr[-4000:]}")


def _busy() -> tuple[float, float]:
    """(busy CPU seconds of the whole machine, wall time) now."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (sum(v) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK"), time.monotonic()


def _own() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class OtherLoad:
    """Other processes' CPU use in the with-block, as a fraction of the machine
    (ours and our waited-for children, such as QEMU, are subtracted)."""

    fraction = 0.0

    def __enter__(self) -> "OtherLoad":
        self.start, self.own = _busy(), _own()
        return self

    def __exit__(self, *exc: object) -> None:
        (b0, t0), (b1, t1) = self.start, _busy()
        other = max(0.0, (b1 - b0) - (_own() - self.own))
        self.fraction = round(other / (max(t1 - t0, 1e-3) * (os.cpu_count() or 1)), 3)


def wait_for_quiet(max_wait: float, threshold: float = 0.1, window: float = 2.0) -> float:
    """Wait until other processes use less than `threshold` of the machine over
    `window` seconds, at most max_wait seconds; returns the last fraction seen."""
    deadline = time.monotonic() + max_wait
    said = False
    while True:
        with OtherLoad() as load:
            time.sleep(window)
        if load.fraction < threshold or time.monotonic() >= deadline:
            return load.fraction
        if not said:
            print(f"machine busy ({100 * load.fraction:.0f}% used by other processes): "
                  f"waiting up to {max_wait:.0f} s for it to calm down", flush=True)
            said = True
