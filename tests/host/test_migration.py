"""VMState and system reset: the device's registers and its jobs in flight survive
savevm/loadvm (migration to a file and back): an idle device, a job migrated in the
middle (resumed on the destination), a queue of jobs, a hung job."""
from __future__ import annotations

import socket
import time

import struct

import numpy as np

from pyaccel import reference as ref

from conftest import ensure_built
from qtest import QTest
from rawdevice import (DATA_AREA, JOB_AREA, R, job_bytes, layer_bytes, put, queue_hung_job, reg,
                       run_known_job, wait_jobs_done)
from test_compute import cvc, lib_conv2d  # noqa: F401 - cvc is a fixture

JOB = R["CONVACCEL_RESULT_LAYER_JOB"]


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


def test_hung_job_survives_migration(tmp_path):
    """Saving while busy works (it was refused): a hung job (fault injection)
    is still hung on the destination, until a reset."""
    ensure_built()
    state = tmp_path / "busy.bin"
    q, mon = start(tmp_path)
    try:
        queue_hung_job(q, doorbells=2)
        mon(f'migrate "exec:cat > {state}"')
        assert mon.migration_status() == "completed"
    finally:
        assert q.close() is None
    q2, _ = start(tmp_path, "-incoming", f"exec:cat {state}")
    try:
        wait_incoming(q2)
        time.sleep(0.3)
        status = q2.readl(reg("STATUS"))
        assert status & R["CONVACCEL_STATUS_BUSY"] and (status >> 8) & 0xFF == 2
        assert q2.readl(reg("JOBS_DONE")) == 0
        run_known_job(q2, np.random.default_rng(3))      # resets, then computes
    finally:
        assert q2.close() is None


def wait_incoming(q: QTest) -> None:
    """Until the incoming migration is loaded and the VM runs (qtest answers
    only once the main loop runs; the registers come with the state)."""
    q.readl(reg("ID"))


# --- jobs in flight -------------------------------------------------------------

CH, HW, LAYERS = 128, 64, 64
BUF = [DATA_AREA + i * 0x400000 for i in range(2)]     # ping-pong activations
WEIGHT, BIASES = DATA_AREA + 0x800000, DATA_AREA + 0xA00000
STATS = JOB_AREA + 0x40000


def chain_layer(i: int) -> dict:
    """Layer i of the chain: a 3x3 conv, buffer i % 2 -> (i + 1) % 2."""
    return dict(op=R["CONVACCEL_LAYER_OP_CONV"], flags=R["CONVACCEL_LAYER_FLAG_BIAS"], n=1,
                c_in=CH, h_in=HW, w_in=HW, c_out=CH, h_out=HW, w_out=HW, groups=1, kh=3, kw=3,
                stride_h=1, stride_w=1, dil_h=1, dil_w=1, pad_top=1, pad_bottom=1,
                pad_left=1, pad_right=1, input=BUF[i % 2], weight=WEIGHT,
                bias=BIASES + i * CH * 4, output=BUF[(i + 1) % 2])


def test_migrate_mid_job(tmp_path, cvc):
    """A job of 64 layers, each consuming the previous one's output
    (ping-pong buffers, so a job started over would read overwritten
    inputs), migrated while it runs: the destination resumes it where the
    source stopped and the output is right. The stats records on the
    source show the stop landed in the middle. (The old device refused to
    save while busy, and let the worker write RAM after the VM stopped.)"""
    ensure_built()
    rng = np.random.default_rng(12)
    x = rng.uniform(-1, 1, (1, CH, HW, HW)).astype(np.float32)
    w = rng.uniform(0, 1, (CH, CH, 3, 3)).astype(np.float32)
    w /= w.sum(axis=(1, 2, 3), keepdims=True)           # averages: values stay bounded
    biases = rng.uniform(-1, 1, (LAYERS, CH)).astype(np.float32)
    expected = x
    for i in range(LAYERS):
        expected = lib_conv2d(cvc, expected, w, biases[i], pads=(1, 1, 1, 1))

    state = tmp_path / "mid.bin"
    # one compute thread on the source: a slower job, a wider window to stop in
    q, mon = start(tmp_path, "-global", "convaccel.compute-threads=1")
    try:
        q.write(BUF[0], x.tobytes())
        q.write(WEIGHT, w.tobytes())
        q.write(BIASES, biases.tobytes())
        q.write(STATS, bytes(LAYERS * R["CONVACCEL_STATS_SIZE"]))
        q.write(JOB_AREA + 0x1000, b"".join(bytes(layer_bytes(chain_layer(i)))
                                            for i in range(LAYERS)))
        job = job_bytes(JOB_AREA + 0x1000, LAYERS, JOB_AREA + 0x800, 12)
        put(job, R["CONVACCEL_JOB_FLAGS_OFF"], R["CONVACCEL_JOB_FLAG_STATS"])
        put(job, R["CONVACCEL_JOB_STATS_OFF"], STATS, 8)
        q.write(JOB_AREA, bytes(job))
        q.writel(reg("INT_ENABLE"), R["CONVACCEL_INT_ALL"])
        q.writel(reg("CMD_ADDR_LO"), JOB_AREA)
        q.writel(reg("DOORBELL"), 1)
        deadline = time.monotonic() + 30
        while not any(q.read(STATS, 8)):                 # the first layer is done
            assert time.monotonic() < deadline
            time.sleep(0.01)
        mon(f'migrate "exec:cat > {state}"')
        assert mon.migration_status() == "completed"
        records = q.read(STATS, LAYERS * R["CONVACCEL_STATS_SIZE"])
        ran = sum(any(records[i * 32:i * 32 + 32]) for i in range(LAYERS))
        assert q.readl(reg("JOBS_DONE")) == 0, "the job ended before the VM stopped"
        assert 0 < ran < LAYERS
    finally:
        assert q.close() is None
    q2, _ = start(tmp_path, "-incoming", f"exec:cat {state}")
    try:
        wait_incoming(q2)
        wait_jobs_done(q2, 1, timeout=60)
        assert q2.readl(reg("LAST_STATUS")) == 0 and q2.readl(reg("LAST_TAG")) == 12
        assert q2.readl(reg("INT_STATUS")) & R["CONVACCEL_INT_DONE"]
        assert not q2.readl(reg("STATUS")) & R["CONVACCEL_STATUS_BUSY"]
        status, layer, tag, done = struct.unpack("<4I", q2.read(JOB_AREA + 0x800, 16))
        assert (status, tag, done) == (0, 12, LAYERS)
        y = np.frombuffer(q2.read(BUF[LAYERS % 2], x.nbytes), np.float32).reshape(x.shape)
        np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-4)
        print(f"stopped after {ran} of {LAYERS} layers; resumed and completed")
    finally:
        assert q2.close() is None


def test_migrate_with_a_queue_of_jobs(tmp_path):
    """QUEUE_DEPTH jobs, each delayed (FAULT_DELAY_US) then a 2-layer conv,
    migrated while some are done, one waits out its delay and the others
    are queued: every job completes on the destination, in order, with the
    right output."""
    ensure_built()
    depth = R["CONVACCEL_QUEUE_DEPTH_VALUE"]
    rng = np.random.default_rng(13)
    state = tmp_path / "queue.bin"
    q, mon = start(tmp_path)
    expected = []
    try:
        q.writel(reg("INT_ENABLE"), R["CONVACCEL_INT_ALL"])
        q.writel(reg("FAULT_DELAY_US"), 400_000)
        for j in range(depth):
            base = DATA_AREA + j * 0x100000
            x = rng.standard_normal((1, 8, 16, 16), dtype=np.float32)
            w = rng.standard_normal((2, 8, 8, 3, 3), dtype=np.float32) / 8
            b = rng.standard_normal((2, 8), dtype=np.float32)
            q.write(base, x.tobytes())
            q.write(base + 0x10000, w.tobytes())
            q.write(base + 0x20000, b.tobytes())
            y = x
            layers = []
            for i in range(2):
                y = ref.conv2d(y, w[i], b[i], padding=1, activation="relu")
                layers.append(layer_bytes(dict(
                    op=R["CONVACCEL_LAYER_OP_CONV"], flags=1 | 1 << 8, n=1, c_in=8, h_in=16,
                    w_in=16, c_out=8, h_out=16, w_out=16, groups=1, kh=3, kw=3, stride_h=1,
                    stride_w=1, dil_h=1, dil_w=1, pad_top=1, pad_bottom=1, pad_left=1,
                    pad_right=1, input=base + i * 0x30000, weight=base + 0x10000 + i * 8 * 72 * 4,
                    bias=base + 0x20000 + i * 32, output=base + 0x30000 + i * 0x30000)))
            expected.append((base + 0x60000, y))
            jd = JOB_AREA + j * 0x4000
            q.write(jd + 0x1000, b"".join(bytes(l) for l in layers))
            q.write(jd, bytes(job_bytes(jd + 0x1000, 2, jd + 0x800, 100 + j)))
            q.writel(reg("CMD_ADDR_LO"), jd)
            q.writel(reg("DOORBELL"), 1)
        time.sleep(0.5)
        mon(f'migrate "exec:cat > {state}"')
        assert mon.migration_status() == "completed"
        assert q.readl(reg("JOBS_DONE")) < depth, "every job ended before the VM stopped"
    finally:
        assert q.close() is None
    q2, _ = start(tmp_path, "-incoming", f"exec:cat {state}")
    try:
        wait_incoming(q2)
        wait_jobs_done(q2, depth, timeout=30)
        assert q2.readl(reg("JOBS_DONE")) == depth
        assert q2.readl(reg("LAST_TAG")) == 100 + depth - 1
        for j, (addr, y) in enumerate(expected):
            jd = JOB_AREA + j * 0x4000
            assert struct.unpack("<4I", q2.read(jd + 0x800, 16)) == (0, JOB, 100 + j, 2)
            got = np.frombuffer(q2.read(addr, y.nbytes), np.float32).reshape(y.shape)
            np.testing.assert_allclose(got, y, rtol=1e-4, atol=1e-4)
    finally:
        assert q2.close() is None


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
