"""Single layers on the device, numpy in and numpy out: conv2d and pooling.

Arguments are checked against the device's limits (from INFO) before any
ioctl, so most mistakes get a precise message here rather than an errno.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import numpy as np

from . import reference as ref
from .errors import ShapeError
from .jobs import Layer, Tensor

if TYPE_CHECKING:
    from .device import Device

ALIGN = 64   # byte alignment of each tensor inside the job's buffer
V1_ACTIVATIONS = (None, "relu", "relu6")   # what a v1 layer fuses


def _check(cond: bool, message: str) -> None:
    if not cond:
        raise ShapeError(message)


def window_geometry(dev: "Device", x_shape: tuple, c_out: int, kernel: ref.IntPair,
                    stride: ref.IntPair, padding: ref.Padding, dilation: ref.IntPair,
                    groups: int) -> dict[str, int]:
    """The layer fields of a sliding-window op on an NCHW input, checked."""
    info = dev.info
    _check(len(x_shape) == 4, f"input must be NCHW (4 dimensions), got shape {x_shape}")
    n, c_in, h_in, w_in = (int(v) for v in x_shape)
    try:
        kh, kw = ref.pair(kernel, "kernel")
        sh, sw = ref.pair(stride, "stride")
        dh, dw = ref.pair(dilation, "dilation")
        pt, pb, pl, pr = ref.padding4(padding)
    except ValueError as e:
        raise ShapeError(str(e)) from None
    _check(max(kh, kw, sh, sw, dh, dw) <= info.max_kernel,
           f"kernel {kh}x{kw}, stride {sh}x{sw}, dilation {dh}x{dw}: the device "
           f"allows at most {info.max_kernel}")
    _check(max(pt, pb, pl, pr) <= info.max_pad,
           f"padding {(pt, pb, pl, pr)}: the device allows at most {info.max_pad}")
    _check(max(c_in, c_out) <= info.max_channels,
           f"{c_in} -> {c_out} channels: the device allows at most {info.max_channels}")
    _check(max(n, h_in, w_in) <= info.max_dim and min(n, c_in, h_in, w_in) >= 1,
           f"input shape {x_shape}: sizes must be 1..{info.max_dim}")
    _check(groups >= 1 and c_in % groups == 0 and c_out % groups == 0,
           f"groups={groups} must divide the {c_in} input and {c_out} output channels")
    try:
        h_out = ref.conv_output_size(h_in, kh, sh, pt, pb, dh)
        w_out = ref.conv_output_size(w_in, kw, sw, pl, pr, dw)
    except ValueError:
        raise ShapeError(f"a {kh}x{kw} kernel (dilation {dh}x{dw}) does not fit in the "
                         f"padded {h_in}x{w_in} input") from None
    return dict(n=n, c_in=c_in, h_in=h_in, w_in=w_in, c_out=c_out, h_out=h_out, w_out=w_out,
                groups=groups, kh=kh, kw=kw, stride_h=sh, stride_w=sw, dil_h=dh, dil_w=dw,
                pad_top=pt, pad_bottom=pb, pad_left=pl, pad_right=pr)


def run_layer(dev: "Device", op: str, geometry: dict[str, int], x: np.ndarray,
              weight: Optional[np.ndarray] = None, bias: Optional[np.ndarray] = None,
              activation: Optional[str] = None, timeout: Optional[float] = None) -> np.ndarray:
    """Copy the operands into one device buffer, run one layer, copy out."""
    g = geometry
    out_shape = (g["n"], g["c_out"], g["h_out"], g["w_out"])
    arrays = [np.ascontiguousarray(a, dtype=np.float32) for a in (x, weight, bias)
              if a is not None]
    offsets, size = [], 0
    for nbytes in [a.nbytes for a in arrays] + [4 * int(np.prod(out_shape))]:
        offsets.append(size)
        size += -(-nbytes // ALIGN) * ALIGN
    with dev.buffer(size) as buf:
        for a, off in zip(arrays, offsets):
            buf.array(a.shape, offset=off)[...] = a
        tensors = iter(Tensor(buf.handle, off) for off in offsets)
        layer = Layer(op, input=next(tensors),
                      weight=next(tensors) if weight is not None else None,
                      bias=next(tensors) if bias is not None else None,
                      output=next(tensors), activation=activation or "none", geometry=g)
        dev.submit([layer]).wait(timeout)
        return buf.array(out_shape, offset=offsets[-1]).copy()


def conv2d(dev: "Device", x: np.ndarray, weight: np.ndarray, bias: Optional[np.ndarray] = None,
           stride: ref.IntPair = 1, padding: ref.Padding = 0, dilation: ref.IntPair = 1,
           groups: int = 1, activation: Optional[str] = None,
           timeout: Optional[float] = None) -> np.ndarray:
    """activation(conv2d(x, weight) + bias) on the device; PyTorch's argument
    conventions, NCHW float32. padding: int, (h, w) or (top, bottom, left, right)."""
    _check(weight.ndim == 4, f"weight must be [c_out][c_in/groups][kh][kw], got {weight.shape}")
    c_out, cin_g, kh, kw = weight.shape
    g = window_geometry(dev, x.shape, c_out, (kh, kw), stride, padding, dilation, groups)
    _check(cin_g * groups == g["c_in"],
           f"weight {weight.shape} expects {cin_g * groups} input channels "
           f"with groups={groups}, the input has {g['c_in']}")
    _check(bias is None or bias.shape == (c_out,),
           f"bias must have shape ({c_out},), got {None if bias is None else bias.shape}")
    _check(activation in V1_ACTIVATIONS,
           f"conv2d takes activation one of {V1_ACTIVATIONS} (the others: run it as a "
           f"hardware 2.0 layer)")
    return run_layer(dev, "conv", g, x, weight, bias, activation, timeout)


def pool2d(dev: "Device", op: str, x: np.ndarray, kernel_size: ref.IntPair,
           stride: Optional[ref.IntPair] = None, padding: ref.Padding = 0,
           timeout: Optional[float] = None) -> np.ndarray:
    """Max ("maxpool") or average ("avgpool") pooling on the device."""
    g = window_geometry(dev, x.shape, x.shape[1] if x.ndim == 4 else 0, kernel_size,
                        kernel_size if stride is None else stride, padding, 1, 1)
    _check(max(g["pad_top"], g["pad_bottom"]) < g["kh"] and
           max(g["pad_left"], g["pad_right"]) < g["kw"],
           f"pooling padding must be below the kernel size {g['kh']}x{g['kw']}")
    return run_layer(dev, op, g, x, timeout=timeout)
