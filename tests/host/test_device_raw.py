"""Device error statuses the driver can never produce (it always writes valid
job headers and checks sizes first), asserted one by one with raw
descriptors over qtest: each names the job or layer, raises ERROR, and
writes no tensor."""
from __future__ import annotations

import struct
import time

import pytest

from conftest import ensure_built
from qtest import QTest
from rawdevice import DATA_AREA, JOB_AREA, R, RAM, RAM_MB, job_bytes, layer_bytes, put, reg

JOB = R["CONVACCEL_RESULT_LAYER_JOB"]
GOOD = dict(op=R["CONVACCEL_LAYER_OP_CONV"], n=1, c_in=2, h_in=4, w_in=4, c_out=2, h_out=4,
            w_out=4, groups=1, kh=1, kw=1, stride_h=1, stride_w=1, dil_h=1, dil_w=1,
            input=DATA_AREA, weight=DATA_AREA + 0x1000, output=DATA_AREA + 0x2000)


def job_with(change: str) -> tuple[bytes, bytes, int]:
    """(job descriptor, layer descriptors, layer count) with one defect."""
    layers = [dict(GOOD), dict(GOOD)]
    count = 2
    if change == "too-large":       # a 2 GiB input: above MAX_TENSOR_MB
        layers[1].update(n=4096, c_in=2, h_in=256, w_in=256, h_out=256, w_out=256)
    if change == "misaligned":
        layers[1]["input"] = DATA_AREA + 2
    if change == "layers-outside-ram":
        layers = []
    if change == "count-0":
        count = 0
    if change == "count-1025":
        count = R["CONVACCEL_MAX_LAYERS_VALUE"] + 1
    job = job_bytes(RAM + (RAM_MB << 20) + 0x1000 if change == "layers-outside-ram"
                    else JOB_AREA + 0x1000, count, JOB_AREA + 0x800, 9)
    if change == "magic":
        put(job, R["CONVACCEL_JOB_MAGIC_OFF"], 0x12345678)
    if change == "job-flags":
        put(job, R["CONVACCEL_JOB_FLAGS_OFF"], 0x80)
    if change == "job-reserved":
        put(job, R["CONVACCEL_JOB_RSVD_OFF"], 1, 8)
    if change == "stats-outside-ram":
        put(job, R["CONVACCEL_JOB_FLAGS_OFF"], R["CONVACCEL_JOB_FLAG_STATS"])
        put(job, R["CONVACCEL_JOB_STATS_OFF"], 0x1000, 8)
    return bytes(job), b"".join(bytes(layer_bytes(l)) for l in layers), count


@pytest.fixture(scope="module")
def qtest():
    ensure_built()
    q = QTest(memory_mb=RAM_MB)
    q.writel(reg("INT_ENABLE"), R["CONVACCEL_INT_ALL"])
    yield q
    assert q.close() is None


@pytest.mark.parametrize("change, status, layer", [
    ("magic", "MAGIC", JOB),
    ("count-0", "LAYER_COUNT", JOB),
    ("count-1025", "LAYER_COUNT", JOB),
    ("job-flags", "RESERVED", JOB),
    ("job-reserved", "RESERVED", JOB),
    ("layers-outside-ram", "DMA", JOB),
    ("stats-outside-ram", "DMA", JOB),
    ("too-large", "TOO_LARGE", 1),
    ("misaligned", "DMA", 1),
])
def test_job_level_errors(qtest, change, status, layer):
    q = qtest
    q.write(DATA_AREA + 0x2000, b"\x07" * 64)           # layer 0's output: must stay
    job, layers, _ = job_with(change)
    q.write(JOB_AREA + 0x1000, layers)
    q.write(JOB_AREA, job)
    done = q.readl(reg("JOBS_DONE"))
    q.writel(reg("INT_STATUS"), R["CONVACCEL_INT_ALL"])
    q.writel(reg("CMD_ADDR_LO"), JOB_AREA)
    q.writel(reg("DOORBELL"), 1)
    deadline = time.monotonic() + 10
    while q.readl(reg("JOBS_DONE")) == done:
        assert time.monotonic() < deadline
        time.sleep(0.005)
    assert q.readl(reg("LAST_STATUS")) == R[f"CONVACCEL_ERR_{status}"]
    assert q.readl(reg("LAST_LAYER")) == layer
    assert q.readl(reg("INT_STATUS")) & R["CONVACCEL_INT_ERROR"]
    st, lay, tag, ran = struct.unpack("<4I", q.read(JOB_AREA + 0x800, 16))
    assert (st, lay, tag, ran) == (R[f"CONVACCEL_ERR_{status}"], layer, 9, 0)
    assert q.read(DATA_AREA + 0x2000, 64) == b"\x07" * 64, "a rejected job wrote a tensor"
    assert not q.readl(reg("STATUS")) & R["CONVACCEL_STATUS_BUSY"]
