"""A network's forward pass in float32 numpy: the CPU baseline of the benchmark.

What an efficient numpy user would write on the guest's CPU, unlike the
oracle (pyaccel.reference, float64 and written for clarity):

- convolutions: im2col through numpy.lib.stride_tricks.sliding_window_view,
  then one matmul per image and group (a 1x1 stride-1 convolution is a
  plain matmul, no copy);
- depthwise convolutions: a sum over the kernel taps of strided slices,
  each scaled by its per-channel weight;
- pooling: a max or sum over the taps; global average pooling: a mean.

Numpy 1.24 or newer (the guest's). `python3 bench/cpu_numpy.py` checks it
against the oracle on small networks.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Mapping, Optional

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pyaccel import reference as ref  # noqa: E402
from pyaccel.graph import Conv2d, Model, Pool2d  # noqa: E402


def _pad(x: np.ndarray, pads: tuple, value: float = 0.0) -> np.ndarray:
    top, bottom, left, right = pads
    if not any(pads):
        return x
    return np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)), constant_values=value)


def _taps(xp: np.ndarray, k: tuple, stride: tuple, dil: tuple, out: tuple):
    """The strided (N, C, h_out, w_out) slice of the padded input each tap reads."""
    for i in range(k[0]):
        for j in range(k[1]):
            r, c = i * dil[0], j * dil[1]
            yield i, j, xp[:, :, r:r + stride[0] * (out[0] - 1) + 1:stride[0],
                           c:c + stride[1] * (out[1] - 1) + 1:stride[1]]


def _activate(y: np.ndarray, activation: Optional[str]) -> np.ndarray:
    if activation == "relu":
        np.maximum(y, 0, out=y)
    elif activation == "relu6":
        np.clip(y, 0, 6, out=y)
    return y


def conv2d(x: np.ndarray, op: Conv2d, w: np.ndarray, b: Optional[np.ndarray]) -> np.ndarray:
    n, c_in, h, wd = x.shape
    c_out, cin_g, kh, kw = w.shape
    g = op.groups
    stride, dil = ref.pair(op.stride, "stride"), ref.pair(op.dilation, "dilation")
    pads = ref.padding4(op.padding)
    h_out = ref.conv_output_size(h, kh, stride[0], pads[0], pads[1], dil[0])
    w_out = ref.conv_output_size(wd, kw, stride[1], pads[2], pads[3], dil[1])
    xp = _pad(x, pads)
    if cin_g == 1 and c_out == g:          # depthwise: sum over taps
        y = np.zeros((n, c_out, h_out, w_out), np.float32)
        for i, j, view in _taps(xp, (kh, kw), stride, dil, (h_out, w_out)):
            y += view * w[None, :, 0, i, j, None, None]
    elif (kh, kw, stride) == (1, 1, (1, 1)) and g == 1:
        y = np.matmul(w.reshape(c_out, c_in), xp.reshape(n, c_in, h_out * w_out))
    else:
        span = (dil[0] * (kh - 1) + 1, dil[1] * (kw - 1) + 1)
        win = sliding_window_view(xp, span, axis=(2, 3))           # N C H' W' sh sw
        win = win[:, :, ::stride[0], ::stride[1], ::dil[0], ::dil[1]][:, :, :h_out, :w_out]
        cols = win.reshape(n, g, cin_g, h_out, w_out, kh, kw)
        cols = cols.transpose(0, 1, 2, 5, 6, 3, 4).reshape(n, g, cin_g * kh * kw,
                                                           h_out * w_out)
        wg = w.reshape(g, c_out // g, cin_g * kh * kw)
        y = np.matmul(wg[None], cols)                               # N g o HW
    y = y.reshape(n, c_out, h_out, w_out)
    if b is not None:
        y += b[None, :, None, None]
    return _activate(y, op.activation)


def pool2d(x: np.ndarray, op: Pool2d) -> np.ndarray:
    (kh, kw), stride = op.window(x.shape[1:])
    pads = ref.padding4(op.padding)
    if op.kind == "avg" and (kh, kw) == x.shape[2:] and not any(pads):
        y = x.mean(axis=(2, 3), keepdims=True, dtype=np.float32)
    else:
        h_out = ref.conv_output_size(x.shape[2], kh, stride[0], pads[0], pads[1])
        w_out = ref.conv_output_size(x.shape[3], kw, stride[1], pads[2], pads[3])
        xp = _pad(x, pads, -np.inf if op.kind == "max" else 0.0)
        y = None
        for _, _, view in _taps(xp, (kh, kw), stride, (1, 1), (h_out, w_out)):
            y = view.copy() if y is None else (np.maximum(y, view, out=y) if op.kind == "max"
                                               else np.add(y, view, out=y))
        if op.kind == "avg":
            y *= np.float32(1.0 / (kh * kw))
    return _activate(y, op.activation)


def forward(model: Model, x: np.ndarray, weights: Optional[Mapping[str, np.ndarray]] = None
            ) -> np.ndarray:
    """(N, C, H, W) -> class scores (softmax if the model has one), float32."""
    w = model.weights if weights is None else weights
    y = np.ascontiguousarray(x, np.float32)
    for op in model.ops:
        if isinstance(op, Conv2d):
            y = conv2d(y, op, w[f"{op.name}.weight"], w.get(f"{op.name}.bias"))
        else:
            y = pool2d(y, op)
    y = y.reshape(y.shape[0], -1)
    return ref.softmax(y, axis=1) if model.softmax else y


def check_models() -> list[Model]:
    """Small networks covering every path: dense, strided, 1x1, depthwise,
    global pooling, several depths; and a graph with max/avg pooling, dilation,
    grouped and asymmetric padding."""
    from pyaccel import graph, models

    odd = Model.build("odd", (6, 13, 11), [
        graph.Conv2d(6, 8, 3, 1, (1, 0, 2, 1), dilation=2, groups=2, name="g"), graph.ReLU(),
        graph.Pool2d("max", 3, 2, 1, name="mp"),
        graph.Conv2d(8, 8, (3, 1), (2, 1), 1, groups=8, name="dw"), graph.ReLU6(),
        graph.Pool2d("avg", 2, 1, 1, name="ap"),
        graph.Conv2d(8, 5, 1, name="pw"), graph.GlobalAvgPool2d(name="gap")], seed=3)
    return [models.allconv(variant="quarter-double12", input_size=32),
            models.allconv(0.5, depth=7, input_size=24, in_channels=3),
            models.mobilenet_v1(0.25, 64, num_classes=20), odd]


def max_error_vs_oracle(batch: int = 2) -> float:
    """Largest difference between forward() and the oracle on check_models()."""
    worst = 0.0
    for m in check_models():
        x = np.random.default_rng(0).standard_normal((batch,) + m.input_shape, dtype=np.float32)
        worst = max(worst, float(np.abs(forward(m, x) - m.reference(x)).max()))
    return worst


if __name__ == "__main__":
    err = max_error_vs_oracle()
    print(f"max |cpu_numpy - oracle| = {err:.2e}")
    sys.exit(0 if err < 1e-4 else 1)
