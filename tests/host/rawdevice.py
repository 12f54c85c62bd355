"""The device driven raw through qtest, with no driver: register names,
descriptor encoding from the register header, and a known-good job."""
from __future__ import annotations

import struct
import time

import numpy as np

from pyaccel import reference as ref
from pyaccel import uapi

from conftest import TOP
from qtest import QTest

R = uapi.load(TOP / "include" / "convaccel_regs.h")[1]
BASE = R["CONVACCEL_MMIO_BASE"]
RAM = 0x40000000
RAM_MB = 256

REGS = sorted(v for k, v in R.items() if k.startswith("CONVACCEL_REG_"))
JOB_AREA = RAM + 0x100000       # job descriptors, layer descriptors, results
DATA_AREA = RAM + 0x200000      # tensors


def reg(name: str) -> int:
    return BASE + R[f"CONVACCEL_REG_{name}"]


def put(d: bytearray, off: int, value: int, size: int = 4) -> None:
    d[off:off + size] = (value % (1 << (8 * size))).to_bytes(size, "little")


def layer_bytes(fields: dict[str, int]) -> bytearray:
    d = bytearray(R["CONVACCEL_LAYER_SIZE"])
    for name, value in fields.items():
        off = R[f"CONVACCEL_LAYER_{name.upper()}_OFF"]
        put(d, off, value, 8 if name in ("input", "weight", "bias", "output") else 4)
    return d


def job_bytes(layers_addr: int, count: int, result: int, tag: int) -> bytearray:
    d = bytearray(R["CONVACCEL_JOB_SIZE"])
    put(d, R["CONVACCEL_JOB_MAGIC_OFF"], R["CONVACCEL_JOB_MAGIC"])
    put(d, R["CONVACCEL_JOB_LAYER_COUNT_OFF"], count)
    put(d, R["CONVACCEL_JOB_LAYERS_OFF"], layers_addr, 8)
    put(d, R["CONVACCEL_JOB_RESULT_OFF"], result, 8)
    put(d, R["CONVACCEL_JOB_TAG_OFF"], tag)
    return d


def queue_hung_job(q: QTest, doorbells: int = 1) -> None:
    """Queue a job that hangs (fault injection) until reset, plus more behind it."""
    q.writel(reg("FAULT_CTRL"), R["CONVACCEL_FAULT_HANG"])
    q.write(JOB_AREA, bytes(job_bytes(JOB_AREA + 0x1000, 1, JOB_AREA + 0x800, 1)))
    q.writel(reg("CMD_ADDR_LO"), JOB_AREA)
    q.writel(reg("CMD_ADDR_HI"), 0)
    for _ in range(doorbells):
        q.writel(reg("DOORBELL"), 1)
    assert q.readl(reg("STATUS")) & R["CONVACCEL_STATUS_BUSY"]


def reset(q: QTest) -> None:
    """Reset, no fault injection: the state a checked step starts from."""
    q.writel(reg("CTRL"), R["CONVACCEL_CTRL_RESET"])
    for name in ("FAULT_CTRL", "FAULT_DELAY_US", "FAULT_ERROR_AFTER"):
        q.writel(reg(name), 0)


def wait_jobs_done(q: QTest, count: int, timeout: float = 20) -> None:
    """Wait until JOBS_DONE reaches count; fails the test after timeout seconds."""
    deadline = time.monotonic() + timeout
    while q.readl(reg("JOBS_DONE")) < count:
        assert time.monotonic() < deadline, (
            f"JOBS_DONE {q.readl(reg('JOBS_DONE'))} never reached {count} in {timeout:g} s")
        time.sleep(0.005)


def write_known_job(q: QTest, rng: np.random.Generator, tag: int) -> tuple[int, np.ndarray]:
    """Write a 3x3 conv with bias and ReLU as raw descriptors (job at JOB_AREA,
    tagged `tag`) and enable interrupts, without ringing: (output address,
    expected output)."""
    x = rng.standard_normal((1, 4, 10, 10), dtype=np.float32)
    w = rng.standard_normal((6, 4, 3, 3), dtype=np.float32)
    b = rng.standard_normal(6, dtype=np.float32)
    addr_x, addr_w, addr_b, addr_y = (DATA_AREA + i * 0x10000 for i in range(4))
    for addr, a in ((addr_x, x), (addr_w, w), (addr_b, b)):
        q.write(addr, a.tobytes())
    layer = layer_bytes(dict(op=R["CONVACCEL_LAYER_OP_CONV"], flags=1 | (1 << 8), n=1, c_in=4,
                             h_in=10, w_in=10, c_out=6, h_out=10, w_out=10, groups=1, kh=3,
                             kw=3, stride_h=1, stride_w=1, dil_h=1, dil_w=1, pad_top=1,
                             pad_bottom=1, pad_left=1, pad_right=1, input=addr_x,
                             weight=addr_w, bias=addr_b, output=addr_y))
    q.write(JOB_AREA + 0x1000, bytes(layer))
    q.write(JOB_AREA, bytes(job_bytes(JOB_AREA + 0x1000, 1, JOB_AREA + 0x800, tag)))
    q.writel(reg("INT_ENABLE"), R["CONVACCEL_INT_ALL"])
    return addr_y, ref.conv2d(x, w, b, padding=1, activation="relu")


def run_known_job(q: QTest, rng: np.random.Generator) -> None:
    """A 3x3 conv through raw descriptors: the output must match the oracle."""
    reset(q)
    addr_y, want = write_known_job(q, rng, 77)
    q.writel(reg("CMD_ADDR_LO"), JOB_AREA)
    q.writel(reg("CMD_ADDR_HI"), 0)
    q.writel(reg("DOORBELL"), 1)
    wait_jobs_done(q, 1)
    assert q.readl(reg("LAST_STATUS")) == 0
    assert q.readl(reg("LAST_TAG")) == 77
    assert q.readl(reg("INT_STATUS")) & R["CONVACCEL_INT_DONE"]
    status, layer, tag, done = struct.unpack("<4I", q.read(JOB_AREA + 0x800, 16))
    assert (status, tag, done) == (0, 77, 1)
    y = np.frombuffer(q.read(addr_y, want.nbytes), np.float32).reshape(want.shape)
    np.testing.assert_allclose(y, want, rtol=1e-4, atol=1e-4)




# --- version 2 descriptors ------------------------------------------------------------

LAYER2_U64 = ("weight", "bias", "requant", "lut", "rsvd1")
LAYER2_F32 = ("act_alpha", "act_beta", "qscale")


def packed_strides(n: int, c: int, h: int, w: int) -> tuple[int, int, int, int]:
    return (c * h * w, h * w, w, 1)


def view_bytes(addr: int = 0, dtype: int = 0, strides=(0, 0, 0, 0), rsvd: int = 0) -> bytearray:
    """A 32-byte tensor view: address, data type, strides (n, c, h, w) in elements."""
    d = bytearray(R["CONVACCEL_VIEW_SIZE"])
    put(d, R["CONVACCEL_VIEW_ADDR_OFF"], addr, 8)
    put(d, R["CONVACCEL_VIEW_DTYPE_OFF"], dtype)
    put(d, R["CONVACCEL_VIEW_RSVD_OFF"], rsvd)
    for axis, stride in zip("NCHW", strides):
        put(d, R[f"CONVACCEL_VIEW_STRIDE_{axis}_OFF"], stride)
    return d


def layer2_bytes(fields: dict, in0: bytes = b"", in1: bytes = b"", out: bytes = b"") -> bytearray:
    """A 256-byte v2 layer descriptor; floats (act_alpha, act_beta, qscale) may
    be given as Python floats, or as raw u32 bit patterns (ints)."""
    d = bytearray(R["CONVACCEL_LAYER2_SIZE"])
    for name, value in fields.items():
        off = R[f"CONVACCEL_LAYER2_{name.upper()}_OFF"]
        if name in LAYER2_F32 and isinstance(value, float):
            d[off:off + 4] = struct.pack("<f", value)
        else:
            put(d, off, int(value), 8 if name in LAYER2_U64 else 4)
    for name, view in (("IN0", in0), ("IN1", in1), ("OUT", out)):
        if view:
            off = R[f"CONVACCEL_LAYER2_{name}_OFF"]
            d[off:off + len(view)] = view
    return d
