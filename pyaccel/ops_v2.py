"""Single hardware-2.0 layers on the device, numpy in and numpy out:
elementwise ops, activations, scale-shift, global pooling, fully connected,
and the int8 ops with the golden model's argument conventions
(pyaccel.reference / reference_int8): the device's int8 result equals
theirs bit for bit.

What the device can do is checked first, from INFO (ops, activations,
dtypes): a device that lacks something raises UnsupportedError naming it.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Optional, Sequence

import numpy as np

from . import reference as ref
from .errors import ShapeError, UnsupportedError
from .jobs import ACTIVATIONS2, DTYPES, NUMPY_DTYPES, OPS2, Layer2, Tensor, View
from .ops import ALIGN, window_geometry

if TYPE_CHECKING:
    from .device import Device

_KIND = {np.dtype(np.float32): "f32", np.dtype(np.int8): "s8"}


def require(dev: "Device", op: str, activation: str = "none",
            dtypes: Sequence[str] = ("f32",)) -> None:
    """Raise UnsupportedError unless the device runs op with activation on dtypes."""
    info = dev.info
    missing = []
    if not info.layer2_size:
        missing.append("hardware 2.0 layers (CAPS.V2)")
    if not info.ops >> OPS2[op] & 1:
        missing.append(f"the {op.upper()} operation")
    if not info.activations >> ACTIVATIONS2[activation] & 1:
        missing.append(f"the {activation} activation")
    missing += [f"{d} tensors" for d in dtypes if not info.dtypes >> DTYPES[d] & 1]
    if missing:
        raise UnsupportedError(f"{dev.path} (convaccel {info.version}) cannot run this layer: "
                               f"it lacks {', '.join(missing)} (INFO ops 0x{info.ops:x}, "
                               f"activations 0x{info.activations:x}, dtypes 0x{info.dtypes:x})")


def _act(spec: ref.ActivationSpec) -> ref.Activation:
    try:
        return ref.activation(spec)
    except ValueError as e:
        raise ShapeError(str(e)) from None


def _array(a: np.ndarray, dtype, name: str) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype != np.dtype(dtype) and not (dtype == np.float32 and a.dtype.kind == "f"):
        raise ShapeError(f"{name} must be {np.dtype(dtype).name}, got {a.dtype}")
    return np.ascontiguousarray(a, dtype=dtype)


def run(dev: "Device", op: str, geometry: dict[str, int], x: np.ndarray,
        out_dtype, *, x1: Optional[np.ndarray] = None, weight: Optional[np.ndarray] = None,
        bias: Optional[np.ndarray] = None, requant: Optional[np.ndarray] = None,
        lut: Optional[np.ndarray] = None, activation: ref.ActivationSpec = None,
        broadcast: bool = False, quant: Optional[dict] = None,
        timeout: Optional[float] = None) -> np.ndarray:
    """Copy the operands into one buffer, run one v2 layer, copy the output."""
    g = geometry
    act = _act(activation)
    out_dtype = np.dtype(out_dtype)
    require(dev, op, act.name or "none", sorted({_KIND[x.dtype], _KIND[out_dtype]}))
    out_shape = (g["n"], g["c_out"], g["h_out"], g["w_out"])
    named = [(k, a) for k, a in (("in0", x), ("in1", x1), ("weight", weight), ("bias", bias),
                                 ("requant", requant), ("lut", lut)) if a is not None]
    offsets, size = {}, 0
    for name, nbytes in [(k, a.nbytes) for k, a in named] + \
            [("out", int(np.prod(out_shape)) * out_dtype.itemsize)]:
        offsets[name] = size
        size += -(-nbytes // ALIGN) * ALIGN
    with dev.buffer(size) as buf:
        for name, a in named:
            buf.array(a.shape, dtype=a.dtype, offset=offsets[name])[...] = a
        view = lambda k, dt: View(buf.handle, offsets[k], _KIND[np.dtype(dt)])  # noqa: E731
        tensor = lambda k: Tensor(buf.handle, offsets[k]) if k in offsets else None  # noqa: E731
        layer = Layer2(op, in0=view("in0", x.dtype), out=view("out", out_dtype),
                       in1=view("in1", x1.dtype) if x1 is not None else None,
                       weight=tensor("weight"), bias=tensor("bias"),
                       requant=tensor("requant"), lut=tensor("lut"),
                       activation=act.name or "none", act_alpha=act.alpha, act_beta=act.beta,
                       broadcast=broadcast, geometry=g, quant=quant or {})
        dev.submit([layer]).wait(timeout)
        return buf.array(out_shape, dtype=out_dtype, offset=offsets["out"]).copy()


def pointwise_geometry(x_shape: tuple, c_out: Optional[int] = None,
                       out_hw: Optional[tuple] = None) -> dict[str, int]:
    """The fields of a layer with no window (kernel, stride, dilation 1)."""
    if len(x_shape) != 4:
        raise ShapeError(f"input must be NCHW (4 dimensions), got shape {x_shape}")
    n, c, h, w = (int(v) for v in x_shape)
    h_out, w_out = out_hw or (h, w)
    return dict(n=n, c_in=c, h_in=h, w_in=w, c_out=c if c_out is None else c_out,
                h_out=h_out, w_out=w_out, groups=1, kh=1, kw=1, stride_h=1, stride_w=1,
                dil_h=1, dil_w=1)


def _records(requant, count: int, op: str) -> np.ndarray:
    r = np.asarray(requant, np.int64).reshape(-1, 2)
    if r.shape != (count, 2):
        raise ShapeError(f"{op} needs {count} rescale record(s) (M, S), got {r.shape[0]}")
    return r.astype(np.int32)


def _quant(zp_in0=0, zp_in1=0, zp_out=0, act_min=-128, act_max=127, qscale=0.0) -> dict:
    return dict(zp_in0=zp_in0, zp_in1=zp_in1, zp_out=zp_out, act_min=act_min,
                act_max=act_max, qscale=qscale)


# --- float32 ------------------------------------------------------------------

def elementwise(dev: "Device", op: str, a: np.ndarray, b: np.ndarray,
                activation: ref.ActivationSpec = None,
                timeout: Optional[float] = None) -> np.ndarray:
    """add or mul of two float32 NCHW tensors; mul also by (N, C, 1, 1)."""
    a, b = _array(a, np.float32, "a"), _array(b, np.float32, "b")
    broadcast = op == "mul" and b.shape != a.shape and b.shape == a.shape[:2] + (1, 1)
    if b.shape != a.shape and not broadcast:
        raise ShapeError(f"{op}: shapes {a.shape} and {b.shape} differ"
                         + (" (mul broadcasts only an (N, C, 1, 1) tensor)" if op == "mul" else ""))
    return run(dev, op, pointwise_geometry(a.shape), a, np.float32, x1=b,
               activation=activation, broadcast=broadcast, timeout=timeout)


def activation(dev: "Device", x: np.ndarray, spec: ref.ActivationSpec,
               timeout: Optional[float] = None) -> np.ndarray:
    """One activation (or a copy, spec None) of a float32 NCHW tensor."""
    x = _array(x, np.float32, "x")
    return run(dev, "act", pointwise_geometry(x.shape), x, np.float32, activation=spec,
               timeout=timeout)


def scale_shift(dev: "Device", x: np.ndarray, scale: np.ndarray, shift: np.ndarray,
                activation: ref.ActivationSpec = None,
                timeout: Optional[float] = None) -> np.ndarray:
    """x * scale[c] + shift[c]: a batch norm that cannot fold into a conv."""
    x = _array(x, np.float32, "x")
    c = x.shape[1] if x.ndim == 4 else -1
    scale, shift = _array(scale, np.float32, "scale"), _array(shift, np.float32, "shift")
    if scale.shape != (c,) or shift.shape != (c,):
        raise ShapeError(f"scale and shift must have shape ({c},), got {scale.shape}, "
                         f"{shift.shape}")
    return run(dev, "scale_shift", pointwise_geometry(x.shape), x, np.float32, weight=scale,
               bias=shift, activation=activation, timeout=timeout)


def global_pool(dev: "Device", op: str, x: np.ndarray, activation: ref.ActivationSpec = None,
                timeout: Optional[float] = None) -> np.ndarray:
    """global_avgpool or global_maxpool: (N, C, H, W) -> (N, C, 1, 1), any H, W."""
    x = _array(x, np.float32, "x")
    return run(dev, op, pointwise_geometry(x.shape, out_hw=(1, 1)), x, np.float32,
               activation=activation, timeout=timeout)


def linear(dev: "Device", x: np.ndarray, weight: np.ndarray,
           bias: Optional[np.ndarray] = None, activation: ref.ActivationSpec = None,
           timeout: Optional[float] = None) -> np.ndarray:
    """A fully connected layer over a batch (PyTorch's F.linear): x (N, C_in)
    or (N, C_in, 1, 1), weight (C_out, C_in); the weights are read once."""
    x = _array(x, np.float32, "x")
    weight = _array(weight, np.float32, "weight")
    flat = x.ndim == 2
    x4 = x.reshape(x.shape + (1, 1)) if flat else x
    if x4.ndim != 4 or x4.shape[2:] != (1, 1) or weight.ndim != 2 or \
            weight.shape[1] != x4.shape[1]:
        raise ShapeError(f"linear: x {x.shape} must be (N, C_in) or (N, C_in, 1, 1) and "
                         f"weight (C_out, C_in), got weight {weight.shape}")
    if bias is not None:
        bias = _array(bias, np.float32, "bias")
        if bias.shape != (weight.shape[0],):
            raise ShapeError(f"bias must have shape ({weight.shape[0]},), got {bias.shape}")
    y = run(dev, "fc", pointwise_geometry(x4.shape, c_out=weight.shape[0]), x4, np.float32,
            weight=weight, bias=bias, activation=activation, timeout=timeout)
    return y.reshape(y.shape[:2]) if flat else y


# --- int8 ---------------------------------------------------------------------------

def conv2d_int8(dev: "Device", x, weight, bias=None, stride=1, padding=0, dilation=1,
                groups=1, *, requant, zp_in=0, zp_out=0, act_min=-128, act_max=127,
                lut=None, timeout=None) -> np.ndarray:
    """int8 CONV on the device; arguments as reference.conv2d_int8."""
    x, weight = _array(x, np.int8, "x"), _array(weight, np.int8, "weight")
    if weight.ndim != 4:
        raise ShapeError(f"weight must be [c_out][c_in/groups][kh][kw], got {weight.shape}")
    c_out, _, kh, kw = weight.shape
    g = window_geometry(dev, x.shape, c_out, (kh, kw), stride, padding, dilation, groups)
    return run(dev, "conv", g, x, np.int8, weight=weight,
               bias=None if bias is None else _array(bias, np.int32, "bias"),
               requant=_records(requant, c_out, "conv2d_int8"),
               lut=None if lut is None else _array(lut, np.int8, "lut"),
               quant=_quant(zp_in, 0, zp_out, act_min, act_max), timeout=timeout)


def linear_int8(dev: "Device", x, weight, bias=None, *, requant, zp_in=0, zp_out=0,
                act_min=-128, act_max=127, lut=None, timeout=None) -> np.ndarray:
    """int8 FC over a batch; arguments as reference.fc_int8."""
    x, weight = _array(x, np.int8, "x"), _array(weight, np.int8, "weight")
    flat = x.ndim == 2
    x4 = x.reshape(x.shape + (1, 1)) if flat else x
    y = run(dev, "fc", pointwise_geometry(x4.shape, c_out=weight.shape[0]), x4, np.int8,
            weight=weight, bias=None if bias is None else _array(bias, np.int32, "bias"),
            requant=_records(requant, weight.shape[0], "linear_int8"),
            lut=None if lut is None else _array(lut, np.int8, "lut"),
            quant=_quant(zp_in, 0, zp_out, act_min, act_max), timeout=timeout)
    return y.reshape(y.shape[:2]) if flat else y


def elementwise_int8(dev: "Device", op: str, a, b, *, requant, zp_in0=0, zp_in1=0, zp_out=0,
                     act_min=-128, act_max=127, lut=None, timeout=None) -> np.ndarray:
    """int8 add (3 rescale records) or mul (1); as reference.add_int8/mul_int8."""
    a, b = _array(a, np.int8, "a"), _array(b, np.int8, "b")
    broadcast = op == "mul" and b.shape != a.shape and b.shape == a.shape[:2] + (1, 1)
    if b.shape != a.shape and not broadcast:
        raise ShapeError(f"{op}_int8: shapes {a.shape} and {b.shape} differ")
    return run(dev, op, pointwise_geometry(a.shape), a, np.int8, x1=b,
               requant=_records(requant, 3 if op == "add" else 1, f"{op}_int8"),
               lut=None if lut is None else _array(lut, np.int8, "lut"), broadcast=broadcast,
               quant=_quant(zp_in0, zp_in1, zp_out, act_min, act_max), timeout=timeout)


def quantize(dev: "Device", x, scale: float, zp: int = 0, *, act_min=-128, act_max=127,
             timeout=None) -> np.ndarray:
    """float32 -> int8 on the device; as reference.quantize."""
    x = _array(x, np.float32, "x")
    return run(dev, "quantize", pointwise_geometry(x.shape), x, np.int8,
               quant=_quant(0, 0, zp, act_min, act_max, scale), timeout=timeout)


def dequantize(dev: "Device", q, scale: float, zp: int = 0, activation=None,
               timeout=None) -> np.ndarray:
    """int8 -> float32 on the device; as reference.dequantize."""
    q = _array(q, np.int8, "q")
    quant = dict(zp_in0=zp, qscale=scale)
    return run(dev, "dequantize", pointwise_geometry(q.shape), q, np.float32,
               activation=activation, quant=quant, timeout=timeout)


NUMPY_OF = NUMPY_DTYPES     # dtype names of views, for callers building their own layers
