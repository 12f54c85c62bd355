"""Pure-numpy reference for the convaccel device's arithmetic (the test oracle).

Needs only numpy (1.24 or newer) and no device. Layouts are the device's:
activations NCHW, conv weights ``[c_out][c_in / groups][kh][kw]``, bias
``[c_out]``. Results are float32 like the device's, but computed in float64,
so they differ from the device's float32 accumulation only by its rounding.

The convolution deliberately does not mirror the device's algorithm (im2col
and GEMM): it adds up one strided slice of the padded input per kernel tap.

    >>> import numpy as np
    >>> from pyaccel import reference as ref
    >>> x = np.ones((1, 1, 4, 4), np.float32)
    >>> ref.conv2d(x, np.ones((1, 1, 3, 3), np.float32), padding=1)[0, 0, 0]
    array([4., 6., 6., 4.], dtype=float32)
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple, Union

import numpy as np

__all__ = ["ACTIVATIONS", "avg_pool2d", "conv2d", "conv_output_size", "global_avg_pool2d",
           "max_pool2d", "padding4", "pair", "relu", "relu6", "softmax"]

IntPair = Union[int, Sequence[int]]
Padding = Union[int, Sequence[int]]

ACTIVATIONS = (None, "relu", "relu6")


def pair(value: IntPair, name: str, minimum: int = 1) -> Tuple[int, int]:
    """An int or an (h, w) pair as (h, w); each at least ``minimum``."""
    pair = (value, value) if np.isscalar(value) else tuple(value)
    if len(pair) != 2 or any(int(v) != v or v < minimum for v in pair):
        raise ValueError(f"{name} must be an int >= {minimum} or a pair of them, got {value!r}")
    return int(pair[0]), int(pair[1])


def padding4(padding: Padding) -> Tuple[int, int, int, int]:
    """An int, (h, w) or (top, bottom, left, right) as (top, bottom, left, right)."""
    pads = (padding,) if np.isscalar(padding) else tuple(padding)
    if len(pads) not in (1, 2, 4) or any(int(v) != v or v < 0 for v in pads):
        raise ValueError("padding must be an int >= 0, (h, w) or (top, bottom, left, right), "
                         f"got {padding!r}")
    pads = tuple(int(v) for v in pads)
    if len(pads) == 1:
        return pads * 4
    if len(pads) == 2:
        return pads[0], pads[0], pads[1], pads[1]
    return pads  # type: ignore[return-value]


def _nchw(x: np.ndarray, name: str = "x") -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 4:
        raise ValueError(f"{name} must be 4-D (N, C, H, W), got shape {x.shape}")
    return x


def conv_output_size(size: int, kernel: int, stride: int = 1, pad_before: int = 0,
                     pad_after: int = 0, dilation: int = 1) -> int:
    """Output length of a convolution or pooling window along one axis.

    ``floor((size + pads - dilation * (kernel - 1) - 1) / stride) + 1``; raises
    ValueError if the (dilated) kernel is larger than the padded input.
    """
    if min(size, kernel, stride, dilation) < 1 or min(pad_before, pad_after) < 0:
        raise ValueError(f"bad window: size={size} kernel={kernel} stride={stride} "
                         f"pads=({pad_before}, {pad_after}) dilation={dilation}")
    span = dilation * (kernel - 1) + 1
    padded = size + pad_before + pad_after
    if span > padded:
        raise ValueError(f"kernel spans {span} (kernel {kernel}, dilation {dilation}) but the "
                         f"padded input is only {padded} ({size} + {pad_before} + {pad_after})")
    return (padded - span) // stride + 1


def _activate(y: np.ndarray, activation: Optional[str]) -> np.ndarray:
    if activation is None:
        return y
    if activation == "relu":
        return relu(y)
    if activation == "relu6":
        return relu6(y)
    raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")


def _taps(xp: np.ndarray, kh: int, kw: int, stride: Tuple[int, int],
          dilation: Tuple[int, int], h_out: int, w_out: int):
    """Yield (i, j, view): for kernel tap (i, j), the padded input's (…, h_out, w_out)
    window of the positions that tap reads, i.e. rows i*dh + oh*sh, cols j*dw + ow*sw."""
    (sh, sw), (dh, dw) = stride, dilation
    for i in range(kh):
        for j in range(kw):
            r0, c0 = i * dh, j * dw
            yield i, j, xp[..., r0:r0 + sh * (h_out - 1) + 1:sh, c0:c0 + sw * (w_out - 1) + 1:sw]


def conv2d(x: np.ndarray, weight: np.ndarray, bias: Optional[np.ndarray] = None,
           stride: IntPair = 1, padding: Padding = 0, dilation: IntPair = 1,
           groups: int = 1, activation: Optional[str] = None) -> np.ndarray:
    """``activation(conv(x, weight) + bias)``, float32, computed in float64.

    x: (N, C_in, H, W); weight: (C_out, C_in / groups, KH, KW); bias: (C_out,)
    or None. stride and dilation: int or (h, w). padding: int, (h, w) or
    (top, bottom, left, right), zeros. activation: None, "relu" or "relu6".
    """
    x, weight = _nchw(x), _nchw(weight, "weight")
    n, c_in, h, w = x.shape
    c_out, cin_g, kh, kw = weight.shape
    if int(groups) != groups or groups < 1:
        raise ValueError(f"groups must be an int >= 1, got {groups!r}")
    if c_in % groups or c_out % groups:
        raise ValueError(f"groups={groups} must divide both c_in={c_in} and c_out={c_out}")
    if cin_g != c_in // groups:
        raise ValueError(f"weight has {cin_g} input channels per group, but x has "
                         f"c_in={c_in} over groups={groups}: expected {c_in // groups}")
    if bias is not None and np.shape(bias) != (c_out,):
        raise ValueError(f"bias must have shape ({c_out},), got {np.shape(bias)}")
    sh, sw = pair(stride, "stride")
    dh, dw = pair(dilation, "dilation")
    top, bottom, left, right = padding4(padding)
    h_out = conv_output_size(h, kh, sh, top, bottom, dh)
    w_out = conv_output_size(w, kw, sw, left, right, dw)

    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (top, bottom), (left, right)))
    xp = xp.reshape(n, groups, cin_g, xp.shape[2], xp.shape[3])
    wg = weight.astype(np.float64).reshape(groups, c_out // groups, cin_g, kh, kw)
    acc = np.zeros((n, groups, c_out // groups, h_out, w_out))
    for i, j, view in _taps(xp, kh, kw, (sh, sw), (dh, dw), h_out, w_out):
        # view: (n, g, c, h_out, w_out); tap weights: (g, o, c); sum over c.
        acc += np.einsum("ngchw,goc->ngohw", view, wg[:, :, :, i, j], optimize=True)
    acc = acc.reshape(n, c_out, h_out, w_out)
    if bias is not None:
        acc += np.asarray(bias, np.float64)[None, :, None, None]
    return _activate(acc, activation).astype(np.float32)


def _pool(x: np.ndarray, kernel_size: IntPair, stride: Optional[IntPair], padding: Padding,
          fill: float, reduce) -> Tuple[np.ndarray, int]:
    x = _nchw(x)
    kh, kw = pair(kernel_size, "kernel_size")
    sh, sw = pair(kernel_size if stride is None else stride, "stride")
    top, bottom, left, right = padding4(padding)
    h_out = conv_output_size(x.shape[2], kh, sh, top, bottom)
    w_out = conv_output_size(x.shape[3], kw, sw, left, right)
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (top, bottom), (left, right)),
                constant_values=fill)
    acc = np.full(x.shape[:2] + (h_out, w_out), fill)
    for _, _, view in _taps(xp, kh, kw, (sh, sw), (1, 1), h_out, w_out):
        acc = reduce(acc, view)
    return acc, kh * kw


def max_pool2d(x: np.ndarray, kernel_size: IntPair, stride: Optional[IntPair] = None,
               padding: Padding = 0) -> np.ndarray:
    """Max pooling (float32). stride defaults to kernel_size; padding is -inf,
    so it never wins (a window entirely in the padding gives -inf)."""
    acc, _ = _pool(x, kernel_size, stride, padding, -np.inf, np.maximum)
    return acc.astype(np.float32)


def avg_pool2d(x: np.ndarray, kernel_size: IntPair, stride: Optional[IntPair] = None,
               padding: Padding = 0) -> np.ndarray:
    """Average pooling (float32) over kh * kw positions, zero padding included
    in the count (PyTorch's count_include_pad=True). stride defaults to kernel_size."""
    acc, count = _pool(x, kernel_size, stride, padding, 0.0, np.add)
    return (acc / count).astype(np.float32)


def global_avg_pool2d(x: np.ndarray) -> np.ndarray:
    """Mean over H and W: (N, C, H, W) -> (N, C, 1, 1), float32."""
    x = _nchw(x)
    return x.astype(np.float64).mean(axis=(2, 3), keepdims=True).astype(np.float32)


def _floating(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    return x if np.issubdtype(x.dtype, np.floating) else x.astype(np.float32)


def relu(x: np.ndarray) -> np.ndarray:
    """max(x, 0), elementwise; keeps a floating dtype (others become float32)."""
    x = _floating(x)
    return np.maximum(x, 0).astype(x.dtype, copy=False)


def relu6(x: np.ndarray) -> np.ndarray:
    """min(max(x, 0), 6), elementwise; keeps a floating dtype (others become float32)."""
    x = _floating(x)
    return np.clip(x, 0, 6).astype(x.dtype, copy=False)


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """exp(x) / sum(exp(x)) along axis, shifted by the max for stability."""
    x = _floating(x)
    e = np.exp(x.astype(np.float64) - x.max(axis=axis, keepdims=True))
    return (e / e.sum(axis=axis, keepdims=True)).astype(x.dtype)
