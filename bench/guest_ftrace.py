"""Where one call's time goes inside the guest, from the kernel's own trace
events (ftrace): the profile behind the fixed-cost rows of `make bench`.

    with Trace() as t:
        for _ in range(n):
            t.mark("B"); call(); t.mark("E")
    split = t.split(ioctl_cmds)

Events: raw_syscalls sys_enter/sys_exit of this process (the ioctls),
irq_handler_entry/exit, sched_wakeup and sched_switch (all tasks: the IRQ
thread and the waiter), and trace_marker writes "B"/"E" around each call.
The trace clock is "global", so events of different vCPUs are ordered.

split() cuts each B..E call into consecutive segments (median microseconds):
  python_in       B .. SUBMIT ioctl enters (Python: the input, the request)
  submit_ioctl    SUBMIT enters .. returns (copy-in, validation, doorbell)
  python_between  SUBMIT returns .. WAIT enters
  wait_to_irq     WAIT enters .. the device's interrupt (the device's work
                  and QEMU's completion; 0 if the interrupt came first)
  irq_to_wake     the hard IRQ .. the waiter is woken (the IRQ thread: it
                  takes the device lock, collects the job, wakes the file)
  wake_to_run     woken .. the waiter runs again (the scheduler)
  run_to_return   runs .. WAIT returns (copy-out of the job's result)
  python_out      WAIT returns .. E (Python: the JobResult, the output)
"""
from __future__ import annotations

import os
import re
import statistics
from pathlib import Path
from typing import Optional

TRACEFS = Path("/sys/kernel/tracing")
IOCTL_NR = 29        # arm64's __NR_ioctl (asm-generic/unistd.h)
SEGMENTS = ("python_in", "submit_ioctl", "python_between", "wait_to_irq", "irq_to_wake",
            "wake_to_run", "run_to_return", "python_out")
EVENTS = ("raw_syscalls/sys_enter", "raw_syscalls/sys_exit", "irq/irq_handler_entry",
          "irq/irq_handler_exit", "sched/sched_wakeup", "sched/sched_switch")
# "  python3-312  [001] d..2.  123.456789: sched_switch: prev_comm=... "
LINE = re.compile(r"^\s*(.+?)-(\d+)\s+\[\d+\]\s+\S+\s+([\d.]+): (\w+): (.*)$")


class TraceError(RuntimeError):
    """tracefs is missing or an event cannot be enabled."""


class Trace:
    """Trace events around calls of this process (root, a kernel with tracefs)."""

    def __init__(self, irq_name: str = "convaccel", buffer_kb: int = 8192) -> None:
        self.pid, self.irq_name, self.buffer_kb = os.getpid(), irq_name, buffer_kb
        self._marker: Optional[int] = None

    def _write(self, name: str, value: str) -> None:
        (TRACEFS / name).write_text(value)

    def __enter__(self) -> "Trace":
        if not (TRACEFS / "trace").exists():
            os.makedirs(TRACEFS, exist_ok=True)
            if os.system(f"mount -t tracefs nodev {TRACEFS}") != 0:
                raise TraceError(f"cannot mount tracefs at {TRACEFS}")
        self._write("tracing_on", "0")
        self._write("trace", "")
        self._write("trace_clock", "global")
        self._write("buffer_size_kb", str(self.buffer_kb))
        self._write("set_event", "")
        for ev in EVENTS:
            path = TRACEFS / "events" / ev
            if not path.exists():
                raise TraceError(f"this kernel has no trace event {ev}")
            if ev.startswith("raw_syscalls"):
                (path / "filter").write_text(f"common_pid == {self.pid} && id == {IOCTL_NR}")
            (path / "enable").write_text("1")
        self._marker = os.open(TRACEFS / "trace_marker", os.O_WRONLY)
        self._write("tracing_on", "1")
        return self

    def mark(self, text: str) -> None:
        os.write(self._marker, text.encode())

    def __exit__(self, *exc: object) -> None:
        self._write("tracing_on", "0")
        if self._marker is not None:
            os.close(self._marker)
        for ev in EVENTS:
            (TRACEFS / "events" / ev / "enable").write_text("0")
            if ev.startswith("raw_syscalls"):
                (TRACEFS / "events" / ev / "filter").write_text("0")
        self.text = (TRACEFS / "trace").read_text()
        self._write("trace", "")

    def split(self, submit_cmd: int, wait_cmd: int) -> dict:
        """Median microseconds per segment over the complete calls, and their count."""
        calls, cur, ioctl = [], None, None
        kinds = {submit_cmd: "submit", wait_cmd: "wait"}
        for line in self.text.splitlines():
            m = LINE.match(line)
            if not m:
                continue
            _comm, pid, ts, event, rest = m.groups()
            t, pid = float(ts) * 1e6, int(pid)
            if event == "tracing_mark_write":
                if rest.strip() == "B":
                    cur = {"B": t}
                elif rest.strip() == "E" and cur is not None:
                    cur["E"] = t
                    calls.append(cur)
                    cur = None
            elif cur is None:
                continue
            elif event == "sys_enter" and pid == self.pid:
                cmd = int(rest.split("(")[1].split(",")[1], 16)
                ioctl = kinds.get(cmd)
                if ioctl:
                    cur.setdefault(f"{ioctl}_enter", t)
            elif event == "sys_exit" and pid == self.pid and ioctl:
                cur.setdefault(f"{ioctl}_exit", t)
                ioctl = None
            elif event == "irq_handler_entry" and f"name={self.irq_name}" in rest:
                cur.setdefault("irq", t)
            elif event == "sched_wakeup" and f"pid={self.pid} " in rest + " ":
                if "irq" in cur:
                    cur.setdefault("woken", t)
            elif event == "sched_switch" and f"next_pid={self.pid} " in rest + " ":
                if "woken" in cur:
                    cur.setdefault("running", t)
        return summarize(calls)


def _after(t: Optional[float], start: float, end: float) -> float:
    """Event time t, no earlier than start; start if t is missing or after end
    (then it belongs to a later call)."""
    return start if t is None or t > end else max(t, start)


def summarize(calls: list[dict]) -> dict:
    """Segments of each call with every point seen; a wait that did not
    sleep (no wakeup) counts its whole ioctl as run_to_return."""
    rows = []
    for c in calls:
        if not all(k in c for k in ("submit_enter", "submit_exit", "wait_enter", "wait_exit")):
            continue
        irq = min(max(c.get("irq", c["wait_enter"]), c["wait_enter"]), c["wait_exit"])
        woken = _after(c.get("woken"), irq, c["wait_exit"])
        running = _after(c.get("running"), woken, c["wait_exit"])
        points = [c["B"], c["submit_enter"], c["submit_exit"], c["wait_enter"], irq, woken,
                  running, c["wait_exit"], c["E"]]
        rows.append([b - a for a, b in zip(points, points[1:])])
    if not rows:
        return dict(calls=0)
    out = {name: round(statistics.median(r[i] for r in rows), 1)
           for i, name in enumerate(SEGMENTS)}
    out["total"] = round(statistics.median(sum(r) for r in rows), 1)
    out["calls"] = len(rows)
    out["slept"] = sum(1 for c in calls if "running" in c)
    return out
