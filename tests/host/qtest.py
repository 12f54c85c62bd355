"""A minimal client of QEMU's qtest protocol: the board with no CPU running,
its memory and registers driven from the host (docs/devel/testing/qtest.rst)."""
from __future__ import annotations

import os
import socket
import subprocess
import tempfile
from pathlib import Path

import board


class QTestError(RuntimeError):
    pass


class QTest:
    """QEMU under -accel qtest; read/write memory and registers by command."""

    def __init__(self, machine_opts: str = "", memory_mb: int = 256, extra: list[str] = (),
                 qemu: Path = board.QEMU, preexec_fn=None) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="pyaccel-qtest-")
        sock_path = os.path.join(self._dir.name, "qtest.sock")
        srv = socket.socket(socket.AF_UNIX)
        srv.bind(sock_path)
        srv.listen(1)
        srv.settimeout(30)
        self.log = Path(self._dir.name) / "qemu.log"
        self.proc = subprocess.Popen(
            [str(qemu), "-M", f"{board.MACHINE}{machine_opts}", "-cpu", board.CPU,
             "-m", str(memory_mb), "-display", "none", "-nic", "none", "-monitor", "none",
             "-serial", "none", "-accel", "qtest", "-qtest", f"unix:{sock_path}",
             "-qtest-log", "/dev/null", *extra],
            stdout=subprocess.DEVNULL, stderr=open(self.log, "w"), preexec_fn=preexec_fn,
            env=board.blasenv.environ(board.BUILD / "libconvaccel_compute.so"))
        try:
            self.sock, _ = srv.accept()
        finally:
            srv.close()
        self.sock.settimeout(60)
        self._file = self.sock.makefile("rw")

    def cmd(self, line: str) -> str:
        self._file.write(line + "\n")
        self._file.flush()
        while True:
            reply = self._file.readline()
            if not reply:
                raise QTestError(f"QEMU closed the qtest socket after {line!r} "
                                 f"(exit {self.proc.poll()}): {self.log.read_text()[-2000:]}")
            reply = reply.strip()
            if reply.startswith("OK"):
                return reply[3:]
            if reply.startswith(("FAIL", "ERR")):
                raise QTestError(f"{line!r}: {reply}")
            # "IRQ raise/lower" notifications come in between: skip them

    def pipeline(self, lines: list[str]) -> list[str]:
        """Send many commands at once, then read all replies: QEMU handles
        them back to back, without main-loop work (bottom halves) between."""
        self._file.write("".join(line + "\n" for line in lines))
        self._file.flush()
        replies = []
        while len(replies) < len(lines):
            reply = self._file.readline()
            if not reply:
                raise QTestError(f"QEMU closed the qtest socket (exit {self.proc.poll()})")
            if reply.startswith(("OK", "FAIL", "ERR")):
                replies.append(reply.strip())
        return replies

    def readl(self, addr: int) -> int:
        return int(self.cmd(f"readl {addr:#x}"), 16)

    def writel(self, addr: int, value: int) -> None:
        self.cmd(f"writel {addr:#x} {value & 0xFFFFFFFF:#x}")

    def write(self, addr: int, data: bytes) -> None:
        if data:
            self.cmd(f"write {addr:#x} {len(data):#x} 0x{data.hex()}")

    def read(self, addr: int, size: int) -> bytes:
        return bytes.fromhex(self.cmd(f"read {addr:#x} {size:#x}")[2:])

    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self) -> int | None:
        """Stop QEMU; returns its exit status if it had already exited."""
        status = self.proc.poll()
        if status is None:
            self.proc.kill()
        self.proc.wait()
        self.sock.close()
        self._dir.cleanup()
        return status
