"""Stateful ioctl fuzz of the driver, run in the guest by guest_stress.py.

Like syzkaller, buffers and jobs are resources: created, shared by several
threads on one file and by forked children that inherit it, destroyed,
reused once stale (a handle just destroyed, a job id just retired, the other
file's handles and jobs). The calls run in epochs: each opens two files,
forks children, starts threads, and a chaos thread resets the device
(debugfs `recover`), injects faults, and ends the epoch by closing the file
or unbinding the device while calls are in flight. Buffers are mapped into
a reserved arena and unmapped while other threads point SUBMIT layer arrays
and WAIT layer_stats into them; some arguments sit on read-only pages.

Every ioctl must return 0 or an errno its uapi documents; EFAULT must leave
the driver's state as it was (a WAIT that could not write its result keeps
the job). Afterwards the device must compute right, no buffer may be left
and the kernel log must be clean.

Per call, the Python work is small: arguments are built once per epoch and
only a handle, a job id or a deadline is set before the call.
"""
from __future__ import annotations

import collections
import ctypes
import errno
import faulthandler
import itertools
import json
import mmap
import os
import random
import sys
import threading
import time
import traceback

import pyaccel
from pyaccel import Layer, Layer2, Tensor, View, uapi
from pyaccel.device import _libc
from pyaccel.jobs import encode
from pyaccel.uapi import ffi

from devctl import DEBUGFS, stat

_mm = ctypes.CDLL(None, use_errno=True)
_mm.mmap.restype = _mm.mremap.restype = ctypes.c_void_p
_mm.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                     ctypes.c_int, ctypes.c_int64]
_mm.mremap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t, ctypes.c_int,
                       ctypes.c_void_p]
_mm.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
_mm.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
PROT_NONE, PROT_READ, PROT_RW = 0, 1, 3
MAP_SHARED, MAP_PRIVATE, MAP_FIXED, MAP_ANON, MAP_NORESERVE = 1, 2, 0x10, 0x20, 0x4000
MREMAP_MAYMOVE, MREMAP_FIXED = 1, 2
MAP_FAILED = 2**64 - 1
PAGE = 4096

REQ = {name: uapi.ioctl_number(name)
       for name in ("INFO", "BUFFER_CREATE", "BUFFER_DESTROY", "SUBMIT", "WAIT")}
MMAP_SHIFT = 32                     # a buffer's mmap_offset is handle << 32
BUF_SIZE = 1 << 16                  # the pool's buffers: a valid job fits
SLOTS_PER_THREAD = 4

# The errnos each call may return (kernel/include/uapi/linux/convaccel.h).
COMMON = {errno.ENOTTY, errno.EFAULT, errno.EINVAL, errno.E2BIG, errno.ENODEV}
DOCUMENTED = {
    "INFO": COMMON,
    "BUFFER_CREATE": COMMON | {errno.E2BIG, errno.ENOMEM},
    "BUFFER_DESTROY": COMMON | {errno.ENOENT},
    "SUBMIT": COMMON | {errno.ENOENT, errno.EOVERFLOW, errno.EBUSY, errno.ENOMEM,
                        errno.EOPNOTSUPP},
    "WAIT": COMMON | {errno.ETIMEDOUT, errno.EINTR, errno.ENOENT},
    "mmap": {errno.EINVAL, errno.ENODEV},
}
# Another size or direction in a request: ENOTTY, or what that call documents
# (the size travels in the request: structs may grow or shrink).
DOCUMENTED["other_request"] = set().union(*DOCUMENTED.values())
SIZE_SHIFT, SIZE_MASK = 16, 0x3FFF            # _IOC_SIZE of asm-generic/ioctl.h

ENDINGS = ("none", "close", "unbind")
FAULTS = ("hang", "dma-error", "lost-irq", "delay-us 0", "delay-us 2000", "delay-us 20000",
          "error-after 0", "error-after 1", "error-after 3")


def log(msg: str) -> None:
    print(f"[ioctl_fuzz] {msg}", file=sys.stderr, flush=True)


def addr(cdata) -> int:
    return int(ffi.cast("uintptr_t", cdata))


def errname(e: int) -> str:
    return errno.errorcode.get(e, str(e)) if e else "ok"


def pick(rnd: random.Random, seq: list, default: int = 0) -> int:
    """A random element of a list other threads change (or default)."""
    try:
        return seq[rnd.randrange(len(seq))]
    except (IndexError, ValueError):
        return default


def write_debugfs(name: str, text: str) -> None:
    try:
        with open(f"{DEBUGFS}/{name}", "w") as f:
            f.write(text)
    except OSError:
        pass                            # unbound just now: no device to poke


# --- what one epoch's workers share ------------------------------------------

class Pool:
    """Resources of one epoch, shared by its threads (lists: the GIL keeps
    single operations atomic; a stale pick is part of the fuzz)."""

    def __init__(self) -> None:
        self.handles: list[int] = []                  # live buffers of file A
        self.stale: collections.deque = collections.deque(maxlen=16)
        self.foreign: list[int] = []                  # file B's handles and jobs
        self.foreign_jobs: list[int] = []
        self.jobs: list[int] = []                     # unretired jobs of file A
        self.retired: collections.deque = collections.deque(maxlen=16)

    def drop(self, seq: list, value: int) -> None:
        try:
            seq.remove(value)
        except ValueError:
            pass


def valid_layers(handle: int, count: int):
    geo = dict(n=1, c_in=2, h_in=4, w_in=4, c_out=2, h_out=4, w_out=4, groups=1,
               kh=1, kw=1, stride_h=1, stride_w=1, dil_h=1, dil_w=1)
    t = lambda o: Tensor(handle, o)  # noqa: E731
    return encode([Layer("conv", t(0), t(4096), t(8192), None, "relu", geo)] * count)


def set_handles(layers, count: int, handle: int) -> None:
    for i in range(count):
        layers[i].input.handle = layers[i].output.handle = layers[i].weight.handle = handle


def fuzz_value(rnd: random.Random) -> int:
    return rnd.choice([0, 1, 2, 3, 4, 7, 8, 64, 4096, 0xFFFFFFFF, 0x7FFFFFFF, 2**31, 2**63,
                       2**64 - 1, rnd.getrandbits(64), rnd.getrandbits(16)])


def random_struct(rnd: random.Random, ctype: str):
    """A struct of random bytes, or of random values in random fields."""
    arg = ffi.new(ctype + " *")
    if rnd.random() < 0.3:
        ffi.buffer(arg)[:] = bytes(rnd.getrandbits(8) for _ in range(ffi.sizeof(arg[0])))
        return arg
    for field in uapi.struct_fields(ctype):
        if rnd.random() < 0.5:
            try:
                setattr(arg, field, fuzz_value(rnd))
            except (OverflowError, TypeError):
                pass
    return arg


def random_layers(rnd: random.Random, handle: int, count: int):
    """Plausible layers with a few fields corrupted."""
    arr = valid_layers(handle, count)
    names = uapi.struct_fields("struct convaccel_layer")
    for i in range(count):
        for _ in range(rnd.randint(1, 3)):
            name = rnd.choice(names)
            if name in ("input", "weight", "bias", "output"):
                setattr(getattr(arr[i], name), rnd.choice(["handle", "pad", "offset"]),
                        fuzz_value(rnd) & 0xFFFFFFFF)
            else:
                setattr(arr[i], name, fuzz_value(rnd) & 0xFFFFFFFF)
    return arr


def valid_layers2(handle: int, count: int):
    """Hardware 2.0 layers (struct convaccel_layer2): an ADD of two views."""
    geo = dict(n=1, c_in=2, h_in=4, w_in=4, c_out=2, h_out=4, w_out=4, groups=1,
               kh=1, kw=1, stride_h=1, stride_w=1, dil_h=1, dil_w=1)
    v = lambda o: View(handle, o)  # noqa: E731
    return encode([Layer2("add", in0=v(0), in1=v(4096), out=v(8192), activation="relu",
                          geometry=geo)] * count)


VIEWS = ("in0", "in1", "out")
TABLES = ("weight", "bias", "requant", "lut")


def random_layers2(rnd: random.Random, handle: int, count: int):
    """Plausible v2 layers with a few fields corrupted: op, flags, activation,
    geometry, quantization fields, a view's dtype, offset or strides, a table."""
    arr = valid_layers2(handle, count)
    names = uapi.struct_fields("struct convaccel_layer2")
    for i in range(count):
        for _ in range(rnd.randint(1, 3)):
            name = rnd.choice(names)
            if name in VIEWS:
                sub = rnd.choice(uapi.struct_fields("struct convaccel_view"))
                bits = 64 if sub == "offset" else 32
                setattr(getattr(arr[i], name), sub, fuzz_value(rnd) & ((1 << bits) - 1))
            elif name in TABLES:
                setattr(getattr(arr[i], name), rnd.choice(["handle", "pad", "offset"]),
                        fuzz_value(rnd) & 0xFFFFFFFF)
            elif name in ("op", "activation", "flags") and rnd.random() < 0.7:
                setattr(arr[i], name, rnd.randrange(0, 16))     # near the valid codes
            else:
                value = fuzz_value(rnd) & 0xFFFFFFFF
                if name.startswith(("zp_", "act_m")):
                    value = value - (1 << 32) if value >= 1 << 31 else value
                setattr(arr[i], name, value)
    return arr


class Arena:
    """Address space reserved PROT_NONE: buffers are mapped into its slots
    with MAP_FIXED and "unmapped" by mapping PROT_NONE over them, so an
    address other threads point the driver at is never reused by the heap."""

    def __init__(self, slots: int) -> None:
        self.size = slots * BUF_SIZE
        self.base = _mm.mmap(None, self.size, PROT_NONE,
                             MAP_PRIVATE | MAP_ANON | MAP_NORESERVE, -1, 0)
        assert self.base != MAP_FAILED
        self.slots = [self.base + i * BUF_SIZE for i in range(slots)]

    def cover(self, slot: int, length: int = BUF_SIZE) -> None:
        _mm.mmap(slot, length, PROT_NONE,
                 MAP_PRIVATE | MAP_ANON | MAP_FIXED | MAP_NORESERVE, -1, 0)

    def map(self, slot: int, fd: int, handle: int) -> int:
        """Map buffer `handle` at slot: 0 or the errno. Mapped elsewhere
        first, then moved over the slot: a MAP_FIXED mmap that the driver
        refuses would already have unmapped the slot, and until it was
        covered again another thread's allocation could land in the hole
        (then be replaced by the cover or the next map: the fuzz process
        died of SIGSEGV after ~350,000 calls, a Python frame stack turned
        into a device buffer)."""
        p = _mm.mmap(None, BUF_SIZE, PROT_RW, MAP_SHARED, fd, handle << MMAP_SHIFT)
        if p == MAP_FAILED:
            return ctypes.get_errno()           # refused: the slot is as it was
        if _mm.mremap(p, BUF_SIZE, BUF_SIZE, MREMAP_MAYMOVE | MREMAP_FIXED, slot) == MAP_FAILED:
            e = ctypes.get_errno()
            _mm.munmap(p, BUF_SIZE)
            self.cover(slot)
            return e
        return 0

    def close(self) -> None:
        _mm.munmap(self.base, self.size)


def readonly_copy(cdata):
    """A private page holding a copy of *cdata, then made read-only."""
    page = _mm.mmap(None, PAGE, PROT_RW, MAP_PRIVATE | MAP_ANON, -1, 0)
    item = ffi.typeof(cdata).item                   # struct X of "struct X *" or "[]"
    ptr = ffi.cast(ffi.getctype(item, "*"), page)
    ffi.memmove(ptr, cdata, ffi.sizeof(cdata) if ffi.typeof(cdata).kind == "array"
                else ffi.sizeof(item))
    _mm.mprotect(page, PAGE, PROT_READ)
    return ptr, page


def rewrite_readonly(page, ptr, **fields) -> None:
    _mm.mprotect(page, PAGE, PROT_RW)
    for k, v in fields.items():
        setattr(ptr, k, v)
    _mm.mprotect(page, PAGE, PROT_READ)


class Epoch:
    """Two open files, the shared pool and arena, and how the epoch ends."""

    def __init__(self, ending: str, threads: int) -> None:
        self.fd = os.open("/dev/convaccel0", os.O_RDWR)
        self.fd_b = os.open("/dev/convaccel0", os.O_RDWR)
        self.ending = ending
        self.touch = ending != "unbind"     # a zapped mapping raises SIGBUS when touched
        self.flag = mmap.mmap(-1, 1)        # shared with the children: 1 = stop
        self.closed = False
        self.pool = Pool()
        self.arena = Arena(SLOTS_PER_THREAD * (threads + 1))
        for _ in range(4):
            h = self.create(self.fd)
            if h:
                self.pool.handles.append(h)
        for _ in range(2):
            h = self.create(self.fd_b)
            if h:
                self.pool.foreign.append(h)
                job = self.submit_valid(self.fd_b, h)
                if job:
                    self.pool.foreign_jobs.append(job)

    @staticmethod
    def create(fd: int) -> int:
        arg = ffi.new("struct convaccel_buffer_create *", {"size": BUF_SIZE})
        return arg.handle if _libc.ioctl(fd, REQ["BUFFER_CREATE"], arg) == 0 else 0

    @staticmethod
    def submit_valid(fd: int, handle: int) -> int:
        layers = valid_layers(handle, 1)
        arg = ffi.new("struct convaccel_submit *", {
            "layers": addr(layers), "layer_count": 1, "timeout_ms": 100,
            "layer_size": ffi.sizeof("struct convaccel_layer")})
        return arg.job_id if _libc.ioctl(fd, REQ["SUBMIT"], arg) == 0 else 0

    def close(self) -> None:
        self.arena.close()
        self.flag.close()
        os.close(self.fd_b)
        if not self.closed:             # else the chaos thread did, under the calls
            os.close(self.fd)


# --- one worker thread --------------------------------------------------------

class Worker:
    """One thread's calls. Arguments are built here once. Stateful ops make
    one call each (create, destroy, a job that runs, WAIT with a deadline,
    mmap); bursts make BURST calls back to back over prebuilt arguments
    (WAITs on the pool's jobs, and calls that fail fast): most of the
    calls, at a few microseconds of Python each."""

    BURST = 16

    def __init__(self, ep: Epoch, seed: int, slots: list[int]) -> None:
        self.ep = ep
        self.pool = ep.pool
        self.rnd = rnd = random.Random(seed)
        self.slots = slots
        self.mapped: dict[int, int] = {}              # slot -> handle
        self.counts: collections.Counter = collections.Counter()
        self.lost = 0                                 # EFAULT lost driver state
        self.failed = False
        sz = ffi.sizeof("struct convaccel_layer")
        self.creates = [ffi.new("struct convaccel_buffer_create *", {"size": s}) for s in
                        (BUF_SIZE, BUF_SIZE, BUF_SIZE, 4096, 1, 1 << 20)]
        self.destroy_arg = ffi.new("struct convaccel_buffer_destroy *")
        self.layers = [valid_layers(0, n) for n in (1, 1, 2, 3)]
        self.submit_arg = ffi.new("struct convaccel_submit *", {"layer_size": sz})
        self.wait_arg = ffi.new("struct convaccel_wait *")
        self.stats = ffi.new("struct convaccel_layer_stats[]", 4)
        self.scratch = ffi.new("char[]", SIZE_MASK + 1)     # room for any _IOC_SIZE
        self.ro_submit = readonly_copy(ffi.new("struct convaccel_submit *", {
            "layers": addr(self.layers[0]), "layer_count": 1, "layer_size": sz}))[0]
        self.ro_create = readonly_copy(self.creates[0])[0]
        self.ro_wait, self.ro_wait_page = readonly_copy(self.wait_arg)
        self.ro_stats = readonly_copy(self.stats)[0]
        self.waits = [ffi.new("struct convaccel_wait *") for _ in range(self.BURST)]
        for w in self.waits:
            w.layer_stats, w.layer_stats_count, w.layer_stats_size = self.stats_pointer()
        self.keep: list = []
        self.fast = self.fast_calls(rnd, sz)
        table = [(10, self.op_submit), (8, self.op_wait), (4, self.op_create),
                 (4, self.op_destroy), (3, self.op_map), (1, self.op_readonly_submit),
                 (1, self.op_readonly_create),
                 (1, self.op_wait_efault), (6, self.op_wait_burst), (10, self.op_fast_burst)]
        self.ops = [op for weight, op in table for _ in range(weight)]

    def fast_calls(self, rnd: random.Random, sz: int) -> list:
        """(name, request, argument) of calls that fail fast, shuffled:
        invalid creates, submits and layers, random structs, read-only
        arguments, unknown requests, stale and foreign handles."""
        calls = []
        add = lambda name, arg, req=None: calls.append((name, req or REQ[name], arg))  # noqa
        for v in ({"size": 0}, {"size": 2**40}, {"size": 2**64 - 1}, {"size": 4096, "flags": 1},
                  {"size": 4096, "handle": 3}, {"size": 4096, "mmap_offset": 1 << 32}):
            add("BUFFER_CREATE", ffi.new("struct convaccel_buffer_create *", v))
        valid = addr(self.layers[0])
        for v in ({"layer_count": 0}, {"layer_size": 8}, {"layer_size": sz + 4},
                  {"layer_size": 8192}, {"layer_count": 2**32 - 1}, {"flags": 1},
                  {"job_id": 5}, {"layers": 0}, {"layers": 0xFFFF000000000000},
                  {"layers": addr(self.scratch) + 4093}, {"layers": rnd.choice(self.ep.arena.slots)}):
            arg = {"layers": valid, "layer_count": 1, "layer_size": sz, **v}
            add("SUBMIT", ffi.new("struct convaccel_submit *", arg))
        for _ in range(8):
            n = rnd.choice([1, 2])
            layers = random_layers(rnd, pick(rnd, self.pool.handles), n)
            self.keep.append(layers)   # the struct holds only its address
            add("SUBMIT", ffi.new("struct convaccel_submit *", {
                "layers": addr(layers), "layer_count": n, "layer_size": sz}))
        sz2 = ffi.sizeof("struct convaccel_layer2")
        for _ in range(8):
            n = rnd.choice([1, 2])
            layers = random_layers2(rnd, pick(rnd, self.pool.handles), n)
            self.keep.append(layers)
            add("SUBMIT", ffi.new("struct convaccel_submit *", {
                "layers": addr(layers), "layer_count": n, "layer_size": sz2,
                "flags": uapi.CONSTANTS["CONVACCEL_SUBMIT_LAYER2"]}))
        for name in REQ:
            for _ in range(3):
                arg = random_struct(rnd, f"struct convaccel_{name.lower()}")
                if name == "WAIT":      # real ids come from the pool (see op_wait_efault)
                    arg.job_id |= 1 << 40
                add(name, arg)
        info = ffi.new("struct convaccel_info *")
        add("INFO", info)
        add("INFO", readonly_copy(info)[0])
        for h in (*self.pool.foreign, 0, 2**32 - 1, rnd.getrandbits(32)):
            add("BUFFER_DESTROY", ffi.new("struct convaccel_buffer_destroy *", {"handle": h}))
        add("BUFFER_DESTROY", ffi.new("struct convaccel_buffer_destroy *", {"handle": 1, "pad": 1}))
        for _ in range(6):                          # another size, direction, number
            req = rnd.choice(list(REQ.values())) ^ (1 << rnd.randrange(32))
            if req not in REQ.values():
                add("other_request", self.scratch, req)
        for req in REQ.values():                    # shorter, longer, the longest
            size = (req >> SIZE_SHIFT) & SIZE_MASK
            for other in (size - 8, size + 8, size + 64, SIZE_MASK):
                add("other_request", self.scratch,
                    req & ~(SIZE_MASK << SIZE_SHIFT) | (other << SIZE_SHIFT))
        rnd.shuffle(calls)
        return calls * 2                # a burst is a slice: wrap around

    def call(self, name: str, arg) -> int:
        return 0 if _libc.ioctl(self.ep.fd, REQ[name], arg) >= 0 else ffi.errno

    # -- handles
    def some_handle(self) -> int:
        r = self.rnd.random()
        if r < 0.8:
            return pick(self.rnd, self.pool.handles)
        if r < 0.9:
            return pick(self.rnd, self.pool.stale)
        return pick(self.rnd, self.pool.foreign) if r < 0.97 else self.rnd.getrandbits(32)

    def some_job(self) -> int:
        r = self.rnd.random()
        if r < 0.8:
            return pick(self.rnd, self.pool.jobs)
        if r < 0.9:
            return pick(self.rnd, self.pool.retired)
        return pick(self.rnd, self.pool.foreign_jobs) if r < 0.97 else \
            self.rnd.choice([2**31 + 5, 2**32 - 1, 2**32 + 1, 2**64 - 1])

    def created(self, arg) -> None:
        self.pool.handles.append(arg.handle)
        arg.handle = arg.mmap_offset = 0
        if len(self.pool.handles) > 24:               # keep memory bounded
            self.destroy(self.pool.handles[0])

    def destroy(self, handle: int) -> int:
        self.destroy_arg.handle = handle
        e = self.call("BUFFER_DESTROY", self.destroy_arg)
        if not e:
            self.pool.drop(self.pool.handles, handle)
            self.pool.stale.append(handle)
        self.counts["BUFFER_DESTROY", e] += 1
        return e

    # -- the ops
    def op_create(self):
        arg = self.rnd.choice(self.creates)
        e = self.call("BUFFER_CREATE", arg)
        if not e:
            self.created(arg)
        return "BUFFER_CREATE", e

    def op_destroy(self):
        """Destroy a live buffer while there are enough, else a stale or foreign one."""
        live = len(self.pool.handles) > 8
        self.destroy(self.some_handle() if live else pick(self.rnd, self.pool.stale))

    def submit(self, layers_addr: int, count: int) -> int:
        arg = self.submit_arg
        arg.layers, arg.layer_count = layers_addr, count
        arg.timeout_ms = self.rnd.choice((1, 1, 50, 50, 1000, 0))
        e = self.call("SUBMIT", arg)
        if not e:
            self.pool.jobs.append(arg.job_id)
            arg.job_id = 0
        return e

    def op_submit(self):
        if len(self.pool.jobs) > 48:                  # the file's limit is 64: wait first
            return self.op_wait()
        r = self.rnd.random()
        if r < 0.75:                                  # a job that runs, mostly
            layers = self.rnd.choice(self.layers)
            n = len(layers)
            set_handles(layers, n, self.some_handle())
            return "SUBMIT", self.submit(addr(layers), n)
        if r < 0.9:                                   # layers in a mapping, maybe gone
            return "SUBMIT", self.submit(self.rnd.choice(self.ep.arena.slots), 1)
        return "SUBMIT", self.submit(self.rnd.choice(
            [0, 1, 0xFFFF000000000000, addr(self.scratch) + 4093, 2**64 - 8]), 1)

    def stats_pointer(self) -> tuple[int, int, int]:
        r = self.rnd.random()
        if r < 0.5:
            return 0, 0, 0
        if r < 0.75:
            return addr(self.stats), self.rnd.randint(0, 4), 32
        if r < 0.85:
            return self.rnd.choice(self.ep.arena.slots), 4, 32
        if r < 0.92:
            return addr(self.ro_stats), 4, 32
        return self.rnd.choice([(addr(self.stats), 4, 16), (addr(self.stats), 4, 0),
                                (0xFFFF000000000000, 4, 32), (8, 1, 32)])

    def op_wait(self):
        arg = self.wait_arg
        job = arg.job_id = self.some_job()
        r = self.rnd.random()
        arg.timeout_ns = 0 if r < 0.4 else time.monotonic_ns() + (
            self.rnd.choice([1000, 100_000, 1_000_000]) if r < 0.9 else 20_000_000)
        arg.layer_stats, arg.layer_stats_count, arg.layer_stats_size = self.stats_pointer()
        e = self.call("WAIT", arg)
        if not e:
            self.pool.drop(self.pool.jobs, job)
            self.pool.retired.append(job)
        return "WAIT", e

    def op_readonly_create(self):
        """BUFFER_CREATE whose handle cannot be written back: EFAULT, no buffer left."""
        return "BUFFER_CREATE", self.call("BUFFER_CREATE", self.ro_create)

    def op_readonly_submit(self):
        """SUBMIT whose job id cannot be written back: EFAULT, nothing queued."""
        set_handles(self.layers[0], 1, pick(self.rnd, self.pool.handles))
        return "SUBMIT", self.call("SUBMIT", self.ro_submit)

    def op_wait_burst(self):
        """WAIT without waiting on the latest jobs, a retired one, a foreign one."""
        pool, rnd = self.pool, self.rnd
        jobs = pool.jobs[-(self.BURST - 3):] + [pick(rnd, pool.retired),
                                                pick(rnd, pool.foreign_jobs), 2**32 + 7]
        io, fd, req, counts = _libc.ioctl, self.ep.fd, REQ["WAIT"], self.counts
        for job, w in zip(jobs, self.waits):
            w.job_id = job
            if io(fd, req, w) < 0:
                counts["WAIT", ffi.errno] += 1
                continue
            counts["WAIT", 0] += 1
            pool.drop(pool.jobs, job)
            pool.retired.append(job)

    def op_fast_burst(self):
        io, fd, counts = _libc.ioctl, self.ep.fd, self.counts
        start = self.rnd.randrange(len(self.fast) // 2)
        for name, req, arg in self.fast[start:start + self.BURST]:
            counts[name, ffi.errno if io(fd, req, arg) < 0 else 0] += 1

    def op_wait_efault(self):
        """WAIT whose result cannot be written (argument page or layer_stats
        read-only): EFAULT, and the job must still be there for the next WAIT."""
        handle = pick(self.rnd, self.pool.handles)
        set_handles(self.layers[0], 1, handle)
        arg = self.submit_arg
        arg.layers, arg.layer_count, arg.timeout_ms = addr(self.layers[0]), 1, 1000
        e = self.call("SUBMIT", arg)
        if e:
            return "SUBMIT", e
        self.counts["SUBMIT", 0] += 1
        job, arg.job_id = arg.job_id, 0
        deadline = time.monotonic_ns() + 2_000_000_000
        if self.rnd.random() < 0.5:
            rewrite_readonly(self.ro_wait_page, self.ro_wait, job_id=job, timeout_ns=deadline)
            e = self.call("WAIT", self.ro_wait)
        else:
            w = self.wait_arg
            w.job_id, w.timeout_ns = job, deadline
            w.layer_stats, w.layer_stats_count, w.layer_stats_size = addr(self.ro_stats), 1, 32
            e = self.call("WAIT", w)
        self.counts["WAIT", e] += 1
        w = self.wait_arg
        w.job_id, w.timeout_ns, w.layer_stats = job, deadline, 0
        again = self.call("WAIT", w)
        # Job ids are per file, so file B's ids (the "foreign" ones other
        # threads and the children WAIT on with file A) are A's first ids
        # too: such a WAIT may have retired this job legitimately.
        if e == errno.EFAULT and again == errno.ENOENT and job not in self.pool.foreign_jobs:
            self.lost += 1
            log(f"job {job}: WAIT got EFAULT, the next WAIT ENOENT: the result was lost")
        elif e == errno.EFAULT and again == errno.ENOENT:
            log(f"job {job}: WAIT got EFAULT, the next WAIT ENOENT: retired by a WAIT on "
                "file B's id (not counted)")
        elif again:
            self.pool.jobs.append(job)                # not retired: leave it to the others
        return "WAIT", again

    def op_map(self):
        """Map a buffer into one of this thread's slots and write a valid
        layer there (others submit from it), or unmap one; or mmap at any
        offset (not into the arena) and unmap at once."""
        slot = self.rnd.choice(self.slots)
        r = self.rnd.random()
        if r < 0.15:
            length = self.rnd.choice([PAGE, BUF_SIZE, 2 * BUF_SIZE])
            off = self.rnd.choice([self.some_handle() << MMAP_SHIFT, PAGE,
                                   self.rnd.getrandbits(44) << 12, 0])
            flags = self.rnd.choice([MAP_SHARED, MAP_SHARED, MAP_PRIVATE])
            p = _mm.mmap(None, length, PROT_RW, flags, self.ep.fd, off)
            if p == MAP_FAILED:
                return "mmap", ctypes.get_errno()
            _mm.munmap(p, length)
            return "mmap", 0
        if slot in self.mapped and r < 0.6:
            self.ep.arena.cover(slot)                 # others may be using it right now
            del self.mapped[slot]
            return None
        handle = self.some_handle()
        e = self.ep.arena.map(slot, self.ep.fd, handle)
        if not e:
            self.mapped[slot] = handle
            if self.ep.touch:
                valid = self.layers[0]
                set_handles(valid, 1, handle)
                ffi.memmove(ffi.cast("void *", slot), valid, ffi.sizeof("struct convaccel_layer"))
        else:
            self.mapped.pop(slot, None)
        return "mmap", e

    def run(self, calls: int, deadline: float) -> None:
        """Ops until this worker has made `calls` calls (a burst is many), the
        deadline has passed or the epoch's flag says stop."""
        ops, choice, counts, ep = self.ops, self.rnd.choice, self.counts, self.ep
        try:
            for i in itertools.count():
                if ep.flag[0] or (i & 15 == 0 and (
                        time.monotonic() > deadline or sum(counts.values()) >= calls)):
                    break
                got = choice(ops)()
                if got:
                    counts[got] += 1
        except Exception:               # a bug of the fuzz itself: say so, count it
            log(traceback.format_exc())
            self.failed = True


# --- the chaos thread, the children, the epoch ----------------------------------

def chaos(ep: Epoch, workers: list[Worker], cap: int, deadline: float, rnd: random.Random,
          events: collections.Counter) -> None:
    """Resets and faults while the calls run; near the end of the epoch
    (time, or 80% of the threads' calls) its ending, under the calls."""
    while (time.monotonic() < deadline - 0.2 and
           sum(sum(w.counts.values()) for w in workers) < 0.8 * cap):
        time.sleep(rnd.uniform(0.01, 0.2))
        if rnd.random() < 0.3:
            write_debugfs("recover", "1")
            events["recovers"] += 1
        else:
            write_debugfs("inject", rnd.choice(FAULTS))
            events["injections"] += 1
    try:
        if ep.ending == "close":
            ep.closed = True
            os.close(ep.fd)
        elif ep.ending == "unbind":
            drv = "/sys/bus/platform/drivers/convaccel"
            with open(f"{drv}/unbind", "w") as f:
                f.write("a100000.accel")
            with open(f"{drv}/bind", "w") as f:
                f.write("a100000.accel")
        events[f"ending_{ep.ending}"] += 1
    except OSError as e:
        log(f"epoch ending {ep.ending}: {e}")
        events["ending_failures"] += 1
    time.sleep(0.05)
    ep.flag[0] = 1                      # every worker, children too


def child(ep: Epoch, seed: int, calls: int, deadline: float, wfd: int) -> None:
    """A forked process on the inherited files: one worker, counts to wfd."""
    status = 1
    try:
        ep.arena.cover(ep.arena.base, ep.arena.size)   # the parent's mappings are not ours
        w = Worker(ep, seed, ep.arena.slots[-SLOTS_PER_THREAD:])
        w.run(calls, deadline)
        if w.failed:
            return
        out = {"counts": [[k, e, n] for (k, e), n in w.counts.items()], "lost": w.lost}
        os.write(wfd, json.dumps(out).encode())
        status = 0
    finally:
        os._exit(status)


def fork_children(ep: Epoch, rnd: random.Random, n: int, calls: int,
                  deadline: float) -> list[tuple[int, int]]:
    kids = []
    for _ in range(n):
        rfd, wfd = os.pipe()
        seed = rnd.getrandbits(32)
        pid = os.fork()
        if pid == 0:
            os.close(rfd)
            child(ep, seed, calls, deadline, wfd)
        os.close(wfd)
        kids.append((pid, rfd))
    return kids


def reap_child(pid: int, rfd: int) -> dict | None:
    data = b""
    while chunk := os.read(rfd, 1 << 16):
        data += chunk
    os.close(rfd)
    _, status = os.waitpid(pid, 0)
    if status or not data:
        log(f"child {pid} ended with status {status:#x}")
        return None
    return json.loads(data)


def run_epoch(rnd: random.Random, calls: int, seconds: float, threads: int, children: int,
              totals: collections.Counter, events: collections.Counter) -> int:
    """One epoch; adds its (call, errno, ending) counts to totals; returns
    the EFAULT losses."""
    ep = Epoch(ENDINGS[events["epochs"] % len(ENDINGS)], threads)     # each in turn
    deadline = time.monotonic() + seconds
    per_worker = calls // (threads + children) + 1
    kids = fork_children(ep, rnd, children, per_worker, deadline)   # before any thread
    workers = [Worker(ep, rnd.getrandbits(32),
                      ep.arena.slots[i * SLOTS_PER_THREAD:(i + 1) * SLOTS_PER_THREAD])
               for i in range(threads)]
    ts = [threading.Thread(target=w.run, args=(per_worker, deadline)) for w in workers]
    ts.append(threading.Thread(target=chaos, args=(ep, workers, per_worker * threads,
                                                   deadline, rnd, events)))
    for t in ts:
        t.start()
    results = [reap_child(pid, rfd) for pid, rfd in kids]
    for t in ts:
        t.join()
    ep.close()
    events["epochs"] += 1
    events["children"] += children
    events["worker_failures"] += results.count(None) + sum(w.failed for w in workers)
    lost = 0
    for out in filter(None, results):
        lost += out["lost"]
        for k, e, n in out["counts"]:
            totals[k, e, ep.ending] += n
    for w in workers:
        lost += w.lost
        for (k, e), n in w.counts.items():
            totals[k, e, ep.ending] += n
    return lost


# --- single-threaded checks of the EFAULT paths ----------------------------------

def efault_checks() -> int:
    """Each read-only argument once, with nothing else running: EFAULT, and
    the driver's state as before (no buffer, no lost job). Returns losses."""
    lost = 0
    fd = os.open("/dev/convaccel0", os.O_RDWR)
    try:
        before = stat("buffers")
        ro, _ = readonly_copy(ffi.new("struct convaccel_buffer_create *", {"size": 4096}))
        e = 0 if _libc.ioctl(fd, REQ["BUFFER_CREATE"], ro) == 0 else ffi.errno
        lost += e != errno.EFAULT or stat("buffers") > before
        handle = Epoch.create(fd)
        layers = valid_layers(handle, 1)
        ro, _ = readonly_copy(ffi.new("struct convaccel_submit *", {
            "layers": addr(layers), "layer_count": 1,
            "layer_size": ffi.sizeof("struct convaccel_layer")}))
        e = 0 if _libc.ioctl(fd, REQ["SUBMIT"], ro) == 0 else ffi.errno
        lost += e != errno.EFAULT
        for where in ("arg", "stats"):
            job = Epoch.submit_valid(fd, handle)
            w = ffi.new("struct convaccel_wait *", {"job_id": job,
                                                    "timeout_ns": time.monotonic_ns() + 10**10})
            stats = ffi.new("struct convaccel_layer_stats[]", 1)
            if where == "stats":
                w.layer_stats, w.layer_stats_count, w.layer_stats_size = \
                    addr(readonly_copy(stats)[0]), 1, 32
                arg = w
            else:
                arg = readonly_copy(w)[0]
            e = 0 if _libc.ioctl(fd, REQ["WAIT"], arg) == 0 else ffi.errno
            w.layer_stats = 0
            again = 0 if _libc.ioctl(fd, REQ["WAIT"], w) == 0 else ffi.errno
            lost += e != errno.EFAULT or again != 0
            if e != errno.EFAULT or again:
                log(f"EFAULT check ({where} read-only): WAIT {errname(e)}, again {errname(again)}")
    finally:
        os.close(fd)
    return lost


def summary(totals: collections.Counter) -> dict:
    """Errnos over all calls, per call, and those the uapi does not document
    (EBADF is documented by close(2) for the epochs that close the file)."""
    errnos: collections.Counter = collections.Counter()
    undocumented: collections.Counter = collections.Counter()
    per_call: dict = collections.defaultdict(collections.Counter)
    for (name, e, ending), n in totals.items():
        errnos[errname(e)] += n
        per_call[name][errname(e)] += n
        allowed = DOCUMENTED[name] | ({errno.EBADF} if ending == "close" else set())
        if e and e not in allowed:
            undocumented[f"{name} {errname(e)}"] += n
    return {"errnos": dict(errnos), "per_call": {k: dict(v) for k, v in per_call.items()},
            "undocumented_errnos": sum(undocumented.values()),
            "undocumented": dict(undocumented)}


def run(calls: int, seconds: float, seed: int, threads: int = 3, children: int = 2,
        progress: str | None = None) -> dict:
    """Epochs of calls until `calls` are done or `seconds` have passed; the
    figures so far go to the file `progress` after every epoch."""
    rnd = random.Random(seed)
    totals: collections.Counter = collections.Counter()
    events: collections.Counter = collections.Counter()
    lost = 0
    t0 = time.monotonic()
    epoch_s = min(6.0, max(1.0, seconds / 8))
    per_epoch = max(1000, calls // 40)

    def figures() -> dict:
        wall = time.monotonic() - t0
        done = sum(totals.values())
        return {"calls": done, "target_calls": calls, "budget_s": seconds,
                "fuzz_s": round(wall, 1), "calls_per_s": round(done / wall),
                "threads": threads, "children": children, "events": dict(events),
                **summary(totals), "efault_state_lost": lost,
                "worker_failures": events["worker_failures"]}

    while sum(totals.values()) < calls and time.monotonic() - t0 < seconds:
        lost += efault_checks()
        lost += run_epoch(rnd, min(calls - sum(totals.values()), per_epoch), epoch_s,
                          threads, children, totals, events)
        for cmd in ("delay-us 0", "error-after 0"):
            write_debugfs("inject", cmd)
        write_debugfs("recover", "1")             # no fault left pending for the next
        log(f"{sum(totals.values())}/{calls} calls, {time.monotonic() - t0:.0f} s")
        if progress:
            with open(progress, "w") as f:
                json.dump(figures(), f)
    return figures()


def run_isolated(calls: int, seconds: float, seed: int) -> dict:
    """run() in a process of its own: if the fuzz process dies (a signal),
    that is a worker failure, with the figures of the epochs before it and
    every thread's Python stack on stderr (faulthandler), the fault's address
    in dmesg (exception-trace)."""
    progress = f"/tmp/ioctl_fuzz.{os.getpid()}.json"
    try:                                # a segfault's address and PC in dmesg
        with open("/proc/sys/debug/exception-trace", "w") as f:
            f.write("1")
    except OSError:
        pass
    pid = os.fork()
    if pid == 0:
        status = 1
        try:
            faulthandler.enable(all_threads=True)
            run(calls, seconds, seed, progress=progress)
            status = 0
        finally:
            os._exit(status)
    _, status = os.waitpid(pid, 0)
    try:
        with open(progress) as f:
            results = json.load(f)
        os.unlink(progress)
    except (OSError, ValueError):
        results = {"calls": 0, "worker_failures": 0}
    if status:
        log(f"the fuzz process ended with status {status:#x} "
            f"(signal {os.WTERMSIG(status) if os.WIFSIGNALED(status) else 'none'})")
        results["worker_failures"] += 1
        results["fuzz_process_status"] = status
    return results
