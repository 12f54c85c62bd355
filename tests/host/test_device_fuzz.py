"""Register- and descriptor-level fuzzing of the device model, with no driver:
thousands of random register writes, DMA descriptors and resets through QEMU's
qtest protocol. QEMU must not crash, hang or assert, and the device must
compute correctly afterwards. Seeded: a failure names its seed."""
from __future__ import annotations

import os
import random
import time

import numpy as np
import pytest

from conftest import ensure_built
from qtest import QTest
from rawdevice import (BASE, DATA_AREA, JOB_AREA, R, RAM, RAM_MB, REGS, job_bytes, layer_bytes,
                       queue_hung_job, reg, run_known_job)

OPS = int(os.environ.get("PYACCEL_FUZZ_OPS", 20000))

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


def fuzz_step(q: QTest, rnd: random.Random, tag: int) -> None:
    kind = rnd.random()
    if kind < 0.35:                                   # a job, mostly plausible
        count = rnd.choice([1, 1, 2, 3, 0, 1025])
        layers = b"".join(random_layer(rnd) for _ in range(min(count, 3)))
        q.write(JOB_AREA + 0x1000, layers)
        job = job_bytes(JOB_AREA + 0x1000, count,
                        rnd.choice([JOB_AREA + 0x800, random_address(rnd)]), tag)
        if rnd.random() < 0.1:
            job[rnd.randrange(len(job))] ^= 0xFF
        q.write(JOB_AREA, bytes(job))
        addr = rnd.choice([JOB_AREA] * 8 + [random_address(rnd)])
        q.writel(reg("CMD_ADDR_LO"), addr & 0xFFFFFFFF)
        q.writel(reg("CMD_ADDR_HI"), addr >> 32)
        q.writel(reg("DOORBELL"), 1)
    elif kind < 0.55:                                 # any register, any value
        q.writel(BASE + rnd.choice(REGS + [rnd.randrange(0, 0x1000, 4)]), random_value(rnd))
    elif kind < 0.65:
        q.writel(reg("FAULT_CTRL"), rnd.randrange(8))
        q.writel(reg("FAULT_DELAY_US"), rnd.choice([0, 0, 100, 5000]))
        q.writel(reg("FAULT_ERROR_AFTER"), rnd.choice([0, 0, 1, 3]))
    elif kind < 0.75:
        q.writel(reg("CTRL"), rnd.choice([1, 2, 3, 0xFFFFFFFF]))
    elif kind < 0.95:
        q.readl(BASE + rnd.choice(REGS + [rnd.randrange(0, 0x1000, 4)]))
    else:                                             # odd access sizes
        size = rnd.choice(["b", "w", "q"])
        off = rnd.randrange(0, 0x100)
        q.cmd(f"read{size} {BASE + off:#x}")
        q.cmd(f"write{size} {BASE + off:#x} 0x1")


@pytest.fixture
def qtest():
    ensure_built()
    q = QTest(memory_mb=RAM_MB)
    yield q
    assert q.close() is None, f"QEMU exited by itself: {q.log.read_text()[-2000:]}"


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_register_and_descriptor_traffic(qtest, seed):
    rnd = random.Random(seed)
    for i in range(OPS):
        fuzz_step(qtest, rnd, i)
    assert qtest.alive(), f"QEMU died (seed {seed})"
    assert qtest.readl(reg("ID")) == R["CONVACCEL_ID_VALUE"]
    run_known_job(qtest, np.random.default_rng(seed))
    print(f"seed {seed}: {OPS} operations, QEMU alive, device correct afterwards")


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
    for _ in range(30):
        qtest.pipeline([f"writel {reg('DOORBELL'):#x} 0x1"] * 64)
    deadline = time.monotonic() + 20
    while qtest.readl(reg("STATUS")) & R["CONVACCEL_STATUS_BUSY"]:
        assert time.monotonic() < deadline, "jobs never drained"
        time.sleep(0.01)
    assert qtest.readl(reg("JOBS_DONE")) >= 30        # every batch got jobs through
    run_known_job(qtest, np.random.default_rng(5))     # the worker is alive
