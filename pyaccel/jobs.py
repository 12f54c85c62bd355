"""Jobs: chains of layers submitted to the device, and their results."""
from __future__ import annotations

import time
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from . import uapi
from .errors import AccelError, JobError
from .uapi import ffi

if TYPE_CHECKING:
    from .device import Device

LAYER_FIELDS = uapi.struct_fields("struct convaccel_layer")
TENSORS = ("input", "weight", "bias", "output")
LAYER_SIZE = ffi.sizeof("struct convaccel_layer")
STATS_SIZE = ffi.sizeof("struct convaccel_layer_stats")
# struct convaccel_layer_stats is all __u64: one numpy read of every layer's
# costs is much cheaper than four cffi attribute reads per layer (which the
# guest's emulated CPU makes expensive: a network has dozens of layers).
STATS_DTYPE = np.dtype([(name, "<u8") for name in
                        uapi.struct_fields("struct convaccel_layer_stats")])
assert STATS_DTYPE.itemsize == STATS_SIZE, "struct convaccel_layer_stats is not all __u64"


def _names(prefix: str) -> dict[int, str]:
    return {v: k[len(prefix):].lower() for k, v in uapi.CONSTANTS.items() if k.startswith(prefix)}


STATUS_NAMES = _names("CONVACCEL_JOB_STATUS_")
REASON_NAMES = _names("CONVACCEL_REASON_")
OPS = {name: code for code, name in _names("CONVACCEL_OP_").items()}
ACTIVATIONS = {name: code for code, name in _names("CONVACCEL_ACT_").items()}


@dataclass(frozen=True)
class Tensor:
    """Where a tensor lives: a buffer handle and a byte offset in it."""

    handle: int
    offset: int = 0


@dataclass
class Layer:
    """One layer as the driver takes it (struct convaccel_layer).

    op: "conv", "maxpool" or "avgpool"; activation: "none", "relu", "relu6".
    Geometry fields are the header's names (n, c_in, h_in, ..., pad_right).
    """

    op: str
    input: Tensor
    output: Tensor
    weight: Tensor | None = None
    bias: Tensor | None = None
    activation: str = "none"
    geometry: dict[str, int] = field(default_factory=dict)

    def fill(self, c: Any) -> None:
        c.op = OPS[self.op] if self.op in OPS else int(self.op)
        c.activation = ACTIVATIONS[self.activation]
        c.flags = uapi.CONSTANTS["CONVACCEL_LAYER_BIAS"] if self.bias else 0
        for name, value in self.geometry.items():
            if name not in LAYER_FIELDS or name in TENSORS:
                raise AccelError(f"unknown layer field {name!r}")
            setattr(c, name, value)
        for name in TENSORS:
            t = getattr(self, name)
            if t is not None:
                getattr(c, name).handle = t.handle
                getattr(c, name).offset = t.offset


OPS2 = OPS                                  # every CONVACCEL_OP_* (v2 takes them all)
ACTIVATIONS2 = ACTIVATIONS
DTYPES = {name: code for code, name in _names("CONVACCEL_TENSOR_").items()}   # f32, s8
NUMPY_DTYPES = {"f32": np.float32, "s8": np.int8}
LAYER2_FIELDS = uapi.struct_fields("struct convaccel_layer2")
LAYER2_SIZE = ffi.sizeof("struct convaccel_layer2")


def f32_bits(value: float) -> int:
    """A float as the IEEE float32 bits the uapi's __u32 float fields hold."""
    return int(np.array(value, np.float32).view(np.uint32))


@dataclass(frozen=True)
class View:
    """A v2 tensor operand: a buffer range with a data type ("f32", "s8")
    and strides in elements (n, c, h, w); strides None: packed NCHW."""

    handle: int
    offset: int = 0
    dtype: str = "f32"
    strides: tuple[int, int, int, int] | None = None


@dataclass
class Layer2:
    """One hardware-2.0 layer (struct convaccel_layer2).

    op: a CONVACCEL_OP_* name in lower case ("conv", "add", "mul",
    "scale_shift", "global_avgpool", "fc", "quantize", "act", ...);
    activation: a CONVACCEL_ACT_* name ("leaky_relu", "hard_swish", ...)
    with act_alpha / act_beta; quant: zp_in0, zp_in1, zp_out, act_min,
    act_max, qscale (the header's field names), for int8 layers.
    """

    op: str
    in0: View
    out: View
    in1: View | None = None
    weight: Tensor | None = None
    bias: Tensor | None = None
    requant: Tensor | None = None
    lut: Tensor | None = None
    activation: str = "none"
    act_alpha: float = 0.0
    act_beta: float = 0.0
    broadcast: bool = False
    geometry: dict[str, int] = field(default_factory=dict)
    quant: dict[str, float] = field(default_factory=dict)

    def fill(self, c: Any) -> None:
        c.op = OPS2[self.op]
        c.activation = ACTIVATIONS2[self.activation]
        c.act_alpha, c.act_beta = f32_bits(self.act_alpha), f32_bits(self.act_beta)
        c.flags = ((uapi.CONSTANTS["CONVACCEL_LAYER2_BIAS"]
                    if self.bias is not None and self.op in ("conv", "fc") else 0)
                   | (uapi.CONSTANTS["CONVACCEL_LAYER2_BCAST"] if self.broadcast else 0))
        for name, value in {**self.geometry, **self.quant}.items():
            if name not in LAYER2_FIELDS or name in ("in0", "in1", "out", *TENSORS):
                raise AccelError(f"unknown v2 layer field {name!r}")
            setattr(c, name, f32_bits(value) if name == "qscale" else int(value))
        for name in ("in0", "in1", "out"):
            v = getattr(self, name)
            if v is not None:
                cv = getattr(c, name)
                cv.handle, cv.offset, cv.dtype = v.handle, v.offset, DTYPES[v.dtype]
                if v.strides is not None:
                    cv.stride_n, cv.stride_c, cv.stride_h, cv.stride_w = v.strides
        for name in ("weight", "bias", "requant", "lut"):
            t = getattr(self, name)
            if t is not None:
                getattr(c, name).handle = t.handle
                getattr(c, name).offset = t.offset


@dataclass(frozen=True)
class LayerCost:
    """What one layer cost (struct convaccel_layer_stats)."""

    device_ns: int
    cycles: int
    macs: int
    bytes: int


assert [f.name for f in fields(LayerCost)] == list(STATS_DTYPE.names)


class LayerCosts(Sequence):
    """A job's LayerCost records, made on access from the raw
    struct convaccel_layer_stats array: most inferences never read them, and
    dozens of Python objects per job cost the guest's emulated CPU."""

    __slots__ = ("_rows", "_costs")

    def __init__(self, rows: np.ndarray) -> None:
        self._rows = rows
        self._costs: tuple | None = None

    def _all(self) -> tuple:
        if self._costs is None:
            self._costs = tuple(LayerCost(*row) for row in self._rows.tolist())
        return self._costs

    def __len__(self) -> int:
        return len(self._rows)

    def __getitem__(self, i):
        return self._all()[i]

    def __iter__(self):
        return iter(self._all())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and tuple(self) == tuple(other)

    def __hash__(self) -> int:
        return hash(self._all())

    def __repr__(self) -> str:
        return repr(self._all())


@dataclass(frozen=True)
class JobResult:
    """What the device did (struct convaccel_wait, in Python units)."""

    status: str
    reason: str
    layer: int | None
    layers_done: int
    macs: int
    bytes_read: int
    bytes_written: int
    device_ns: int
    cycles: int
    latency_ns: int
    layers: Sequence = ()       # LayerCost of each layer, in order (LayerCosts)

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def encode(layers: Sequence[Layer] | Sequence[Layer2]) -> Any:
    """The layers as the driver's struct array (reusable across submits):
    all Layer (struct convaccel_layer) or all Layer2 (struct convaccel_layer2)."""
    v2 = bool(layers) and isinstance(layers[0], Layer2)
    if any(isinstance(layer, Layer2) != v2 for layer in layers):
        raise AccelError("a job's layers are all Layer or all Layer2, not a mix")
    arr = ffi.new("struct convaccel_layer2[]" if v2 else "struct convaccel_layer[]",
                  len(layers))
    for i, layer in enumerate(layers):
        layer.fill(arr[i])
    return arr


class Job:
    """A submitted job; wait() for its result. `layers` is a list of Layer
    or an array from encode() (a compiled network submits the same one)."""

    def __init__(self, device: "Device", layers: Sequence[Layer] | Any,
                 timeout_ms: int = 0) -> None:
        self.device = device
        arr = encode(layers) if isinstance(layers, (list, tuple)) else layers
        n = len(arr)
        v2 = ffi.typeof(arr).item.cname == "struct convaccel_layer2"
        req = ffi.new("struct convaccel_submit *", {
            "layers": int(ffi.cast("uintptr_t", arr)), "layer_count": n,
            "layer_size": LAYER2_SIZE if v2 else LAYER_SIZE, "timeout_ms": timeout_ms,
            "flags": uapi.CONSTANTS["CONVACCEL_SUBMIT_LAYER2"] if v2 else 0})
        device.ioctl("SUBMIT", req, f"submit a job of {n} layers")
        self.id: int = req.job_id
        self.layer_count = n
        self.result: JobResult | None = None

    def wait(self, timeout: float | None = None, check: bool = True) -> JobResult:
        """Wait up to `timeout` seconds (None: for ever). Raises JobError for a
        failed job when `check`, AccelError(ETIMEDOUT) if still running."""
        if self.result is None:
            stats = ffi.new("struct convaccel_layer_stats[]", self.layer_count)
            req = ffi.new("struct convaccel_wait *", {
                "job_id": self.id, "layer_stats": int(ffi.cast("uintptr_t", stats)),
                "layer_stats_count": self.layer_count,
                "layer_stats_size": STATS_SIZE})
            req.timeout_ns = (2**63 - 1 if timeout is None
                              else time.monotonic_ns() + int(timeout * 1e9))
            self.device.ioctl("WAIT", req, f"wait for job {self.id}")
            self.result = JobResult(
                status=STATUS_NAMES.get(req.status, str(req.status)),
                reason=REASON_NAMES.get(req.reason, str(req.reason)),
                layer=None if req.layer == 0xFFFFFFFF else req.layer,
                layers_done=req.layers_done, macs=req.macs, bytes_read=req.bytes_read,
                bytes_written=req.bytes_written, device_ns=req.device_ns,
                cycles=req.cycles, latency_ns=req.latency_ns,
                layers=LayerCosts(np.frombuffer(ffi.buffer(stats), STATS_DTYPE)))
        if check and not self.result.ok:
            raise JobError(self.id, self.result)
        return self.result
