"""Register- and descriptor-level fuzzing of the device model, with no driver:
thousands of random register writes, DMA descriptors, resets (also right
after a doorbell), jobs above the device's work and tensor limits, through
QEMU's qtest protocol; and, every so often, a checked step: migration to a
file while idle, in whatever state the fuzz left, and with a job in flight
(it must complete right on the destination), reset racing the worker, a
job above the limits (TOO_LARGE at the right layer, at once). QEMU must not
crash, hang or assert, and the device must compute correctly afterwards.
Seeded: a failure names its seed."""
from __future__ import annotations

import collections
import json
import os
import socket
import random
import struct
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

import board

from conftest import ensure_built
from qtest import QTest
from rawdevice import (BASE, DATA_AREA, JOB_AREA, R, RAM, RAM_MB, REGS, job_bytes, layer_bytes,
                       queue_hung_job, reg, reset, run_known_job, write_known_job)

OPS = int(os.environ.get("PYACCEL_FUZZ_OPS", 20000))
CHECK_EVERY = 4000                  # fuzz_steps between two checked steps

def random_value(rnd: random.Random) -> int:
    return rnd.choice([0, 1, 2, 3, 4, 7, 16, 17, 64, 65, 255, 4096, 8192, 0xFFFFFFFF,
                       0x80000000, rnd.getrandbits(32), rnd.randint(1, 32)])


def random_address(rnd: random.Random) -> int:
    return rnd.choice([DATA_AREA + rnd.randrange(0, 1 << 20, 4), RAM + (RAM_MB << 20) - 16,
                       0, BASE, 0xFFFFFFFFFFFFF000, rnd.getrandbits(64),
                       RAM + rnd.randrange(0, RAM_MB << 20)])


def random_layer(rnd: random.Random) -> bytearray:
    c, h = rnd.randint(1, 8), rnd.randint(1, 12)
    k = rnd.choice([1, 3])
    fields = dict(op=rnd.choice([1, 1, 2, 3, 0, 9]), flags=rnd.choice([0, 1, 0x100, 0x201, 0x300]),
                  n=1, c_in=c, h_in=h, w_in=h, c_out=c, h_out=h - k + 1, w_out=h - k + 1,
                  groups=1, kh=k, kw=k, stride_h=1, stride_w=1, dil_h=1, dil_w=1,
                  input=DATA_AREA, weight=DATA_AREA + 0x40000, bias=0,
                  output=DATA_AREA + 0x80000)
    for _ in range(rnd.randint(0, 3)):       # corrupt a few fields
        name = rnd.choice(list(fields))
        fields[name] = random_address(rnd) if name in ("input", "weight", "bias", "output") \
            else random_value(rnd)
    return layer_bytes(fields)


def big_layer(rnd: random.Random, alone: bool = True) -> tuple[bytearray, int]:
    """A conv layer every field of which is within the device's limits but
    whose tensor is above MAX_TENSOR_MB or whose work is huge: (descriptor,
    MACs), MACs 0 when a tensor is too large. alone: a layer that is above
    the limits by itself (else also layers of 2^38 MACs, five of which are)."""
    shapes = [(1024, 128, 16), (8192, 256, 1)] + ([] if alone else [(256, 128, 16),
                                                                    (128, 256, 16)])
    c, hw, k = rnd.choice(shapes)
    pad = (k - 1) // 2
    fields = dict(op=R["CONVACCEL_LAYER_OP_CONV"], flags=0, n=1, c_in=c, h_in=hw, w_in=hw,
                  c_out=c, h_out=hw, w_out=hw, groups=1, kh=k, kw=k, stride_h=1, stride_w=1,
                  dil_h=1, dil_w=1, pad_top=pad, pad_bottom=k - 1 - pad, pad_left=pad,
                  pad_right=k - 1 - pad, input=DATA_AREA, weight=DATA_AREA, output=DATA_AREA)
    tensor_mb = max(c * hw * hw, c * c * k * k) * 4 >> 20
    macs = 0 if tensor_mb > R["CONVACCEL_MAX_TENSOR_MB_VALUE"] else c * c * hw * hw * k * k
    return layer_bytes(fields), macs


def ring(q: QTest, job_addr: int) -> None:
    q.pipeline(doorbell(job_addr))


def writel(addr: int, value: int) -> str:
    return f"writel {addr:#x} {value & 0xFFFFFFFF:#x}"


def write(addr: int, data: bytes) -> str:
    return f"write {addr:#x} {len(data):#x} 0x{data.hex()}"


def doorbell(addr: int) -> list[str]:
    return [writel(reg("CMD_ADDR_LO"), addr), writel(reg("CMD_ADDR_HI"), addr >> 32),
            writel(reg("DOORBELL"), 1)]


def fuzz_commands(rnd: random.Random, tag: int) -> list[str]:
    """One random operation, as qtest command lines."""
    kind = rnd.random()
    if kind < 0.04:                                   # above the limits: TOO_LARGE
        # (never a job that would run: a leftover layer may be rung again later)
        layers = [big_layer(rnd)[0] for _ in range(rnd.randint(1, 3))]
        job = job_bytes(JOB_AREA + 0x1000, len(layers), JOB_AREA + 0x800, tag)
        return [write(JOB_AREA + 0x1000, b"".join(bytes(l) for l in layers)),
                write(JOB_AREA, bytes(job)), *doorbell(JOB_AREA)]
    if kind < 0.07:                                   # reset right after doorbells
        return [writel(reg("DOORBELL"), 1),
                writel(reg("CTRL"), R["CONVACCEL_CTRL_RESET"])] * rnd.randint(1, 4)
    if kind < 0.35:                                   # a job, mostly plausible
        count = rnd.choice([1, 1, 2, 3, 0, 1025])
        layers = b"".join(random_layer(rnd) for _ in range(min(count, 3)))
        job = job_bytes(JOB_AREA + 0x1000, count,
                        rnd.choice([JOB_AREA + 0x800, random_address(rnd)]), tag)
        if rnd.random() < 0.1:
            job[rnd.randrange(len(job))] ^= 0xFF
        addr = rnd.choice([JOB_AREA] * 8 + [random_address(rnd)])
        return [*([write(JOB_AREA + 0x1000, layers)] if layers else []),
                write(JOB_AREA, bytes(job)), *doorbell(addr)]
    if kind < 0.55:                                   # any register, any value
        return [writel(BASE + rnd.choice(REGS + [rnd.randrange(0, 0x1000, 4)]),
                       random_value(rnd))]
    if kind < 0.65:
        return [writel(reg("FAULT_CTRL"), rnd.randrange(8)),
                writel(reg("FAULT_DELAY_US"), rnd.choice([0, 0, 100, 5000])),
                writel(reg("FAULT_ERROR_AFTER"), rnd.choice([0, 0, 1, 3]))]
    if kind < 0.75:
        return [writel(reg("CTRL"), rnd.choice([1, 2, 3, 0xFFFFFFFF]))]
    if kind < 0.95:
        return [f"readl {BASE + rnd.choice(REGS + [rnd.randrange(0, 0x1000, 4)]):#x}"]
    size = rnd.choice(["b", "w", "q"])                # odd access sizes
    off = rnd.randrange(0, 0x100)
    return [f"read{size} {BASE + off:#x}", f"write{size} {BASE + off:#x} 0x1"]


V2_SHARE = 0.125      # of the steps: hardware 2.0 descriptors (test_device_v2.fuzz_step_v2)


def fuzz_step(q: QTest, rnd: random.Random, tag: int) -> None:
    """One fuzz step: a pipeline of random register and v1 descriptor traffic,
    or (one in eight) a v2 job: views, ops, dtypes, tables, corrupted fields."""
    if rnd.random() < V2_SHARE:
        from test_device_v2 import fuzz_step_v2

        fuzz_step_v2(q, rnd, tag)
    else:
        q.pipeline(fuzz_commands(rnd, tag))


# --- checked steps -------------------------------------------------------------

class QMP:
    """QEMU's machine protocol on a unix socket: one command, its answer."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(path)
        self.sock.settimeout(30)
        self.file = self.sock.makefile("rw")
        self.file.readline()                        # the greeting
        self("qmp_capabilities")

    def __call__(self, command: str, **arguments) -> dict:
        self.file.write(json.dumps({"execute": command, "arguments": arguments}) + "\n")
        self.file.flush()
        while True:
            reply = json.loads(self.file.readline())
            if "event" not in reply:
                return reply.get("return", reply)

    def close(self) -> None:
        self.file.close()
        self.sock.close()


class Target:
    """The device under fuzz: QEMU under qtest, with QMP. A migration
    replaces the QEMU process (source -> state file -> destination); the log
    of every process is kept, for sanitizer reports."""

    def __init__(self, qemu: Path = board.QEMU) -> None:
        self.qemu = qemu
        self._dir = tempfile.TemporaryDirectory(prefix="pyaccel-fuzz-")
        self.dir = Path(self._dir.name)
        self.logs: list[str] = []
        self.crashes = 0                            # a QEMU that exited by itself
        self.events: collections.Counter = collections.Counter()
        self.failures: list[str] = []               # checked steps that went wrong
        self.q, self.qmp = self.start()

    def start(self, *extra: str) -> tuple[QTest, QMP]:
        path = str(self.dir / f"qmp{len(self.logs)}.sock")
        q = QTest(memory_mb=RAM_MB, qemu=self.qemu,
                  extra=["-qmp", f"unix:{path},server=on,wait=off", *extra])
        return q, QMP(path)

    def retire(self, q: QTest) -> None:
        self.qmp.close()
        self.logs.append(q.log.read_text(errors="replace") if q.log.exists() else "")
        self.crashes += q.close() is not None

    def migrate(self) -> str:
        """Migrate to a file and continue on a new QEMU: "completed", or why
        not (a refused migration leaves the source running)."""
        state = self.dir / "state.bin"
        self.qmp("migrate", uri=f"exec:cat > {state}")
        deadline = time.monotonic() + 60
        while (info := self.qmp("query-migrate")).get("status") in ("setup", "active", "device"):
            if time.monotonic() > deadline:
                return "migration timed out"
            time.sleep(0.02)
        if info.get("status") != "completed":
            self.qmp("cont")
            return f"{info.get('status')}: {info.get('error-desc', '')}"
        self.retire(self.q)
        self.q, self.qmp = self.start("-incoming", f"exec:cat {state}")
        while self.qmp("query-status").get("status") != "running":    # until loaded
            if time.monotonic() > deadline:
                return "not running on the destination"
            time.sleep(0.02)
        state.unlink()
        return "completed"

    def fail(self, what: str) -> None:
        self.failures.append(what)

    def log_text(self) -> str:
        current = self.q.log.read_text(errors="replace") if self.q.log.exists() else ""
        return "".join(self.logs) + current

    def close(self) -> None:
        self.retire(self.q)
        self._dir.cleanup()


def wait_done(q: QTest, jobs: int, seconds: float = 20) -> bool:
    deadline = time.monotonic() + seconds
    while q.readl(reg("JOBS_DONE")) < jobs:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def queue_known_job(q: QTest, rng: np.random.Generator, tag: int) -> tuple[int, np.ndarray]:
    """rawdevice's known job, its output zeroed, rung: (output address,
    expected output)."""
    addr_y, want = write_known_job(q, rng, tag)
    q.write(addr_y, bytes(want.nbytes))
    ring(q, JOB_AREA)
    return addr_y, want


def known_job_right(q: QTest, addr_y: int, want: np.ndarray, tag: int) -> str:
    """"" if the known job completed right, else what is wrong."""
    if not wait_done(q, 1):
        return "never completed"
    if (q.readl(reg("LAST_STATUS")), q.readl(reg("LAST_TAG"))) != (0, tag):
        return f"LAST_STATUS {q.readl(reg('LAST_STATUS'))} LAST_TAG {q.readl(reg('LAST_TAG'))}"
    y = np.frombuffer(q.read(addr_y, want.nbytes), np.float32).reshape(want.shape)
    return "" if np.allclose(y, want, rtol=1e-4, atol=1e-4) else "wrong output"


IDLE_REGS = ("SCRATCH", "INT_ENABLE", "JOBS_DONE", "LAST_STATUS", "LAST_TAG", "FAULT_DELAY_US")


def check_migrate_idle(t: Target, rnd: random.Random, step: int) -> None:
    """Idle: every register comes back as it was."""
    reset(t.q)
    t.q.writel(reg("SCRATCH"), rnd.getrandbits(32))
    t.q.writel(reg("INT_ENABLE"), rnd.getrandbits(32))
    t.q.writel(reg("FAULT_DELAY_US"), rnd.randrange(1000))
    before = {name: t.q.readl(reg(name)) for name in IDLE_REGS}
    status = t.migrate()
    t.events[f"migrate_idle_{status}"] += 1
    after = {name: t.q.readl(reg(name)) for name in IDLE_REGS}
    if status != "completed" or after != before:
        t.fail(f"step {step}: idle migration {status}: {before} -> {after}")


def check_migrate_any(t: Target, rnd: random.Random, step: int) -> None:
    """In whatever state the fuzz left (jobs queued, hung, faults armed):
    the migration completes and the destination answers."""
    busy = bool(t.q.readl(reg("STATUS")) & R["CONVACCEL_STATUS_BUSY"])
    status = t.migrate()
    t.events[f"migrate_fuzzed_{'busy' if busy else 'idle'}_{status}"] += 1
    if status != "completed" or t.q.readl(reg("ID")) != R["CONVACCEL_ID_VALUE"]:
        t.fail(f"step {step}: migration in the fuzzed state ({busy=}): {status}")


def check_migrate_busy(t: Target, rnd: random.Random, step: int) -> None:
    """A job in flight (waiting out a delay, or running): the migration
    completes and the job completes right on the destination."""
    reset(t.q)
    t.q.writel(reg("FAULT_DELAY_US"), rnd.choice([200_000, 400_000]))
    addr_y, want = queue_known_job(t.q, np.random.default_rng(step), step & 0xFFFF)
    busy = bool(t.q.readl(reg("STATUS")) & R["CONVACCEL_STATUS_BUSY"])
    status = t.migrate()
    outcome = known_job_right(t.q, addr_y, want, step & 0xFFFF) if status == "completed"         else "refused"
    t.events[f"migrate_busy_{status if not outcome else 'wrong'}"] += 1
    t.events["migrate_busy_was_busy"] += busy
    t.q.writel(reg("FAULT_DELAY_US"), 0)
    if status != "completed" or outcome:
        t.fail(f"step {step}: busy migration {status}, the job on the destination: "
               f"{outcome or 'ok'}")


def check_reset_race(t: Target, rnd: random.Random, step: int) -> None:
    """A long layer (~150M MACs), reset right after its doorbell (and a few
    ms later), over and over: idle at once each time, then a job runs right."""
    reset(t.q)
    c, hw = 64, 64
    layer = layer_bytes(dict(op=R["CONVACCEL_LAYER_OP_CONV"], flags=0, n=1, c_in=c, h_in=hw,
                             w_in=hw, c_out=c, h_out=hw, w_out=hw, groups=1, kh=3, kw=3,
                             stride_h=1, stride_w=1, dil_h=1, dil_w=1, pad_top=1, pad_bottom=1,
                             pad_left=1, pad_right=1, input=DATA_AREA,
                             weight=DATA_AREA + 0x200000, output=DATA_AREA + 0x400000))
    q = t.q
    q.write(JOB_AREA + 0x1000, bytes(layer))
    q.write(JOB_AREA, bytes(job_bytes(JOB_AREA + 0x1000, 1, JOB_AREA + 0x800, 1)))
    q.writel(reg("CMD_ADDR_LO"), JOB_AREA)
    q.writel(reg("CMD_ADDR_HI"), 0)
    doorbell = f"writel {reg('DOORBELL'):#x} 0x1"
    reset_cmd = f"writel {reg('CTRL'):#x} {R['CONVACCEL_CTRL_RESET']:#x}"
    status = f"readl {reg('STATUS'):#x}"
    for _ in range(8):
        delay = rnd.choice([0, 0, 0.001, 0.005])
        if delay:
            q.pipeline([doorbell] * rnd.randint(1, 3))
            time.sleep(delay)
            replies = q.pipeline([reset_cmd, status])
        else:
            replies = q.pipeline([doorbell, reset_cmd, status] * rnd.randint(1, 3))
        t.events["reset_races"] += 1
        if int(replies[-1].split()[-1], 16) != 0:
            t.fail(f"step {step}: STATUS {replies[-1]} right after a reset")
    addr_y, want = queue_known_job(q, np.random.default_rng(step), 5)   # over the long layer
    if (wrong := known_job_right(q, addr_y, want, 5)):
        t.fail(f"step {step}: the job after the reset races: {wrong}")


def check_limits(t: Target, rnd: random.Random, step: int) -> None:
    """Layers within every field limit but above MAX_TENSOR_MB or, together,
    above MAX_JOB_GMACS: TOO_LARGE at the crossing layer, at once."""
    reset(t.q)
    limit = R["CONVACCEL_MAX_JOB_GMACS_VALUE"] << 30
    layers, work, crossing = [], 0, None
    while crossing is None:
        layer, macs = big_layer(rnd, alone=False)
        work = work + macs if macs else limit + 1
        if work > limit:
            crossing = len(layers)
        layers.append(layer)
    layers += [big_layer(rnd)[0] for _ in range(rnd.randint(0, 2))]
    q = t.q
    q.write(JOB_AREA + 0x1000, b"".join(bytes(l) for l in layers))
    q.write(JOB_AREA, bytes(job_bytes(JOB_AREA + 0x1000, len(layers), JOB_AREA + 0x800, 9)))
    t0 = time.monotonic()
    ring(q, JOB_AREA)
    done = wait_done(q, 1, 10)
    took = time.monotonic() - t0
    got = (q.readl(reg("LAST_STATUS")), q.readl(reg("LAST_LAYER")))
    status, layer, _, layers_done = struct.unpack("<4I", q.read(JOB_AREA + 0x800, 16))
    t.events["limit_jobs"] += 1
    want = (R["CONVACCEL_ERR_TOO_LARGE"], crossing)
    q.write(JOB_AREA + 0x1000, bytes(len(layers) * R["CONVACCEL_LAYER_SIZE"]))  # no leftovers
    if not done or got != want or (status, layer, layers_done) != (*want, 0) or took > 5:
        t.fail(f"step {step}: {len(layers)} layers above the limits: done {done} in "
               f"{took:.1f} s, LAST_STATUS/LAYER {got}, result {status, layer, layers_done}, "
               f"want {want}")


CHECKS = (check_migrate_busy, check_reset_race, check_limits, check_migrate_idle,
          check_migrate_any)


def fuzz(t: Target, rnd: random.Random, ops: int, check_every: int = CHECK_EVERY) -> None:
    """ops random operations, sent 1 to 8 at a time (back to back, with no
    main-loop work between them); every check_every of them, the next
    checked step in turn."""
    lines: list[str] = []
    batch = pending = 1
    for i in range(ops):
        lines += fuzz_commands(rnd, i)
        if pending == batch:
            t.q.pipeline(lines)
            lines, batch, pending = [], rnd.randint(1, 8), 0
        pending += 1
        if i % check_every == check_every - 1:
            t.q.pipeline(lines)
            lines, pending = [], 1
            CHECKS[(i // check_every) % len(CHECKS)](t, rnd, i)
    t.q.pipeline(lines)


@pytest.fixture
def target():
    ensure_built()
    t = Target()
    yield t
    t.close()
    assert not t.crashes, f"QEMU exited by itself: {t.logs[-1][-2000:]}"


@pytest.fixture
def qtest():
    ensure_built()
    q = QTest(memory_mb=RAM_MB)
    yield q
    assert q.close() is None, f"QEMU exited by itself: {q.log.read_text()[-2000:]}"


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_register_and_descriptor_traffic(target, seed):
    rnd = random.Random(seed)
    fuzz(target, rnd, OPS)
    assert target.q.alive(), f"QEMU died (seed {seed})"
    assert not target.failures, "\n".join(target.failures)
    assert target.q.readl(reg("ID")) == R["CONVACCEL_ID_VALUE"]
    run_known_job(target.q, np.random.default_rng(seed))
    print(f"seed {seed}: {OPS} operations, checked steps {dict(target.events)}, "
          f"QEMU alive, device correct afterwards")


def test_reset_in_the_middle_of_a_job(qtest):
    """A hung job and a slow job abandoned by reset: idle at once, then usable."""
    queue_hung_job(qtest, doorbells=2)
    qtest.writel(reg("CTRL"), R["CONVACCEL_CTRL_RESET"])
    assert qtest.readl(reg("STATUS")) == 0
    assert qtest.readl(reg("JOBS_DONE")) == 0
    run_known_job(qtest, np.random.default_rng(0))


def test_queue_overflow_is_flagged_not_fatal(qtest):
    qtest.writel(reg("FAULT_CTRL"), R["CONVACCEL_FAULT_HANG"])
    qtest.writel(reg("CMD_ADDR_LO"), JOB_AREA)
    for _ in range(R["CONVACCEL_QUEUE_DEPTH_VALUE"] + 2):
        qtest.writel(reg("DOORBELL"), 1)
    status = qtest.readl(reg("STATUS"))
    assert status & R["CONVACCEL_STATUS_QUEUE_FULL"] and status & R["CONVACCEL_STATUS_OVERFLOW"]
    assert (status >> 8) & 0xFF == R["CONVACCEL_QUEUE_DEPTH_VALUE"]
    run_known_job(qtest, np.random.default_rng(0))


def test_completions_faster_than_the_main_loop(qtest):
    """Regression (found by this fuzz): jobs that fail at once, doorbells
    back to back, finished faster than the main loop published them, and the
    worker wrote past its completion array and stopped. It must wait instead."""
    qtest.writel(reg("CMD_ADDR_LO"), 0)          # not RAM: each job fails at once
    qtest.writel(reg("CMD_ADDR_HI"), 0)
    for batch in range(30):
        # back to back: the main loop publishes nothing while it reads these
        qtest.pipeline([f"writel {reg('DOORBELL'):#x} 0x1"] * 64)
        deadline = time.monotonic() + 20
        while qtest.readl(reg("STATUS")) & R["CONVACCEL_STATUS_BUSY"]:
            assert time.monotonic() < deadline, f"batch {batch}: jobs never drained"
            time.sleep(0.01)
        # every batch got jobs through: the worker did not stop
        assert qtest.readl(reg("JOBS_DONE")) >= batch + 1
    run_known_job(qtest, np.random.default_rng(5))     # the worker is alive
