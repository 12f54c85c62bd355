"""Pure-numpy reference for the convaccel device's arithmetic (the test oracle).

Needs only numpy (1.24 or newer) and no device. Layouts are the device's:
activations NCHW, conv weights ``[c_out][c_in / groups][kh][kw]``, bias
``[c_out]``. Results are float32 like the device's, but computed in float64,
so they differ from the device's float32 accumulation only by its rounding.

The convolution deliberately does not mirror the device's algorithm (im2col
and GEMM): it adds up one strided slice of the padded input per kernel tap.

Every op takes ``activation=``, applied last (after the bias, the sum or the
pooling), as the device fuses it. An activation is given as

- None (or "none"), "relu", "relu6", "sigmoid", "hard_swish": no parameter;
- "leaky_relu" (alpha 0.01, PyTorch's and ONNX's default) or
  ("leaky_relu", alpha);
- "hard_sigmoid" (alpha 1/6, beta 0.5: PyTorch's; ONNX's default is alpha
  0.2), ("hard_sigmoid", alpha) or ("hard_sigmoid", alpha, beta);
  "hard_swish" also takes (alpha, beta), which the device's descriptor has;
- or an :class:`Activation` (what :func:`activation` makes of the above).

NaN propagates as in PyTorch (every activation of NaN is NaN).

The int8 golden model (``conv2d_int8``, ``rescale``, ``quantize`` ...) lives
in :mod:`pyaccel.reference_int8` and is re-exported here.

    >>> import numpy as np
    >>> from pyaccel import reference as ref
    >>> x = np.ones((1, 1, 4, 4), np.float32)
    >>> ref.conv2d(x, np.ones((1, 1, 3, 3), np.float32), padding=1)[0, 0, 0]
    array([4., 6., 6., 4.], dtype=float32)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, List, Optional, Sequence, Tuple, Union

import numpy as np

__all__ = ["ACTIVATIONS", "V1_ACTIVATIONS", "Activation", "activation", "act", "add",
           "avg_pool2d", "conv2d", "conv_output_size", "fc", "global_avg_pool2d",
           "global_max_pool2d", "hard_sigmoid", "hard_swish", "leaky_relu", "linear",
           "max_pool2d", "mul", "padding4", "pair", "relu", "relu6", "scale_shift", "sigmoid",
           "softmax"]

IntPair = Union[int, Sequence[int]]
Padding = Union[int, Sequence[int]]

# Activation names, in the device's order (act codes 0..6 of a v2 descriptor).
ACTIVATIONS = (None, "relu", "relu6", "leaky_relu", "sigmoid", "hard_sigmoid", "hard_swish")
# What a v1 layer descriptor can fuse (its 2-bit field).
V1_ACTIVATIONS = (None, "relu", "relu6")


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


@dataclass(frozen=True)
class Activation:
    """A fused activation with its parameters, as a v2 descriptor holds it.

    name: one of ACTIVATIONS (None: identity); alpha, beta: the descriptor's
    ``act_alpha``/``act_beta`` (LeakyReLU's slope; hard-sigmoid's and
    hard-swish's ``min(max(alpha * x + beta, 0), 1)``), 0 where unused,
    rounded to float32 as the descriptor's f32 fields hold them.
    ``code`` is the descriptor's act number (0..6).
    """
    name: Optional[str] = None
    alpha: float = 0.0
    beta: float = 0.0

    def __post_init__(self) -> None:
        if self.name not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {self.name!r}")
        for field in ("alpha", "beta"):
            value = getattr(self, field)
            if not np.isfinite(value):
                raise ValueError(f"{self.name} {field} must be finite, got {value!r}")
            # held as the descriptor's f32 act_alpha / act_beta hold it
            object.__setattr__(self, field, float(np.float32(value)))

    @property
    def code(self) -> int:
        return ACTIVATIONS.index(self.name)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """The activation of x, elementwise (keeps a floating dtype)."""
        if self.name is None:
            return _floating(x)
        if self.name == "relu":
            return relu(x)
        if self.name == "relu6":
            return relu6(x)
        if self.name == "leaky_relu":
            return leaky_relu(x, self.alpha)
        if self.name == "sigmoid":
            return sigmoid(x)
        if self.name == "hard_sigmoid":
            return hard_sigmoid(x, self.alpha, self.beta)
        return hard_swish(x, self.alpha, self.beta)


# Parameters a name alone stands for: (alpha, beta).
_DEFAULTS = {"leaky_relu": (0.01, 0.0), "hard_sigmoid": (1 / 6, 0.5), "hard_swish": (1 / 6, 0.5)}

ActivationSpec = Union[None, str, Tuple[Any, ...], Activation]


def activation(spec: ActivationSpec) -> Activation:
    """An ``activation=`` argument as an :class:`Activation`.

    None or "none"; a name of ACTIVATIONS (LeakyReLU alpha 0.01; hard-sigmoid
    and hard-swish alpha 1/6, beta 0.5); ("leaky_relu", alpha);
    ("hard_sigmoid" or "hard_swish", alpha[, beta]); or an Activation.
    """
    if isinstance(spec, Activation):
        return spec
    if spec is None or spec == "none":
        return Activation(None)
    name, params = spec, ()
    if isinstance(spec, tuple) and spec:
        name, params = spec[0], spec[1:]
    if name not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}, a (name, alpha[, beta]) "
                         f"tuple or an Activation, got {spec!r}")
    defaults = _DEFAULTS.get(name)
    if defaults is None:
        if params:
            raise ValueError(f"activation {name!r} takes no parameters, got {spec!r}")
        return Activation(name)
    most = 1 if name == "leaky_relu" else 2
    if len(params) > most:
        raise ValueError(f"activation {name!r} takes at most {most} parameter(s), got {spec!r}")
    alpha, beta = (tuple(float(p) for p in params) + defaults[len(params):])[:2]
    return Activation(name, alpha, beta)


def _activate(y: np.ndarray, spec: ActivationSpec) -> np.ndarray:
    return y if spec is None else activation(spec)(y)


def _taps(xp: np.ndarray, kh: int, kw: int, stride: Tuple[int, int],
          dilation: Tuple[int, int], h_out: int, w_out: int):
    """Yield (i, j, view): for kernel tap (i, j), the padded input's (…, h_out, w_out)
    window of the positions that tap reads, i.e. rows i*dh + oh*sh, cols j*dw + ow*sw."""
    (sh, sw), (dh, dw) = stride, dilation
    for i in range(kh):
        for j in range(kw):
            r0, c0 = i * dh, j * dw
            yield i, j, xp[..., r0:r0 + sh * (h_out - 1) + 1:sh, c0:c0 + sw * (w_out - 1) + 1:sw]


def _conv_sum(x: np.ndarray, weight: np.ndarray, stride: IntPair, padding: Padding,
              dilation: IntPair, groups: int, dtype: type) -> np.ndarray:
    """``sum over (c, i, j) of x_padded[n, g*cin_g + c, ...] * weight[o, c, i, j]``
    in ``dtype`` (float64 here, int64 for int8): (N, C_out, H_out, W_out), padding 0.

    Checks the shapes; x and weight are already the values to multiply.
    """
    x, weight = _nchw(x), _nchw(weight, "weight")
    n, c_in, h, w = x.shape
    c_out, cin_g, kh, kw = weight.shape
    if int(groups) != groups or groups < 1:
        raise ValueError(f"groups must be an int >= 1, got {groups!r}")
    groups = int(groups)
    if c_in % groups or c_out % groups:
        raise ValueError(f"groups={groups} must divide both c_in={c_in} and c_out={c_out}")
    if cin_g != c_in // groups:
        raise ValueError(f"weight has {cin_g} input channels per group, but x has "
                         f"c_in={c_in} over groups={groups}: expected {c_in // groups}")
    sh, sw = pair(stride, "stride")
    dh, dw = pair(dilation, "dilation")
    top, bottom, left, right = padding4(padding)
    h_out = conv_output_size(h, kh, sh, top, bottom, dh)
    w_out = conv_output_size(w, kw, sw, left, right, dw)

    xp = np.pad(x.astype(dtype), ((0, 0), (0, 0), (top, bottom), (left, right)))
    xp = xp.reshape(n, groups, cin_g, xp.shape[2], xp.shape[3])
    wg = weight.astype(dtype).reshape(groups, c_out // groups, cin_g, kh, kw)
    acc = np.zeros((n, groups, c_out // groups, h_out, w_out), dtype)
    for i, j, view in _taps(xp, kh, kw, (sh, sw), (dh, dw), h_out, w_out):
        # view: (n, g, c, h_out, w_out); tap weights: (g, o, c); sum over c.
        acc += np.einsum("ngchw,goc->ngohw", view, wg[:, :, :, i, j], optimize=True)
    return acc.reshape(n, c_out, h_out, w_out)


def conv2d(x: np.ndarray, weight: np.ndarray, bias: Optional[np.ndarray] = None,
           stride: IntPair = 1, padding: Padding = 0, dilation: IntPair = 1,
           groups: int = 1, activation: ActivationSpec = None) -> np.ndarray:
    """``activation(conv(x, weight) + bias)``, float32, computed in float64.

    x: (N, C_in, H, W); weight: (C_out, C_in / groups, KH, KW); bias: (C_out,)
    or None. stride and dilation: int or (h, w). padding: int, (h, w) or
    (top, bottom, left, right), zeros. activation: see the module docstring.
    """
    c_out = np.shape(weight)[0] if np.ndim(weight) == 4 else None
    if bias is not None and c_out is not None and np.shape(bias) != (c_out,):
        raise ValueError(f"bias must have shape ({c_out},), got {np.shape(bias)}")
    acc = _conv_sum(x, weight, stride, padding, dilation, groups, np.float64)
    if bias is not None:
        acc += np.asarray(bias, np.float64)[None, :, None, None]
    return _activate(acc, activation).astype(np.float32)


def _pool(x: np.ndarray, kernel_size: IntPair, stride: Optional[IntPair], padding: Padding,
          fill: float, reduce, dtype: type = np.float64) -> Tuple[np.ndarray, int]:
    """``reduce`` over each window (padding is ``fill``) in ``dtype``: (acc, kh * kw)."""
    x = _nchw(x)
    kh, kw = pair(kernel_size, "kernel_size")
    sh, sw = pair(kernel_size if stride is None else stride, "stride")
    top, bottom, left, right = padding4(padding)
    h_out = conv_output_size(x.shape[2], kh, sh, top, bottom)
    w_out = conv_output_size(x.shape[3], kw, sw, left, right)
    xp = np.pad(x.astype(dtype), ((0, 0), (0, 0), (top, bottom), (left, right)),
                constant_values=fill)
    acc = np.full(x.shape[:2] + (h_out, w_out), fill, dtype)
    for _, _, view in _taps(xp, kh, kw, (sh, sw), (1, 1), h_out, w_out):
        acc = reduce(acc, view)
    return acc, kh * kw


def max_pool2d(x: np.ndarray, kernel_size: IntPair, stride: Optional[IntPair] = None,
               padding: Padding = 0, activation: ActivationSpec = None) -> np.ndarray:
    """Max pooling (float32). stride defaults to kernel_size; padding is -inf,
    so it never wins (a window entirely in the padding gives -inf)."""
    acc, _ = _pool(x, kernel_size, stride, padding, -np.inf, np.maximum)
    return _activate(acc, activation).astype(np.float32)


def avg_pool2d(x: np.ndarray, kernel_size: IntPair, stride: Optional[IntPair] = None,
               padding: Padding = 0, activation: ActivationSpec = None) -> np.ndarray:
    """Average pooling (float32) over kh * kw positions, zero padding included
    in the count (PyTorch's count_include_pad=True). stride defaults to kernel_size."""
    acc, count = _pool(x, kernel_size, stride, padding, 0.0, np.add)
    return _activate(acc / count, activation).astype(np.float32)


def global_avg_pool2d(x: np.ndarray, activation: ActivationSpec = None) -> np.ndarray:
    """Mean over H and W: (N, C, H, W) -> (N, C, 1, 1), float32."""
    x = _nchw(x)
    y = x.astype(np.float64).mean(axis=(2, 3), keepdims=True)
    return _activate(y, activation).astype(np.float32)


def global_max_pool2d(x: np.ndarray, activation: ActivationSpec = None) -> np.ndarray:
    """Max over H and W: (N, C, H, W) -> (N, C, 1, 1), float32; NaN wins."""
    x = _nchw(x)
    y = x.astype(np.float64).max(axis=(2, 3), keepdims=True)
    return _activate(y, activation).astype(np.float32)


def _same_shape(x0: np.ndarray, x1: np.ndarray, op: str) -> Tuple[np.ndarray, np.ndarray]:
    x0, x1 = _nchw(x0, "x0"), _nchw(x1, "x1")
    if x0.shape != x1.shape:
        raise ValueError(f"{op}: x0 and x1 must have one shape, got {x0.shape} and {x1.shape}")
    return x0, x1


def add(x0: np.ndarray, x1: np.ndarray, activation: ActivationSpec = None) -> np.ndarray:
    """``activation(x0 + x1)``, elementwise over two (N, C, H, W) tensors of one shape."""
    x0, x1 = _same_shape(x0, x1, "add")
    return _activate(x0.astype(np.float64) + x1, activation).astype(np.float32)


def _mul_operand(x0: np.ndarray, x1: np.ndarray, op: str) -> Tuple[np.ndarray, np.ndarray]:
    x0, x1 = _nchw(x0, "x0"), _nchw(x1, "x1")
    n, c = x0.shape[:2]
    if x1.shape != x0.shape and x1.shape != (n, c, 1, 1):
        raise ValueError(f"{op}: x1 must have x0's shape {x0.shape} or be per channel "
                         f"{(n, c, 1, 1)} (BCAST), got {x1.shape}")
    return x0, x1


def mul(x0: np.ndarray, x1: np.ndarray, activation: ActivationSpec = None) -> np.ndarray:
    """``activation(x0 * x1)``, elementwise; x1 has x0's shape (N, C, H, W) or is
    (N, C, 1, 1), one factor per image and channel (the descriptor's BCAST)."""
    x0, x1 = _mul_operand(x0, x1, "mul")
    return _activate(x0.astype(np.float64) * x1, activation).astype(np.float32)


def _per_channel(v: np.ndarray, c: int, name: str) -> np.ndarray:
    v = np.asarray(v)
    if v.shape != (c,):
        raise ValueError(f"{name} must have shape ({c},), one value per channel, got {v.shape}")
    return v


def scale_shift(x: np.ndarray, scale: np.ndarray, shift: np.ndarray,
                activation: ActivationSpec = None) -> np.ndarray:
    """``activation(x * scale[c] + shift[c])`` per channel c of (N, C, H, W) x:
    a batch norm that cannot fold into a convolution."""
    x = _nchw(x)
    c = x.shape[1]
    scale = _per_channel(scale, c, "scale").astype(np.float64)[None, :, None, None]
    shift = _per_channel(shift, c, "shift").astype(np.float64)[None, :, None, None]
    return _activate(x.astype(np.float64) * scale + shift, activation).astype(np.float32)


def _fc_input(x: np.ndarray) -> np.ndarray:
    """(N, C_in) or (N, C_in, 1, 1) as (N, C_in)."""
    x = np.asarray(x)
    if x.ndim == 2:
        return x
    if x.ndim == 4 and x.shape[2:] == (1, 1):
        return x.reshape(x.shape[:2])
    raise ValueError(f"fc input must be (N, C_in) or (N, C_in, 1, 1), got shape {x.shape}")


def _fc_weight(x2: np.ndarray, weight: np.ndarray) -> np.ndarray:
    weight = np.asarray(weight)
    if weight.ndim != 2 or weight.shape[1] != x2.shape[1]:
        raise ValueError(f"fc weight must be (C_out, C_in) with C_in = {x2.shape[1]}, "
                         f"got shape {weight.shape}")
    return weight


def fc(x: np.ndarray, weight: np.ndarray, bias: Optional[np.ndarray] = None,
       activation: ActivationSpec = None) -> np.ndarray:
    """``activation(x @ weight.T + bias)``: a fully connected layer over a batch.

    x: (N, C_in) or (N, C_in, 1, 1); weight: (C_out, C_in); bias: (C_out,) or
    None. The output has x's rank: (N, C_out) or (N, C_out, 1, 1), float32.
    """
    x2 = _fc_input(x)
    weight = _fc_weight(x2, weight)
    y = x2.astype(np.float64) @ weight.astype(np.float64).T
    if bias is not None:
        y = y + _per_channel(bias, weight.shape[0], "bias").astype(np.float64)
    y = _activate(y, activation).astype(np.float32)
    return y if np.ndim(x) == 2 else y.reshape(y.shape + (1, 1))


linear = fc


def act(x: np.ndarray, activation: ActivationSpec = None) -> np.ndarray:
    """The ACT op: ``activation(x)`` as float32 (activation None: a copy)."""
    return _activate(np.asarray(x, np.float64), activation).astype(np.float32)


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


def leaky_relu(x: np.ndarray, alpha: float = 0.01) -> np.ndarray:
    """x if x >= 0 else alpha * x, elementwise (NaN stays NaN); keeps a floating dtype."""
    x = _floating(x)
    return np.where(x >= 0, x, x * np.asarray(alpha, x.dtype)).astype(x.dtype, copy=False)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-x)), elementwise, without overflow (exp of -|x| only);
    keeps a floating dtype."""
    x = _floating(x)
    e = np.exp(-np.abs(x))              # in (0, 1]; NaN stays NaN
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)


def hard_sigmoid(x: np.ndarray, alpha: float = 1 / 6, beta: float = 0.5) -> np.ndarray:
    """min(max(alpha * x + beta, 0), 1), elementwise (ONNX HardSigmoid; PyTorch's
    Hardsigmoid is alpha 1/6, beta 0.5); keeps a floating dtype."""
    x = _floating(x)
    y = x * np.asarray(alpha, x.dtype) + np.asarray(beta, x.dtype)
    return np.clip(y, 0, 1).astype(x.dtype, copy=False)


def hard_swish(x: np.ndarray, alpha: float = 1 / 6, beta: float = 0.5) -> np.ndarray:
    """x * hard_sigmoid(x, alpha, beta) (PyTorch and ONNX HardSwish: x * relu6(x + 3) / 6
    up to rounding); keeps a floating dtype. hard_swish(-inf) is NaN (-inf * 0), as
    in PyTorch."""
    x = _floating(x)
    with np.errstate(invalid="ignore"):             # -inf * 0
        return (x * hard_sigmoid(x, alpha, beta)).astype(x.dtype, copy=False)


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """exp(x) / sum(exp(x)) along axis, shifted by the max for stability."""
    x = _floating(x)
    e = np.exp(x.astype(np.float64) - x.max(axis=axis, keepdims=True))
    return (e / e.sum(axis=axis, keepdims=True)).astype(x.dtype)


# --- the int8 golden model, from pyaccel.reference_int8 ---------------------------
# Imported on first use (PEP 562), so that either module may be imported first.

_INT8_NAMES = ("ACC_BITS", "ADD_LEFT_SHIFT", "LUT_SIZE", "SHIFT_MAX", "SHIFT_MIN",
               "act_int8", "add_int8", "avg_pool2d_int8", "conv2d_int8", "dequantize",
               "fc_int8", "global_avg_pool2d_int8", "global_max_pool2d_int8", "linear_int8",
               "max_pool2d_int8", "mul_int8", "quantize", "quantize_multiplier", "rescale",
               "scale_shift_int8", "wrap_int32")
__all__ += list(_INT8_NAMES)


def __getattr__(name: str) -> Any:
    if name in _INT8_NAMES:
        from . import reference_int8
        value = getattr(reference_int8, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> List[str]:
    return sorted(set(globals()) | set(_INT8_NAMES))
