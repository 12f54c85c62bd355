"""Hardware 2.0 (issue #11) driven raw over qtest, no driver: every v2 op in
float32 and int8 with each activation, against numpy oracles (float32 within
tolerance, int8 exactly equal to docs/hardware.md's formulas, written out
below), on random shapes drawn from a seed with views that read and write
channel slices and strided columns of larger tensors; the channel shuffle by
strided ACT copies; a bad descriptor for every v2 field (status, layer,
memory untouched); v1 and v2 jobs mixed in one queue; counters, statistics
and the cost model's properties; migration of a v2 job mid-run.
fuzz_step_v2() is for the device fuzzer."""
from __future__ import annotations

import math
import random
import struct
import time

import numpy as np
import pytest

from conftest import ensure_built
from qtest import QTest
from rawdevice import (DATA_AREA, JOB_AREA, R, RAM, RAM_MB, job_bytes, layer2_bytes, layer_bytes,
                       packed_strides, put, reg, reset, view_bytes)

V2 = R["CONVACCEL_JOB_FLAG_V2"]
STATS_FLAG = R["CONVACCEL_JOB_FLAG_STATS"]
F32, S8 = R["CONVACCEL_DTYPE_F32"], R["CONVACCEL_DTYPE_S8"]
OP = {name: R[f"CONVACCEL_LAYER_OP_{name}"] for name in (
    "CONV", "MAXPOOL", "AVGPOOL", "ADD", "MUL", "SCALE_SHIFT", "GLOBAL_AVGPOOL",
    "GLOBAL_MAXPOOL", "FC", "QUANTIZE", "DEQUANTIZE", "ACT")}
ERR = {name[len("CONVACCEL_ERR_"):]: v for name, v in R.items() if name.startswith("CONVACCEL_ERR_")}
BIAS, BCAST = R["CONVACCEL_LAYER2_FLAG_BIAS"], R["CONVACCEL_LAYER2_FLAG_BCAST"]
LEAKY, SIGMOID, HSIG, HSWISH = 3, 4, 5, 6
LAYERS_AT = JOB_AREA + 0x1000          # up to 0xF000 bytes of descriptors: 240 v2 layers
RESULT = JOB_AREA + 0x800
DATA_END = RAM + (RAM_MB << 20)

# float32 tolerances: the device sums in float32 (GEMM, any order), numpy in float64
RTOL, ATOL = 1e-4, 1e-4


# --- the spec's int8 arithmetic, in numpy ----------------------------------------------

def rescale(v, m, s) -> np.ndarray:
    """(v * M + 2^(S-1)) >> S in 64 bits, arithmetic shift (numpy int64 wraps)."""
    v, m, s = (np.asarray(a, np.int64) for a in (v, m, s))
    with np.errstate(over="ignore"):
        return (v * m + (np.int64(1) << (s - 1))) >> s


def out8(r, zp_out, lo, hi, lut=None) -> np.ndarray:
    y = np.clip(np.asarray(r, np.int64) + zp_out, lo, hi)
    return (lut[y + 128] if lut is not None else y).astype(np.int8)


def wrap32(v) -> np.ndarray:
    return ((np.asarray(v, np.int64) + (1 << 31)) % (1 << 32)) - (1 << 31)


def multiplier(m: float) -> tuple[int, int]:
    """A real factor m > 0 as (M, S), docs/hardware.md "int8 arithmetic"."""
    f, e = math.frexp(m)
    mm = round(f * (1 << 31))
    if mm == 1 << 31:
        mm, e = 1 << 30, e + 1
    s = 31 - e
    assert 1 <= s <= 62, m
    return mm, s


def quantize_ref(x: np.ndarray, qscale: float, zp: int, lo: int, hi: int, lut=None):
    r = np.rint(x.astype(np.float32) / np.float32(qscale))
    r = np.where(np.isnan(r), 0, r).astype(np.float64)
    y = np.clip(r + zp, lo, hi).astype(np.int64)
    return (lut[y + 128] if lut is not None else y).astype(np.int8)


# --- numpy oracles (float64 for float32 layers, int64 for int8 ones) --------------------

def act_ref(y, act, alpha=0.0, beta=0.0):
    y = np.asarray(y, np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        if act == 1:
            return np.maximum(y, 0)
        if act == 2:
            return np.minimum(np.maximum(y, 0), 6)
        if act == LEAKY:
            return np.where(y >= 0, y, np.float64(np.float32(alpha)) * y)
        if act == SIGMOID:
            return 1 / (1 + np.exp(-y))
        a, b = np.float64(np.float32(alpha)), np.float64(np.float32(beta))
        if act == HSIG:
            return np.minimum(np.maximum(a * y + b, 0), 1)
        if act == HSWISH:
            return y * np.minimum(np.maximum(a * y + b, 0), 1)
    return y


def windows(xp, kh, kw, sh, sw, dh, dw, ho, wo):
    n, c = xp.shape[:2]
    out = np.empty((n, c, kh, kw, ho, wo), xp.dtype)
    for ky in range(kh):
        for kx in range(kw):
            out[:, :, ky, kx] = xp[:, :, ky * dh:ky * dh + (ho - 1) * sh + 1:sh,
                                   kx * dw:kx * dw + (wo - 1) * sw + 1:sw]
    return out


def pad4(x, g, value):
    return np.pad(x, ((0, 0), (0, 0), (g["pad_top"], g["pad_bottom"]),
                      (g["pad_left"], g["pad_right"])), constant_values=value)


def conv_ref(x, w, g):
    """sum over the window of x * w, per group; x already padded-ready (x - zp)."""
    xp = pad4(x, g, 0)
    win = windows(xp, g["kh"], g["kw"], g["stride_h"], g["stride_w"], g["dil_h"], g["dil_w"],
                  g["h_out"], g["w_out"])
    groups, cin_g, cout_g = g["groups"], g["c_in"] // g["groups"], g["c_out"] // g["groups"]
    parts = [np.einsum("nikluv,oikl->nouv", win[:, i * cin_g:(i + 1) * cin_g],
                       w[i * cout_g:(i + 1) * cout_g]) for i in range(groups)]
    return np.concatenate(parts, axis=1)


def pool_ref(x, g, kind, zp=0):
    """kind: 'max' (padding never wins), 'avg' (sum, padding adds 0; float divides)."""
    if kind == "max":
        lowest = -np.inf if x.dtype.kind == "f" else -(1 << 20)
        win = windows(pad4(x, g, lowest), g["kh"], g["kw"], g["stride_h"], g["stride_w"], 1, 1,
                      g["h_out"], g["w_out"])
        return win.max(axis=(2, 3))
    win = windows(pad4(x, g, 0), g["kh"], g["kw"], g["stride_h"], g["stride_w"], 1, 1,
                  g["h_out"], g["w_out"])
    return win.sum(axis=(2, 3))


# --- memory and jobs -------------------------------------------------------------------

class Mem:
    """Bump allocation in the data area; reset per job."""

    def __init__(self) -> None:
        self.top = DATA_AREA

    def alloc(self, nbytes: int, align: int = 64) -> int:
        self.top = (self.top + align - 1) // align * align
        addr, self.top = self.top, self.top + max(nbytes, 1)
        assert self.top < DATA_END - 0x1000
        return addr


NP = {F32: np.float32, S8: np.int8}


class Operand:
    """A tensor view onto a container tensor: a channel slice of a larger tensor,
    columns strided by sw, or the packed tensor itself."""

    def __init__(self, q, mem, rnd, shape, dtype, mode=None):
        self.q, self.shape, self.dtype = q, shape, dtype
        n, c, h, w = shape
        mode = mode or rnd.choice(["packed", "packed", "slice", "slice", "strided"])
        self.extra = rnd.randint(1, 5) if mode != "packed" else 0
        self.c0 = rnd.randint(0, self.extra)
        self.sw = 2 if mode == "strided" else 1
        cb, wb = c + self.extra, w * self.sw
        self.cont_shape = (n, cb, h, wb)
        es = np.dtype(NP[dtype]).itemsize
        self.base = mem.alloc(n * cb * h * wb * es)
        self.addr = self.base + self.c0 * h * wb * es
        self.strides = (cb * h * wb, h * wb, wb, self.sw)
        self.cont = random_tensor(np.random.default_rng(rnd.getrandbits(32)),
                                  self.cont_shape, dtype)

    def view(self) -> bytearray:
        return view_bytes(self.addr, self.dtype, self.strides)

    def logical(self, cont=None):
        cont = self.cont if cont is None else cont
        n, c, h, w = self.shape
        return cont[:, self.c0:self.c0 + c, :, 0:w * self.sw:self.sw]

    def write(self, value=None) -> None:
        if value is not None:
            self.logical()[...] = value
        self.q.write(self.base, self.cont.tobytes())

    def read(self) -> np.ndarray:
        """The view's elements; everything else in the container must be unchanged."""
        raw = self.q.read(self.base, self.cont.nbytes)
        got = np.frombuffer(raw, NP[self.dtype]).reshape(self.cont_shape).copy()
        mask = np.ones(self.cont_shape, bool)
        self.logical(mask)[...] = False
        np.testing.assert_array_equal(got[mask].view(np.uint8) if self.dtype == F32 else got[mask],
                                      self.cont[mask].view(np.uint8) if self.dtype == F32
                                      else self.cont[mask], "bytes outside the output view changed")
        return self.logical(got).copy()


def random_tensor(rng, shape, dtype):
    if dtype == S8:
        return rng.integers(-128, 128, shape, dtype=np.int8)
    return rng.standard_normal(shape, dtype=np.float32)


def job_v2(count: int, tag: int, flags: int = V2, stats: int = 0) -> bytearray:
    job = job_bytes(LAYERS_AT, count, RESULT, tag)
    put(job, R["CONVACCEL_JOB_FLAGS_OFF"], flags)
    put(job, R["CONVACCEL_JOB_STATS_OFF"], stats, 8)
    return job


def submit(q: QTest, job_addr: int, job: bytes, layers_addr: int, layers: bytes) -> None:
    q.write(layers_addr, layers)
    q.write(job_addr, bytes(job))
    q.writel(reg("CMD_ADDR_LO"), job_addr & 0xFFFFFFFF)
    q.writel(reg("CMD_ADDR_HI"), job_addr >> 32)
    q.writel(reg("DOORBELL"), 1)


def wait_done(q: QTest, count: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while q.readl(reg("JOBS_DONE")) < count:
        assert time.monotonic() < deadline, "the job never completed"
        time.sleep(0.002)


def run(q: QTest, layers: list[bytes], tag: int = 1, flags: int = V2, stats: int = 0):
    """Run one job; its result record as a dict."""
    before = q.readl(reg("JOBS_DONE"))
    q.write(RESULT, bytes(64))
    submit(q, JOB_AREA, job_v2(len(layers), tag, flags, stats), LAYERS_AT, b"".join(layers))
    wait_done(q, before + 1)
    f = struct.unpack("<4I5Q", q.read(RESULT, 56))
    return dict(zip(("status", "layer", "tag", "done", "macs", "bytes_read", "bytes_written",
                     "host_ns", "cycles"), f))


@pytest.fixture(scope="module")
def qtest():
    ensure_built()
    q = QTest(memory_mb=RAM_MB, extra=["-d", "guest_errors"])
    yield q
    assert q.close() is None, f"QEMU exited by itself: {q.log.read_text()[-2000:]}"


@pytest.fixture
def q(qtest):
    reset(qtest)
    yield qtest


# --- random layers and their oracles ---------------------------------------------------

GEOM = ("n", "c_in", "h_in", "w_in", "c_out", "h_out", "w_out", "groups", "kh", "kw",
        "stride_h", "stride_w", "dil_h", "dil_w", "pad_top", "pad_bottom", "pad_left", "pad_right")


def flat(n, c, h, w, c_out=None, h_out=None, w_out=None) -> dict:
    return dict(n=n, c_in=c, h_in=h, w_in=w, c_out=c if c_out is None else c_out,
                h_out=h if h_out is None else h_out, w_out=w if w_out is None else w_out,
                groups=1, kh=1, kw=1, stride_h=1, stride_w=1, dil_h=1, dil_w=1,
                pad_top=0, pad_bottom=0, pad_left=0, pad_right=0)


def random_geometry(rnd: random.Random, op: str) -> dict:
    n = rnd.randint(1, 3)
    if op in ("CONV", "MAXPOOL", "AVGPOOL"):
        while True:
            c = rnd.choice([1, 2, 3, 4, 5, 6, 8, 9])
            kh, kw = rnd.randint(1, 4), rnd.randint(1, 4)
            g = dict(n=n, c_in=c, h_in=rnd.randint(1, 13), w_in=rnd.randint(1, 13), kh=kh, kw=kw,
                     stride_h=rnd.randint(1, 3), stride_w=rnd.randint(1, 3), dil_h=1, dil_w=1,
                     groups=1, c_out=c)
            if op == "CONV":
                g["dil_h"], g["dil_w"] = rnd.randint(1, 2), rnd.randint(1, 2)
                pads = [rnd.randint(0, 2) for _ in range(4)]
                g["groups"] = rnd.choice([1, 1, c] + [d for d in range(1, c + 1) if c % d == 0])
                g["c_out"] = g["groups"] * rnd.randint(1, 3)
            else:
                pads = [rnd.randint(0, min(2, k - 1)) for k in (kh, kh, kw, kw)]
            g.update(pad_top=pads[0], pad_bottom=pads[1], pad_left=pads[2], pad_right=pads[3])
            hp = g["h_in"] + pads[0] + pads[1] - (g["dil_h"] * (kh - 1) + 1)
            wp = g["w_in"] + pads[2] + pads[3] - (g["dil_w"] * (kw - 1) + 1)
            if hp >= 0 and wp >= 0:
                g.update(h_out=hp // g["stride_h"] + 1, w_out=wp // g["stride_w"] + 1)
                return g
    if op == "FC":
        return flat(rnd.randint(1, 5), rnd.randint(1, 40), 1, 1, c_out=rnd.randint(1, 30))
    c, h, w = rnd.randint(1, 9), rnd.randint(1, 17), rnd.randint(1, 17)
    if op.startswith("GLOBAL"):
        return flat(n, c, h, w, h_out=1, w_out=1)
    return flat(n, c, h, w)


def act_params(rnd: random.Random, act: int) -> dict:
    if act == LEAKY:
        return dict(act=act, act_alpha=rnd.choice([0.01, 0.2, 1.5]))
    if act in (HSIG, HSWISH):
        return dict(act=act, act_alpha=rnd.choice([1 / 6, 0.2]), act_beta=0.5)
    return dict(act=act)


def build_case(q, mem, rnd, op: str, dtype: int, act: int = 0, lut: bool = False,
               nan: bool = False):
    """A random layer of op: (descriptor, output operand, expected output)."""
    rng = np.random.default_rng(rnd.getrandbits(32))
    g = random_geometry(rnd, op)
    n, c, h, w = g["n"], g["c_in"], g["h_in"], g["w_in"]
    in_dtype = F32 if op == "QUANTIZE" else S8 if op == "DEQUANTIZE" else dtype
    out_dtype = S8 if op == "QUANTIZE" else F32 if op == "DEQUANTIZE" else dtype
    fields = dict(op=OP[op], **g)
    if out_dtype == F32:
        fields.update(act_params(rnd, act))
    x_op = Operand(q, mem, rnd, (n, c, h, w), in_dtype)
    x = x_op.logical().copy()
    if nan and in_dtype == F32:
        x.reshape(-1)[rng.integers(0, x.size, max(1, x.size // 50))] = np.nan
    x_op.write(x)
    out_op = Operand(q, mem, rnd, (n, g["c_out"], g["h_out"], g["w_out"]), out_dtype)
    out_op.write()
    in1 = b""
    int8 = in_dtype == S8 and out_dtype == S8
    zp0 = rnd.randint(-30, 30) if in_dtype == S8 else 0
    q8 = {}
    if out_dtype == S8:
        zp_out = rnd.randint(-20, 20)
        lo = rnd.choice([-128, -128, zp_out, rnd.randint(-128, 0)])
        hi = rnd.choice([127, 127, rnd.randint(max(lo, 0), 127)])
        if op in ("MAXPOOL", "GLOBAL_MAXPOOL"):
            zp_out = zp0
        lo = min(lo, hi)
        table = rng.integers(-128, 128, 256).astype(np.int8) if lut else None
        q8 = dict(zp=zp_out, lo=lo, hi=hi, lut=table)
        fields.update(zp_out=zp_out, act_min=lo, act_max=hi)
        if lut:
            addr = mem.alloc(256)
            q.write(addr, table.tobytes())
            fields["lut"] = addr
    if in_dtype == S8:
        fields["zp_in0"] = zp0
    xi = x.astype(np.int64) - zp0 if in_dtype == S8 else x.astype(np.float64)

    def put_array(a: np.ndarray) -> int:
        addr = mem.alloc(a.nbytes)
        q.write(addr, a.tobytes())
        return addr

    def requant(ms: list[float]) -> int:
        rec = np.array([multiplier(m) for m in ms], np.int32)
        fields["requant"] = put_array(rec)
        return rec

    if op in ("CONV", "FC"):
        cin_g = c // g["groups"]
        k = cin_g * g["kh"] * g["kw"]
        if int8:
            wt = rng.integers(-127, 128, (g["c_out"], cin_g, g["kh"], g["kw"]), dtype=np.int8)
            b = rng.integers(-3000, 3000, g["c_out"]).astype(np.int32)
        else:
            wt = rng.standard_normal((g["c_out"], cin_g, g["kh"], g["kw"]), dtype=np.float32)
            b = rng.standard_normal(g["c_out"], dtype=np.float32)
        fields["weight"] = put_array(wt)
        if rnd.random() < 0.7:
            fields["flags"] = BIAS
            fields["bias"] = put_array(b)
        else:
            b = np.zeros_like(b)
        if op == "FC":
            acc = xi.reshape(n, c) @ wt.reshape(g["c_out"], c).astype(xi.dtype).T
            acc = acc.reshape(n, g["c_out"], 1, 1)
        else:
            acc = conv_ref(xi, wt.astype(xi.dtype), g)
        acc = acc + b.astype(xi.dtype).reshape(1, -1, 1, 1)
        if int8:
            rec = requant([rnd.uniform(0.5, 2) * 40 / (math.sqrt(k) * 5000)
                           for _ in range(g["c_out"])])
            r = rescale(wrap32(acc), rec[:, 0].reshape(1, -1, 1, 1), rec[:, 1].reshape(1, -1, 1, 1))
            expect = out8(r, q8["zp"], q8["lo"], q8["hi"], q8["lut"])
        else:
            expect = acc
    elif op in ("MAXPOOL", "AVGPOOL", "GLOBAL_MAXPOOL", "GLOBAL_AVGPOOL"):
        pg = dict(g)
        if op.startswith("GLOBAL"):
            pg.update(kh=h, kw=w, h_out=1, w_out=1)
        kind = "max" if "MAX" in op else "avg"
        if int8:
            if kind == "max":
                s = pool_ref(x.astype(np.int64), pg, "max")
                expect = out8(s - zp0, q8["zp"], q8["lo"], q8["hi"], q8["lut"])
            else:
                s = pool_ref(xi, pg, "avg")
                rec = requant([rnd.uniform(0.3, 1.5) / (pg["kh"] * pg["kw"])])
                expect = out8(rescale(s, *rec[0]), q8["zp"], q8["lo"], q8["hi"], q8["lut"])
        else:
            s = pool_ref(xi, pg, kind)
            expect = s if kind == "max" else s / (pg["kh"] * pg["kw"])
    elif op in ("ADD", "MUL"):
        bcast = op == "MUL" and rnd.random() < 0.5
        shape1 = (n, c, 1, 1) if bcast else (n, c, h, w)
        y_op = Operand(q, mem, rnd, shape1, dtype)
        y = y_op.logical().copy()
        y_op.write(y)
        in1 = y_op.view()
        if bcast:
            fields["flags"] = BCAST
        zp1 = rnd.randint(-30, 30) if int8 else 0
        yi = y.astype(np.int64) - zp1 if int8 else y.astype(np.float64)
        if int8:
            fields["zp_in1"] = zp1
            if op == "ADD":
                s0, s1, so = rnd.uniform(0.5, 2), rnd.uniform(0.5, 2), rnd.uniform(0.5, 3)
                mx = 2 * max(s0, s1)
                rec = requant([s0 / mx, s1 / mx, mx / ((1 << 20) * so)])
                a = rescale(xi << 20, *rec[0])
                bb = rescale(yi << 20, *rec[1])
                expect = out8(rescale(a + bb, *rec[2]), q8["zp"], q8["lo"], q8["hi"], q8["lut"])
            else:
                rec = requant([rnd.uniform(0.002, 0.02)])
                expect = out8(rescale(xi * yi, *rec[0]), q8["zp"], q8["lo"], q8["hi"], q8["lut"])
        else:
            expect = xi + yi if op == "ADD" else xi * yi
    elif op == "SCALE_SHIFT":
        if int8:
            sc = rng.integers(-127, 128, c).astype(np.int8)
            sh = rng.integers(-5000, 5000, c).astype(np.int32)
            rec = requant([rnd.uniform(0.002, 0.02) for _ in range(c)])
            acc = xi * sc.reshape(1, -1, 1, 1) + sh.reshape(1, -1, 1, 1)
            expect = out8(rescale(acc, rec[:, 0].reshape(1, -1, 1, 1), rec[:, 1].reshape(1, -1, 1, 1)),
                          q8["zp"], q8["lo"], q8["hi"], q8["lut"])
        else:
            sc = rng.standard_normal(c, dtype=np.float32)
            sh = rng.standard_normal(c, dtype=np.float32)
            expect = xi * sc.reshape(1, -1, 1, 1) + sh.reshape(1, -1, 1, 1)
        fields["weight"], fields["bias"] = put_array(sc), put_array(sh)
    elif op == "QUANTIZE":
        qs = rnd.uniform(0.005, 0.05)
        fields["qscale"] = qs
        qs = float(np.float32(qs))
        expect = quantize_ref(x, qs, q8["zp"], q8["lo"], q8["hi"], q8["lut"])
    elif op == "DEQUANTIZE":
        qs = rnd.uniform(0.005, 0.05)
        fields["qscale"] = qs
        expect = (x.astype(np.float32) - np.float32(zp0)).astype(np.float32) * np.float32(qs)
        expect = expect.astype(np.float64)
    else:   # ACT
        if int8:
            rec = requant([rnd.uniform(0.3, 2)])
            expect = out8(rescale(xi, *rec[0]), q8["zp"], q8["lo"], q8["hi"], q8["lut"])
        else:
            expect = xi
    if out_dtype == F32:
        expect = act_ref(expect, fields.get("act", 0), fields.get("act_alpha", 0.0),
                         fields.get("act_beta", 0.0))
    desc = layer2_bytes(fields, x_op.view(), in1, out_op.view())
    return desc, out_op, expect


def check(got, expect, out_dtype, what):
    if out_dtype == S8:
        np.testing.assert_array_equal(got, expect, err_msg=what)
    else:
        scale = max(1.0, float(np.nanmax(np.abs(expect))) if np.isfinite(expect).any() else 1.0)
        np.testing.assert_allclose(got, expect.astype(np.float32), rtol=RTOL, atol=ATOL * scale,
                                   equal_nan=True, err_msg=what)


FLOAT_OPS = ["CONV", "MAXPOOL", "AVGPOOL", "ADD", "MUL", "SCALE_SHIFT", "GLOBAL_AVGPOOL",
             "GLOBAL_MAXPOOL", "FC", "ACT"]


@pytest.mark.parametrize("op", FLOAT_OPS + ["DEQUANTIZE"])
def test_float32_op_every_activation(q, op):
    """Each float32 op (and DEQUANTIZE) with each activation, shapes and views
    drawn at random, sometimes NaN in the input (it propagates)."""
    rnd = random.Random(f"f32-{op}")
    for trial in range(14):
        act = trial % 7
        mem = Mem()
        desc, out, expect = build_case(q, mem, rnd, op, F32, act, nan=trial >= 7 and trial % 2 == 0)
        r = run(q, [desc], tag=trial)
        assert (r["status"], r["done"]) == (0, 1), (op, trial, r)
        check(out.read(), expect, F32, f"{op} trial {trial} act {act}")


@pytest.mark.parametrize("op", FLOAT_OPS + ["QUANTIZE"])
def test_int8_op_is_exact(q, op):
    """Each int8 op (and QUANTIZE), with clamps and lookup tables, bit for bit."""
    rnd = random.Random(f"s8-{op}")
    for trial in range(10):
        mem = Mem()
        desc, out, expect = build_case(q, mem, rnd, op, S8, lut=trial % 3 == 1,
                                       nan=trial % 2 == 0)
        r = run(q, [desc], tag=trial)
        assert (r["status"], r["done"]) == (0, 1), (op, trial, r)
        check(out.read(), expect, S8, f"{op} trial {trial}")


def test_many_layers_in_one_job(q):
    """Random layers of every op and both types in one job."""
    rnd = random.Random(7)
    mem = Mem()
    cases = []
    for i in range(40):
        op = rnd.choice(FLOAT_OPS + ["QUANTIZE", "DEQUANTIZE"])
        dtype = rnd.choice([F32, S8])
        cases.append(build_case(q, mem, rnd, op, dtype, rnd.randrange(7), lut=rnd.random() < 0.3))
    r = run(q, [c[0] for c in cases], tag=5)
    assert (r["status"], r["done"]) == (0, 40)
    for i, (desc, out, expect) in enumerate(cases):
        check(out.read(), expect, out.dtype, f"layer {i}")


def test_quantize_rounds_half_to_even_and_nan_is_the_zero_point(q):
    mem = Mem()
    x = np.array([0.5, 1.5, 2.5, -0.5, -1.5, np.nan, np.inf, -np.inf, 1e30, 3.49, 126.5, -200],
                 np.float32).reshape(1, 12, 1, 1)
    xa, ya = mem.alloc(x.nbytes), mem.alloc(12)
    q.write(xa, x.tobytes())
    q.write(ya, bytes(12))
    desc = layer2_bytes(dict(op=OP["QUANTIZE"], **flat(1, 12, 1, 1), zp_out=3, act_min=-128,
                             act_max=127, qscale=1.0),
                        view_bytes(xa, F32, packed_strides(1, 12, 1, 1)), b"",
                        view_bytes(ya, S8, packed_strides(1, 12, 1, 1)))
    assert run(q, [desc])["status"] == 0
    got = np.frombuffer(q.read(ya, 12), np.int8)
    assert got.tolist() == [3, 5, 5, 3, 1, 3, 127, -128, 127, 6, 127, -128]


def test_channel_shuffle_by_strided_act_copies(q):
    """ShuffleNet's shuffle: g ACT layers, each copying k channels with an
    output channel stride of g * h * w; then a float and an int8 variant."""
    for dtype in (F32, S8):
        rng = np.random.default_rng(3)
        n, g, k, h, w = 2, 3, 5, 7, 6
        c = g * k
        x = random_tensor(rng, (n, c, h, w), dtype)
        es = x.itemsize
        mem = Mem()
        xa, ya = mem.alloc(x.nbytes), mem.alloc(x.nbytes)
        q.write(xa, x.tobytes())
        q.write(ya, bytes(x.nbytes))
        layers = []
        for i in range(g):
            fields = dict(op=OP["ACT"], **flat(n, k, h, w))
            if dtype == S8:
                rec = np.array([[1 << 30, 30]], np.int32)        # m = 2^30 / 2^30 = 1: a copy
                ra = mem.alloc(8)
                q.write(ra, rec.tobytes())
                fields.update(requant=ra, act_min=-128, act_max=127)
            layers.append(layer2_bytes(
                fields, view_bytes(xa + i * k * h * w * es, dtype, (c * h * w, h * w, w, 1)), b"",
                view_bytes(ya + i * h * w * es, dtype, (c * h * w, g * h * w, w, 1))))
        assert run(q, layers)["status"] == 0
        y = np.frombuffer(q.read(ya, x.nbytes), x.dtype).reshape(x.shape)
        expect = x.reshape(n, g, k, h, w).transpose(0, 2, 1, 3, 4).reshape(n, c, h, w)
        np.testing.assert_array_equal(y, expect)


def test_concat_by_output_slices_and_in_place(q):
    """Two convs write channel slices of one tensor (concatenation), then an
    ACT runs in place over the whole (output over its input)."""
    rng = np.random.default_rng(4)
    n, c, h, w = 2, 3, 5, 5
    x = rng.standard_normal((n, c, h, w), dtype=np.float32)
    w1 = rng.standard_normal((4, c, 1, 1), dtype=np.float32)
    w2 = rng.standard_normal((2, c, 1, 1), dtype=np.float32)
    mem = Mem()
    xa, w1a, w2a, ya = (mem.alloc(a) for a in (x.nbytes, w1.nbytes, w2.nbytes, n * 6 * h * w * 4))
    q.write(xa, x.tobytes())
    q.write(w1a, w1.tobytes())
    q.write(w2a, w2.tobytes())
    big = (6 * h * w, h * w, w, 1)
    xv = view_bytes(xa, F32, packed_strides(n, c, h, w))
    layers = [layer2_bytes(dict(op=OP["CONV"], **flat(n, c, h, w, c_out=4), weight=w1a), xv, b"",
                           view_bytes(ya, F32, big)),
              layer2_bytes(dict(op=OP["CONV"], **flat(n, c, h, w, c_out=2), weight=w2a), xv, b"",
                           view_bytes(ya + 4 * h * w * 4, F32, big)),
              layer2_bytes(dict(op=OP["ACT"], act=1, **flat(n, 6, h, w)), view_bytes(ya, F32, big),
                           b"", view_bytes(ya, F32, big))]
    assert run(q, layers)["status"] == 0
    y = np.frombuffer(q.read(ya, n * 6 * h * w * 4), np.float32).reshape(n, 6, h, w)
    expect = np.concatenate([np.einsum("nchw,oc->nohw", x, w1[:, :, 0, 0]),
                             np.einsum("nchw,oc->nohw", x, w2[:, :, 0, 0])], axis=1)
    np.testing.assert_allclose(y, np.maximum(expect, 0), rtol=1e-5, atol=1e-5)


# --- counters, statistics, cost model --------------------------------------------------

def model(op, g, int8, nbytes, p=None):
    p = {**dict(array=32, int8=4, dma=16, lanes=32, layer=256), **(p or {})}
    a = p["array"]
    pos = g["n"] * g["h_out"] * g["w_out"] * g["kh"] * g["kw"]
    if op in ("CONV", "FC"):
        cin_g, cout_g = g["c_in"] // g["groups"], g["c_out"] // g["groups"]
        if g["groups"] > 1 and cin_g == 1 and cout_g == 1:
            comp = pos * -(-g["c_in"] // a)
        else:
            comp = pos * g["groups"] * -(-cin_g // a) * -(-cout_g // a)
        if int8:
            comp = -(-comp // p["int8"])
    else:
        taps = g["h_in"] * g["w_in"] if op.startswith("GLOBAL") else g["kh"] * g["kw"]
        comp = -(-(g["n"] * g["c_out"] * g["h_out"] * g["w_out"] * taps) // p["lanes"])
    return max(comp, -(-nbytes // p["dma"])) + p["layer"]


def test_counters_stats_and_cycles(q):
    """macs, bytes (int8 elements 1 byte, tables counted) and cycles per layer."""
    mem = Mem()
    g1 = dict(flat(2, 64, 1, 1), kh=3, kw=3, h_in=9, w_in=9, h_out=7, w_out=7, groups=64, c_out=64)
    g2 = flat(3, 40, 1, 1, c_out=70)
    x1, w1, y1 = mem.alloc(2 * 64 * 81), mem.alloc(64 * 9), mem.alloc(2 * 64 * 49)
    rq1 = mem.alloc(64 * 8)
    q.write(rq1, np.tile(np.array([1 << 30, 40], np.int32), 64).tobytes())
    x2, w2, b2, y2 = mem.alloc(3 * 40 * 4), mem.alloc(70 * 40 * 4), mem.alloc(70 * 4), mem.alloc(210 * 4)
    stats = mem.alloc(64)
    layers = [
        layer2_bytes(dict(op=OP["CONV"], **g1, weight=w1, requant=rq1, act_min=-128, act_max=127),
                     view_bytes(x1, S8, packed_strides(2, 64, 9, 9)), b"",
                     view_bytes(y1, S8, packed_strides(2, 64, 7, 7))),
        layer2_bytes(dict(op=OP["FC"], flags=BIAS, **g2, weight=w2, bias=b2),
                     view_bytes(x2, F32, packed_strides(3, 40, 1, 1)), b"",
                     view_bytes(y2, F32, packed_strides(3, 70, 1, 1)))]
    r = run(q, layers, flags=V2 | STATS_FLAG, stats=stats)
    assert r["status"] == 0
    macs1, macs2 = 2 * 64 * 49 * 9, 3 * 70 * 40
    rd1, wr1 = 2 * 64 * 81 + 64 * 9 + 64 * 8, 2 * 64 * 49
    rd2, wr2 = 3 * 40 * 4 + 70 * 40 * 4 + 70 * 4, 210 * 4
    assert r["macs"] == macs1 + macs2
    assert (r["bytes_read"], r["bytes_written"]) == (rd1 + rd2, wr1 + wr2)
    c1 = model("CONV", g1, True, rd1 + wr1)
    c2 = model("FC", g2, False, rd2 + wr2)
    assert r["cycles"] == 1024 + c1 + c2
    recs = np.frombuffer(q.read(stats, 64), np.uint64).reshape(2, 4)
    assert recs[:, 1].tolist() == [c1, c2]
    assert recs[:, 2].tolist() == [macs1, macs2]
    assert recs[:, 3].tolist() == [rd1 + wr1, rd2 + wr2]


def test_cost_model_properties():
    ensure_built()
    props = dict(array=16, int8=2, dma=8, lanes=8, layer=100)
    q = QTest(memory_mb=RAM_MB, extra=[
        "-global", "convaccel.model-array=16", "-global", "convaccel.model-int8-factor=2",
        "-global", "convaccel.model-dma-bytes=8", "-global", "convaccel.model-pool-lanes=8",
        "-global", "convaccel.model-layer-cycles=100", "-global", "convaccel.model-job-cycles=7"])
    try:
        mem = Mem()
        g = dict(flat(1, 40, 6, 6, c_out=20), kh=3, kw=3, h_out=4, w_out=4)
        x, w, y = mem.alloc(40 * 36), mem.alloc(20 * 40 * 9), mem.alloc(20 * 16)
        rq = mem.alloc(20 * 8)
        q.write(rq, np.tile(np.array([1 << 30, 40], np.int32), 20).tobytes())
        yp = mem.alloc(20 * 16 * 4)
        layers = [layer2_bytes(dict(op=OP["CONV"], **g, weight=w, requant=rq, act_min=-128,
                                    act_max=127),
                               view_bytes(x, S8, packed_strides(1, 40, 6, 6)), b"",
                               view_bytes(y, S8, packed_strides(1, 20, 4, 4))),
                  layer2_bytes(dict(op=OP["DEQUANTIZE"], **flat(1, 20, 4, 4), qscale=0.5),
                               view_bytes(y, S8, packed_strides(1, 20, 4, 4)), b"",
                               view_bytes(yp, F32, packed_strides(1, 20, 4, 4)))]
        r = run(q, layers)
        assert r["status"] == 0
        b1 = 40 * 36 + 20 * 40 * 9 + 20 * 8 + 20 * 16
        b2 = 20 * 16 + 20 * 16 * 4
        assert r["cycles"] == 7 + model("CONV", g, True, b1, props) + \
            model("DEQUANTIZE", flat(1, 20, 4, 4), False, b2, props)
    finally:
        assert q.close() is None


def test_caps_and_version(q):
    assert q.readl(reg("VERSION")) == 0x00020000
    assert q.readl(reg("CAPS")) == 0x7FF


# --- validation ------------------------------------------------------------------------

def base_layers(q, mem):
    """Valid layers to mutate, by name: their fields and views."""
    n, c, h, w = 2, 4, 6, 6
    xa, ya = mem.alloc(n * c * h * w * 4), mem.alloc(n * 8 * h * w * 4)
    x1 = mem.alloc(n * c * h * w * 4)
    wa, ba, rq, lut = mem.alloc(8 * c * 9), mem.alloc(8 * 4), mem.alloc(8 * 8), mem.alloc(256)
    q.write(rq, np.tile(np.array([1 << 30, 40], np.int32), 8).tobytes())
    pk = packed_strides(n, c, h, w)
    f_in, s_in = view_bytes(xa, F32, pk), view_bytes(xa, S8, pk)
    conv_g = dict(flat(n, c, h, w, c_out=8), kh=3, kw=3, pad_top=1, pad_bottom=1, pad_left=1,
                  pad_right=1)
    return {
        "conv_s8": (dict(op=OP["CONV"], flags=BIAS, **conv_g, weight=wa, bias=ba, requant=rq,
                         lut=lut, zp_in0=3, zp_out=-2, act_min=-100, act_max=100),
                    s_in, b"", view_bytes(ya, S8, packed_strides(n, 8, h, w))),
        "mul_f32": (dict(op=OP["MUL"], **flat(n, c, h, w), act=1), f_in,
                    view_bytes(x1, F32, pk), view_bytes(ya, F32, pk)),
        "add_s8": (dict(op=OP["ADD"], **flat(n, c, h, w), requant=rq, zp_in0=1, zp_in1=2,
                        act_min=-128, act_max=127), s_in, view_bytes(x1, S8, pk),
                   view_bytes(ya, S8, pk)),
        "quant": (dict(op=OP["QUANTIZE"], **flat(n, c, h, w), qscale=0.1, act_min=-128,
                       act_max=127), f_in, b"", view_bytes(ya, S8, pk)),
        "leaky": (dict(op=OP["ACT"], **flat(n, c, h, w), act=LEAKY, act_alpha=0.1), f_in, b"",
                  view_bytes(ya, F32, pk)),
        "maxpool_s8": (dict(op=OP["MAXPOOL"], **dict(conv_g, c_out=c), zp_in0=5, zp_out=5,
                            act_min=-128, act_max=127), s_in, b"",
                       view_bytes(ya, S8, packed_strides(n, c, h, w))),
        "fc_f32": (dict(op=OP["FC"], **flat(n, 24, 1, 1, c_out=8), weight=wa), 
                   view_bytes(xa, F32, (24, 1, 1, 1)), b"", view_bytes(ya, F32, (8, 1, 1, 1))),
        "gap_f32": (dict(op=OP["GLOBAL_AVGPOOL"], **flat(n, c, h, w, h_out=1, w_out=1)), f_in,
                    b"", view_bytes(ya, F32, (c, 1, 1, 1))),
        "ss_s8": (dict(op=OP["SCALE_SHIFT"], **flat(n, c, h, w), weight=wa, bias=ba, requant=rq,
                       act_min=-128, act_max=127), s_in, b"", view_bytes(ya, S8, pk)),
    }


def vset(view: bytes, name: str, value: int) -> bytearray:
    v = bytearray(view)
    off = R[f"CONVACCEL_VIEW_{name.upper()}_OFF"]
    put(v, off, value, 8 if name == "addr" else 4)
    return v


FAR = RAM + (RAM_MB << 20) - 8      # the last 8 bytes of RAM: ranges run past its end

# (name, base, field changes, view changes {in0/in1/out: {field: value}}, status)
BAD = [
    ("op 0", "mul_f32", dict(op=0), {}, "OP"),
    ("op 13", "mul_f32", dict(op=13), {}, "OP"),
    ("rsvd0", "mul_f32", dict(rsvd0=1), {}, "RESERVED"),
    ("rsvd1", "conv_s8", dict(rsvd1=1 << 40), {}, "RESERVED"),
    ("in0 rsvd", "mul_f32", {}, dict(in0=dict(rsvd=1)), "RESERVED"),
    ("in1 rsvd", "mul_f32", {}, dict(in1=dict(rsvd=1)), "RESERVED"),
    ("out rsvd", "conv_s8", {}, dict(out=dict(rsvd=1)), "RESERVED"),
    ("unknown flag", "mul_f32", dict(flags=4), {}, "RESERVED"),
    ("BIAS on MUL", "mul_f32", dict(flags=BIAS), {}, "RESERVED"),
    ("BCAST on CONV", "conv_s8", dict(flags=BIAS | BCAST), {}, "RESERVED"),
    ("act 7", "mul_f32", dict(act=7), {}, "RESERVED"),
    ("act on int8 output", "conv_s8", dict(act=1), {}, "RESERVED"),
    ("alpha unused", "mul_f32", dict(act_alpha=0.5), {}, "RESERVED"),
    ("beta unused", "leaky", dict(act_beta=0.5), {}, "RESERVED"),
    ("weight missing", "conv_s8", dict(weight=0), {}, "RESERVED"),
    ("weight unused", "mul_f32", dict(weight=DATA_AREA), {}, "RESERVED"),
    ("bias without BIAS", "conv_s8", dict(flags=0), {}, "RESERVED"),
    ("BIAS without bias", "conv_s8", dict(bias=0), {}, "RESERVED"),
    ("scale_shift without shift", "ss_s8", dict(bias=0), {}, "RESERVED"),
    ("requant missing", "conv_s8", dict(requant=0), {}, "RESERVED"),
    ("requant unused (float)", "mul_f32", dict(requant=DATA_AREA), {}, "RESERVED"),
    ("requant unused (maxpool)", "maxpool_s8", dict(requant=DATA_AREA), {}, "RESERVED"),
    ("lut with float output", "mul_f32", dict(lut=DATA_AREA), {}, "RESERVED"),
    ("in1 on a unary op", "conv_s8", {}, dict(in1=dict(addr=DATA_AREA)), "RESERVED"),
    ("in1 address 0", "mul_f32", {}, dict(in1=dict(addr=0)), "RESERVED"),
    ("zp_in0 with float input", "mul_f32", dict(zp_in0=1), {}, "RESERVED"),
    ("zp_in1 on a unary op", "conv_s8", dict(zp_in1=1), {}, "RESERVED"),
    ("zp_out with float output", "mul_f32", dict(zp_out=1), {}, "RESERVED"),
    ("act_max with float output", "leaky", dict(act_max=1), {}, "RESERVED"),
    ("qscale unused", "mul_f32", dict(qscale=1.0), {}, "RESERVED"),
    ("qscale 0", "quant", dict(qscale=0), {}, "RESERVED"),
    ("dtype 2", "mul_f32", {}, dict(in0=dict(dtype=2)), "SHAPE"),
    ("in1 dtype differs", "mul_f32", {}, dict(in1=dict(dtype=S8)), "SHAPE"),
    ("int8 in, float out conv", "conv_s8", {}, dict(out=dict(dtype=F32)), "SHAPE"),
    ("quantize from int8", "quant", {}, dict(in0=dict(dtype=S8)), "SHAPE"),
    ("zp_in0 200", "conv_s8", dict(zp_in0=200), {}, "SHAPE"),
    ("zp_out -129", "conv_s8", dict(zp_out=-129), {}, "SHAPE"),
    ("act_min > act_max", "conv_s8", dict(act_min=10, act_max=9), {}, "SHAPE"),
    ("act_max 128", "conv_s8", dict(act_max=128), {}, "SHAPE"),
    ("qscale negative", "quant", dict(qscale=-0.5), {}, "SHAPE"),
    ("qscale inf", "quant", dict(qscale=0x7F800000), {}, "SHAPE"),
    ("qscale nan", "quant", dict(qscale=0x7FC00000), {}, "SHAPE"),
    ("int8 maxpool changes the zero point", "maxpool_s8", dict(zp_out=4), {}, "SHAPE"),
    ("mul h_out", "mul_f32", dict(h_out=5), {}, "SHAPE"),
    ("mul c_out", "mul_f32", dict(c_out=5), {}, "SHAPE"),
    ("fc h_in", "fc_f32", dict(h_in=2), {}, "SHAPE"),
    ("global pool h_out", "gap_f32", dict(h_out=2), {}, "SHAPE"),
    ("add groups", "add_s8", dict(groups=2), {}, "SHAPE"),
    ("n 0", "add_s8", dict(n=0), {}, "SHAPE"),
    ("add kernel", "add_s8", dict(kh=3), {}, "KERNEL"),
    ("add stride", "mul_f32", dict(stride_w=2), {}, "KERNEL"),
    ("add padding", "add_s8", dict(pad_left=1), {}, "PAD"),
    ("conv groups 3", "conv_s8", dict(groups=3), {}, "GROUPS"),
    ("conv kernel 17", "conv_s8", dict(kh=17), {}, "KERNEL"),
    ("output view aliases (stride 0)", "mul_f32", {}, dict(out=dict(stride_w=0)), "SHAPE"),
    ("output view aliases (c inside w)", "conv_s8", {},
     dict(out=dict(stride_c=3, stride_w=1)), "SHAPE"),
    ("view extent too large", "mul_f32", {}, dict(in0=dict(stride_n=1 << 31)), "TOO_LARGE"),
    ("in0 misaligned", "mul_f32", {}, dict(in0=dict(addr=DATA_AREA + 2)), "DMA"),
    ("out misaligned", "mul_f32", {}, dict(out=dict(addr=DATA_AREA + 1)), "DMA"),
    ("in0 not RAM", "mul_f32", {}, dict(in0=dict(addr=0x1000)), "DMA"),
    ("in1 past RAM", "add_s8", {}, dict(in1=dict(addr=FAR)), "DMA"),
    ("out past RAM", "conv_s8", {}, dict(out=dict(addr=FAR)), "DMA"),
    ("weight past RAM", "conv_s8", dict(weight=FAR), {}, "DMA"),
    ("bias past RAM", "ss_s8", dict(bias=FAR), {}, "DMA"),
    ("bias misaligned", "conv_s8", dict(bias=DATA_AREA + 2), {}, "DMA"),
    ("requant past RAM", "conv_s8", dict(requant=FAR), {}, "DMA"),
    ("requant misaligned", "conv_s8", dict(requant=DATA_AREA + 2), {}, "DMA"),
    ("lut past RAM", "conv_s8", dict(lut=FAR), {}, "DMA"),
]

RQ_BAD = [("S 0", (1 << 30, 0)), ("S 63", (1 << 30, 63)), ("M negative", (-1, 20))]


def mutate(base, changes, vchanges):
    fields, in0, in1, out = base
    fields = dict(fields, **changes)
    views = dict(in0=in0, in1=in1, out=out)
    for name, vc in vchanges.items():
        v = views[name] or view_bytes()
        for field, value in vc.items():
            v = vset(v, field, value)
        views[name] = v
    return layer2_bytes(fields, views["in0"], views["in1"], views["out"])


def check_refused(q, mem, layer, status, what):
    """[good layer, bad layer, good layer]: the job fails at layer 1 with status,
    and no output is written (not even layer 0's)."""
    good_in, good_out = mem.alloc(64 * 4), mem.alloc(64 * 4)
    q.write(good_in, np.ones(64, np.float32).tobytes())
    sentinel = bytes(range(256))
    q.write(good_out, sentinel)
    good = layer2_bytes(dict(op=OP["ACT"], **flat(1, 64, 1, 1)),
                        view_bytes(good_in, F32, (64, 1, 1, 1)), b"",
                        view_bytes(good_out, F32, (64, 1, 1, 1)))
    ya = DATA_AREA + 0x100000
    before = q.read(ya, 0x4000)
    r = run(q, [good, layer, good], tag=99)
    assert (r["status"], r["layer"], r["done"]) == (ERR[status], 1, 0), (what, r)
    assert q.read(good_out, 256) == sentinel, what
    assert q.read(ya, 0x4000) == before, what


def test_bad_descriptors_are_refused_touching_nothing(q):
    mem = Mem()
    mem.top = DATA_AREA + 0x100000       # base layers' outputs start here (ya)
    bases = base_layers(q, mem)
    q.write(DATA_AREA + 0x100000, bytes(range(256)) * 16)
    for name, fields, in0, in1, out in [(k, *v) for k, v in bases.items()]:
        r = run(q, [layer2_bytes(fields, in0, in1, out)])
        assert r["status"] == 0, (name, r)
    q.write(DATA_AREA + 0x100000, bytes(range(256)) * 16)
    log_before = len(q.log.read_text().splitlines())
    for what, base, changes, vchanges, status in BAD:
        check_refused(q, mem, mutate(bases[base], changes, vchanges), status, what)
    rq_addr = dict(bases["conv_s8"][0])["requant"]
    for what, rec in RQ_BAD:
        bad = np.tile(np.array([1 << 30, 40], np.int32), 8)
        bad[10:12] = rec                                    # record 5 of 8
        q.write(rq_addr, bad.tobytes())
        check_refused(q, mem, mutate(bases["conv_s8"], {}, {}), "DMA", what)
    q.write(rq_addr, np.tile(np.array([1 << 30, 40], np.int32), 8).tobytes())
    log = q.log.read_text().splitlines()[log_before:]
    failures = [line for line in log if "layer 1:" in line]
    assert len(failures) >= len(BAD) + len(RQ_BAD), log[-5:]


def test_v2_job_flag_unknown_bits_and_work_limit(q):
    mem = Mem()
    xa = mem.alloc(64)
    layer = layer2_bytes(dict(op=OP["ACT"], **flat(1, 4, 1, 1)), view_bytes(xa, F32, (4, 1, 1, 1)),
                         b"", view_bytes(xa, F32, (4, 1, 1, 1)))
    r = run(q, [layer], flags=V2 | 4)
    assert (r["status"], r["layer"]) == (ERR["RESERVED"], R["CONVACCEL_RESULT_LAYER_JOB"])
    # a v1 job reading v2 descriptors: op 12 is not a v1 op
    r = run(q, [layer[:128]], flags=0)
    assert r["status"] in (ERR["OP"], ERR["RESERVED"])
    # work: 1x1 int8 convs of 2^38 MACs each (8192 -> 8192 channels, 64 x 64):
    # the fifth takes the job above 2^40
    w_addr, out_addr, rq_addr = DATA_AREA + 0x100000, DATA_AREA + 0x4200000, DATA_AREA + 0x6400000
    q.write(rq_addr, np.tile(np.array([1 << 30, 40], np.int32), 8192).tobytes())
    big = layer2_bytes(dict(op=OP["CONV"], **flat(1, 8192, 64, 64), weight=w_addr, requant=rq_addr,
                            act_min=-128, act_max=127),
                       view_bytes(xa, S8, (0, 0, 0, 0)), b"",
                       view_bytes(out_addr, S8, packed_strides(1, 8192, 64, 64)))
    r = run(q, [big] * 6)
    assert (r["status"], r["layer"]) == (ERR["TOO_LARGE"], 4)


def test_v1_and_v2_jobs_mixed_in_one_queue(q):
    rnd = random.Random(11)
    rng = np.random.default_rng(11)
    jobs = []
    mem = Mem()
    for j in range(R["CONVACCEL_QUEUE_DEPTH_VALUE"]):
        area = JOB_AREA + 0x20000 + j * 0x8000
        if j % 2:
            desc, out, expect = build_case(q, mem, rnd, rnd.choice(FLOAT_OPS), rnd.choice([F32, S8]),
                                           rnd.randrange(7))
            job = job_bytes(area + 0x1000, 1, area + 0x800, j)
            put(job, R["CONVACCEL_JOB_FLAGS_OFF"], V2)
            jobs.append((area, job, desc, lambda o=out, e=expect: check(o.read(), e, o.dtype, "v2")))
        else:
            x = rng.standard_normal((1, 3, 8, 8), dtype=np.float32)
            xa, ya = mem.alloc(x.nbytes), mem.alloc(3 * 16 * 4)
            q.write(xa, x.tobytes())
            desc = layer_bytes(dict(op=OP["MAXPOOL"], n=1, c_in=3, h_in=8, w_in=8, c_out=3,
                                    h_out=4, w_out=4, groups=1, kh=2, kw=2, stride_h=2,
                                    stride_w=2, dil_h=1, dil_w=1, input=xa, output=ya))
            expect = x.reshape(1, 3, 4, 2, 4, 2).max(axis=(3, 5))
            job = job_bytes(area + 0x1000, 1, area + 0x800, j)
            jobs.append((area, job, desc, lambda ya=ya, e=expect: np.testing.assert_array_equal(
                np.frombuffer(q.read(ya, e.nbytes), np.float32).reshape(e.shape), e)))
    before = q.readl(reg("JOBS_DONE"))
    q.writel(reg("FAULT_DELAY_US"), 20000)       # they queue up behind the first
    for area, job, desc, _ in jobs:
        submit(q, area, job, area + 0x1000, bytes(desc))
    q.writel(reg("FAULT_DELAY_US"), 0)
    wait_done(q, before + len(jobs))
    for j, (area, job, desc, verify) in enumerate(jobs):
        status, layer, tag, done = struct.unpack("<4I", q.read(area + 0x800, 16))
        assert (status, tag, done) == (0, j, 1)
        verify()


# --- migration -------------------------------------------------------------------------

def test_migrate_a_v2_job_mid_run(tmp_path):
    """A v2 job of 48 layers (float conv then int8 quantize/conv/dequantize
    rounds, ping-pong buffers in strided views), migrated while it runs; the
    destination resumes it and the result equals an unmigrated run."""
    from test_migration import start, wait_incoming
    ensure_built()
    rng = np.random.default_rng(21)
    ch, hw, rounds = 96, 48, 16
    buf = [DATA_AREA + i * 0x400000 for i in range(3)]
    w_f = DATA_AREA + 0xC00000
    w_s = DATA_AREA + 0xE00000
    rq = DATA_AREA + 0xF00000
    stats = JOB_AREA + 0x40000
    x = rng.uniform(-1, 1, (1, ch, hw, hw)).astype(np.float32)
    wf = (rng.uniform(0, 1, (ch, ch, 3, 3)) / (ch * 9)).astype(np.float32)
    ws = rng.integers(-127, 128, (ch, ch, 3, 3), dtype=np.int8)
    rec = np.tile(np.array(multiplier(60 / (math.sqrt(ch * 9) * 127 * 60)), np.int32), ch)
    g = dict(flat(1, ch, hw, hw), kh=3, kw=3, pad_top=1, pad_bottom=1, pad_left=1, pad_right=1)
    pk = packed_strides(1, ch, hw, hw)
    layers = []
    for i in range(rounds):
        layers.append(layer2_bytes(dict(op=OP["CONV"], **g, weight=w_f, act=SIGMOID),
                                   view_bytes(buf[0], F32, pk), b"", view_bytes(buf[1], F32, pk)))
        layers.append(layer2_bytes(dict(op=OP["QUANTIZE"], **flat(1, ch, hw, hw), qscale=1 / 127,
                                        act_min=-128, act_max=127),
                                   view_bytes(buf[1], F32, pk), b"", view_bytes(buf[2], S8, pk)))
        layers.append(layer2_bytes(dict(op=OP["CONV"], **g, weight=w_s, requant=rq, act_min=-128,
                                        act_max=127), view_bytes(buf[2], S8, pk), b"",
                                   view_bytes(buf[1], S8, pk)))
        layers.append(layer2_bytes(dict(op=OP["DEQUANTIZE"], **flat(1, ch, hw, hw), qscale=1 / 64),
                                   view_bytes(buf[1], S8, pk), b"", view_bytes(buf[0], F32, pk)))
    count = len(layers)

    def load(q):
        q.write(buf[0], x.tobytes())
        q.write(w_f, wf.tobytes())
        q.write(w_s, ws.tobytes())
        q.write(rq, rec.tobytes())
        q.write(stats, bytes(count * 32))
        q.write(LAYERS_AT, b"".join(bytes(layer) for layer in layers))
        q.write(JOB_AREA, bytes(job_v2(count, 12, V2 | STATS_FLAG, stats)))
        q.writel(reg("CMD_ADDR_LO"), JOB_AREA)
        q.writel(reg("DOORBELL"), 1)

    # the reference: the same job, unmigrated
    one = ["-global", "convaccel.compute-threads=1"]     # float sums in one order
    q, _ = start(tmp_path, *one)
    try:
        load(q)
        wait_done(q, 1, 120)
        assert q.readl(reg("LAST_STATUS")) == 0
        expected = q.read(buf[0], x.nbytes)
    finally:
        assert q.close() is None

    state = tmp_path / "v2mid.bin"
    q, mon = start(tmp_path, *one)
    try:
        load(q)
        deadline = time.monotonic() + 60
        while not any(q.read(stats + 4 * 32, 8)):          # a few layers are done
            assert time.monotonic() < deadline
            time.sleep(0.005)
        mon(f'migrate "exec:cat > {state}"')
        assert mon.migration_status() == "completed"
        records = q.read(stats, count * 32)
        ran = sum(any(records[i * 32:i * 32 + 32]) for i in range(count))
        assert q.readl(reg("JOBS_DONE")) == 0, "the job ended before the VM stopped"
        assert 0 < ran < count
    finally:
        assert q.close() is None
    q2, _ = start(tmp_path, *one, "-incoming", f"exec:cat {state}")
    try:
        wait_incoming(q2)
        wait_done(q2, 1, 120)
        status, layer, tag, done = struct.unpack("<4I", q2.read(RESULT, 16))
        assert (status, tag, done) == (0, 12, count)
        assert q2.read(buf[0], x.nbytes) == expected
        print(f"stopped after {ran} of {count} layers; resumed and completed")
    finally:
        assert q2.close() is None


# --- fuzzing ---------------------------------------------------------------------------

FUZZ_OPS = list(OP.values())


def random_view(rnd: random.Random, dims, dtype) -> bytearray:
    n, c, h, w = dims
    es = 1 if dtype == S8 else 4
    kind = rnd.random()
    if kind < 0.6:
        strides = packed_strides(n, c, h, w)
    elif kind < 0.8:
        strides = ((c + 2) * h * w, h * w, w, 1)
    elif kind < 0.9:
        strides = tuple(rnd.choice([0, 1, 2, 3, w, h * w, 1 << 20, 0xFFFFFFFF]) for _ in range(4))
    else:
        strides = (c * h * w * 2, h * w * 2, w * 2, 2)
    addr = DATA_AREA + rnd.randrange(0, 1 << 20, es)
    if rnd.random() < 0.03:
        addr = rnd.choice([0, RAM + (RAM_MB << 20) - 4, addr + 1, rnd.getrandbits(64)])
    return view_bytes(addr, dtype if rnd.random() > 0.02 else rnd.randrange(3), strides)


def random_layer2(rnd: random.Random) -> bytearray:
    op = rnd.choice(FUZZ_OPS + [0, 13])
    names = {v: k for k, v in OP.items()}
    name = names.get(op, "ACT")
    g = random_geometry(rnd, name) if op else flat(1, 1, 1, 1)
    dtype = rnd.choice([F32, S8])
    in_dt = F32 if name == "QUANTIZE" else S8 if name == "DEQUANTIZE" else dtype
    out_dt = S8 if name == "QUANTIZE" else F32 if name == "DEQUANTIZE" else dtype
    fields = dict(op=op, **g)
    if out_dt == F32:
        fields.update(act_params(rnd, rnd.randrange(7)))
    else:
        fields.update(act_min=-128, act_max=127, zp_out=rnd.randint(-5, 5))
        if name in ("MAXPOOL", "GLOBAL_MAXPOOL"):
            fields["zp_out"] = 0
        if name not in ("MAXPOOL", "GLOBAL_MAXPOOL", "QUANTIZE"):
            fields["requant"] = DATA_AREA + 0xF0000          # records set up by the fuzzer
        if rnd.random() < 0.3:
            fields["lut"] = DATA_AREA + 0xF8000
    if name in ("CONV", "FC", "SCALE_SHIFT"):
        fields["weight"] = DATA_AREA + 0xC0000
    if name == "SCALE_SHIFT" or (name in ("CONV", "FC") and rnd.random() < 0.5):
        fields["bias"] = DATA_AREA + 0xE0000
        if name != "SCALE_SHIFT":
            fields["flags"] = BIAS
    if name in ("QUANTIZE", "DEQUANTIZE"):
        fields["qscale"] = rnd.choice([0.1, 1.0, 1e-30, 1e30])
    bcast = name == "MUL" and rnd.random() < 0.5
    if bcast:
        fields["flags"] = BCAST
    in1 = b""
    if name in ("ADD", "MUL"):
        in1 = random_view(rnd, (g["n"], g["c_in"], 1, 1) if bcast else
                          (g["n"], g["c_in"], g["h_in"], g["w_in"]), dtype)
    layer = layer2_bytes(fields, random_view(rnd, (g["n"], g["c_in"], g["h_in"], g["w_in"]), in_dt),
                         in1, random_view(rnd, (g["n"], g["c_out"], g["h_out"], g["w_out"]), out_dt))
    for _ in range(rnd.choice([0, 0, 0, 1, 2])):         # corrupt a few bytes or words
        off = rnd.randrange(0, len(layer) - 4, 4)
        layer[off:off + 4] = rnd.choice([0, 1, 0xFFFFFFFF, 0x80000000, 7, rnd.getrandbits(32),
                                         rnd.randint(0, 300)]).to_bytes(4, "little")
    return layer


def fuzz_step_v2(q: QTest, rnd: random.Random, i: int) -> None:
    """One step of v2 descriptor fuzzing: mostly plausible v2 jobs (random
    geometry, views, tables, corrupted fields), sometimes with random rescale
    records, tables or tensors rewritten, sometimes a reset."""
    kind = rnd.random()
    if kind < 0.1:
        recs = np.array([[rnd.choice([0, 1 << 30, (1 << 31) - 1, rnd.getrandbits(31)]),
                          rnd.choice([1, 31, 40, 62, 0, 63, -1])] for _ in range(64)], np.int32)
        if rnd.random() < 0.7:
            recs[:, 1] = np.clip(recs[:, 1], 1, 62)
        q.write(DATA_AREA + 0xF0000, recs.tobytes())
        q.write(DATA_AREA + 0xF8000, bytes(rnd.getrandbits(8) for _ in range(256)))
    elif kind < 0.15:
        q.write(DATA_AREA + rnd.randrange(0, 1 << 20, 4),
                bytes(rnd.getrandbits(8) for _ in range(rnd.randint(1, 512))))
    elif kind < 0.2:
        q.writel(reg("CTRL"), R["CONVACCEL_CTRL_RESET"])
    elif kind < 0.25:
        q.readl(reg("STATUS"))
    else:
        count = rnd.choice([1, 1, 2, 3, 5])
        layers = b"".join(bytes(random_layer2(rnd)) for _ in range(count))
        job = job_v2(count, i, V2 | (STATS_FLAG if rnd.random() < 0.2 else 0), JOB_AREA + 0x20000)
        if rnd.random() < 0.05:
            job[rnd.randrange(len(job))] ^= 0xFF
        if q.readl(reg("STATUS")) & R["CONVACCEL_STATUS_QUEUE_FULL"]:
            time.sleep(0.001)
        q.write(JOB_AREA + 0x10000, layers)
        q.write(JOB_AREA, bytes(job[:8]) + (JOB_AREA + 0x10000).to_bytes(8, "little") + bytes(job[16:]))
        q.writel(reg("CMD_ADDR_LO"), JOB_AREA)
        q.writel(reg("CMD_ADDR_HI"), 0)
        q.writel(reg("DOORBELL"), 1)


FUZZ_OPS_COUNT = int(__import__("os").environ.get("PYACCEL_FUZZ_V2_OPS", 1500))


def test_fuzz_v2_descriptors(q):
    rnd = random.Random(2024)
    for i in range(FUZZ_OPS_COUNT):
        fuzz_step_v2(q, rnd, i)
    assert q.alive()
    reset(q)
    rnd = random.Random(1)
    desc, out, expect = build_case(q, Mem(), rnd, "CONV", S8)
    assert run(q, [desc])["status"] == 0
    check(out.read(), expect, S8, "after fuzzing")
