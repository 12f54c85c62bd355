"""VMState and system reset: an idle device's registers survive savevm/loadvm (migration to a
file and back), the restored device computes; saving while busy is refused."""
from __future__ import annotations

import socket
import time

import numpy as np

from conftest import ensure_built
from qtest import QTest
from rawdevice import R, queue_hung_job, reg, run_known_job


class Monitor:
    """QEMU's human monitor on a unix socket."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(path)
        self.sock.settimeout(0.5)

    def __call__(self, command: str) -> str:
        self.sock.sendall(command.encode() + b"\n")
        out = b""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                out += self.sock.recv(65536)
            except socket.timeout:
                if out.rstrip().endswith(b"(qemu)"):
                    break
        return out.decode(errors="replace")

    def migration_status(self) -> str:
        for _ in range(100):
            info = self("info migrate")
            for line in info.splitlines():
                if line.startswith("Migration status:"):
                    status = line.split(":", 1)[1].strip()
                    if status not in ("active", "setup", "device"):
                        return status
            time.sleep(0.1)
        return "timeout"


def start(tmp_path, *extra):
    mon = str(tmp_path / f"mon{len(list(tmp_path.iterdir()))}.sock")
    q = QTest(extra=["-monitor", f"unix:{mon},server=on,wait=off", *extra])
    return q, Monitor(mon)


def test_idle_state_survives_save_and_restore(tmp_path):
    ensure_built()
    state = tmp_path / "state.bin"
    q, mon = start(tmp_path)
    run_known_job(q, np.random.default_rng(1))          # JOBS_DONE = 1, INT_STATUS.DONE
    q.writel(reg("SCRATCH"), 0xABCD1234)
    q.writel(reg("FAULT_DELAY_US"), 7)
    before = {name: q.readl(reg(name)) for name in
              ("SCRATCH", "INT_STATUS", "INT_ENABLE", "JOBS_DONE", "LAST_TAG", "FAULT_DELAY_US")}
    mon(f'migrate "exec:cat > {state}"')
    assert mon.migration_status() == "completed"
    assert q.close() is None
    q2, _ = start(tmp_path, "-incoming", f"exec:cat {state}")
    try:
        time.sleep(0.5)
        after = {name: q2.readl(reg(name)) for name in before}
        assert after == before
        q2.writel(reg("FAULT_DELAY_US"), 0)
        run_known_job(q2, np.random.default_rng(2))
    finally:
        assert q2.close() is None


def test_saving_while_busy_is_refused(tmp_path):
    ensure_built()
    q, mon = start(tmp_path)
    try:
        queue_hung_job(q)
        mon(f'migrate "exec:cat > {tmp_path / "busy.bin"}"')
        assert mon.migration_status() == "failed (pre-save failed: convaccel)"
        run_known_job(q, np.random.default_rng(3))       # resets, then computes
    finally:
        assert q.close() is None


def test_system_reset_in_the_middle_of_a_job(tmp_path):
    """QEMU's system reset (not the CTRL bit) also leaves the device idle and usable."""
    ensure_built()
    q, mon = start(tmp_path)
    try:
        q.writel(reg("SCRATCH"), 5)
        queue_hung_job(q)
        mon("system_reset")
        deadline = time.monotonic() + 10
        while q.readl(reg("STATUS")) or q.readl(reg("SCRATCH")):
            assert time.monotonic() < deadline, "system reset did not reset the device"
            time.sleep(0.05)
        run_known_job(q, np.random.default_rng(4))
    finally:
        assert q.close() is None
