"""A small layer graph: layers, shapes, counts, weights and a numpy forward pass.

Layers run on the device as convolutions and pooling with a fused activation;
ReLU/ReLU6 fold into the layer before them, Linear becomes a convolution
(after Flatten, one whose kernel covers the whole map), and Softmax runs on
the CPU. Everything here needs only numpy: no device.

Weight names (also the `.npz` keys, PyTorch state_dict style), for a layer
named NAME: ``NAME.weight`` ([c_out][c_in/groups][kh][kw], or [out][in] for
Linear), ``NAME.bias`` ([c_out]); a convolution followed by batch norm also
reads ``NAME.bn.weight``, ``NAME.bn.bias``, ``NAME.bn.running_mean`` and
``NAME.bn.running_var`` and folds them into its weight and bias; without
them, its ``NAME.weight`` and ``NAME.bias`` are taken as already folded
(what `Model.save_npz` writes).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Mapping, Optional, Sequence, Union

import numpy as np

from . import reference as ref

Shape = tuple  # (C, H, W)
BN_EPS = 1e-5


@dataclass
class Conv2d:
    """2-D convolution (groups = channels: depthwise), optional batch norm."""

    c_in: int
    c_out: int
    kernel: ref.IntPair = 3
    stride: ref.IntPair = 1
    padding: ref.Padding = 0
    dilation: ref.IntPair = 1
    groups: int = 1
    bias: bool = True
    batch_norm: bool = False
    activation: Optional[str] = None
    name: str = ""
    from_linear: bool = False       # a Linear layer: its weight may be [out][in]

    def output_shape(self, s: Shape) -> Shape:
        if s[0] != self.c_in:
            raise ValueError(f"{self.name}: expects {self.c_in} channels, gets {s[0]}")
        if self.c_in % self.groups or self.c_out % self.groups:
            raise ValueError(f"{self.name}: groups={self.groups} must divide "
                             f"{self.c_in} and {self.c_out}")
        (kh, kw), (sh, sw), (dh, dw) = (ref.pair(v, n) for v, n in (
            (self.kernel, "kernel"), (self.stride, "stride"), (self.dilation, "dilation")))
        pt, pb, pl, pr = ref.padding4(self.padding)
        return (self.c_out, ref.conv_output_size(s[1], kh, sh, pt, pb, dh),
                ref.conv_output_size(s[2], kw, sw, pl, pr, dw))

    def weight_shape(self) -> tuple:
        kh, kw = ref.pair(self.kernel, "kernel")
        return (self.c_out, self.c_in // self.groups, kh, kw)

    def params(self) -> int:
        return int(np.prod(self.weight_shape())) + (self.c_out if self.bias or self.batch_norm
                                                    else 0)

    def macs(self, s: Shape) -> int:
        c, h, w = self.output_shape(s)
        return c * h * w * int(np.prod(self.weight_shape()[1:]))

    def forward(self, x: np.ndarray, w: Mapping[str, np.ndarray]) -> np.ndarray:
        return ref.conv2d(x, w[f"{self.name}.weight"], w.get(f"{self.name}.bias"),
                          self.stride, self.padding, self.dilation, self.groups,
                          self.activation)


@dataclass
class Pool2d:
    """Max or average pooling (kind "max" or "avg"); kernel None: global."""

    kind: str = "max"
    kernel: Optional[ref.IntPair] = 2
    stride: Optional[ref.IntPair] = None
    padding: ref.Padding = 0
    activation: Optional[str] = None
    name: str = ""

    def window(self, s: Shape) -> tuple:
        kernel = (s[1], s[2]) if self.kernel is None else ref.pair(self.kernel, "kernel")
        stride = kernel if self.stride is None else ref.pair(self.stride, "stride")
        return kernel, stride

    def output_shape(self, s: Shape) -> Shape:
        (kh, kw), (sh, sw) = self.window(s)
        pt, pb, pl, pr = ref.padding4(self.padding)
        return (s[0], ref.conv_output_size(s[1], kh, sh, pt, pb),
                ref.conv_output_size(s[2], kw, sw, pl, pr))

    def params(self) -> int:
        return 0

    def macs(self, s: Shape) -> int:
        return 0

    def forward(self, x: np.ndarray, w: Mapping[str, np.ndarray]) -> np.ndarray:
        kernel, stride = self.window(x.shape[1:])
        pool = ref.max_pool2d if self.kind == "max" else ref.avg_pool2d
        y = pool(x, kernel, stride, self.padding)
        return {None: y, "relu": ref.relu(y), "relu6": ref.relu6(y)}[self.activation]


def GlobalAvgPool2d(name: str = "") -> Pool2d:  # noqa: N802 - reads like a layer
    return Pool2d("avg", None, name=name)


@dataclass
class ReLU:
    six: bool = False


def ReLU6() -> ReLU:  # noqa: N802
    return ReLU(six=True)


@dataclass
class Flatten:
    pass


@dataclass
class Linear:
    in_features: int
    out_features: int
    bias: bool = True
    name: str = ""


@dataclass
class Softmax:
    pass


LayerSpec = Union[Conv2d, Pool2d, ReLU, Flatten, Linear, Softmax]


def lower(layers: Sequence[LayerSpec], input_shape: Shape) -> tuple[list, bool]:
    """Device ops (Conv2d/Pool2d with fused activations) and whether a CPU
    softmax follows. Names unnamed layers layerN."""
    ops: list = []
    shape, flat, softmax = tuple(input_shape), False, False
    for i, layer in enumerate(layers):
        if softmax:
            raise ValueError("Softmax must be the last layer")
        if isinstance(layer, ReLU):
            act = "relu6" if layer.six else "relu"
            if not ops or ops[-1].activation:
                raise ValueError(f"layer {i}: a ReLU must follow a convolution or pooling "
                                 "without an activation of its own")
            ops[-1] = replace(ops[-1], activation=act)
            continue
        if isinstance(layer, Flatten):
            flat = True
            continue
        if isinstance(layer, Softmax):
            softmax = True
            continue
        if isinstance(layer, Linear):
            c, h, w = shape
            if c * h * w != layer.in_features or (h * w > 1 and not flat):
                raise ValueError(f"layer {i}: Linear({layer.in_features}) after a {shape} map"
                                 " (add Flatten, or check in_features)")
            layer = Conv2d(c, layer.out_features, (h, w), bias=layer.bias,
                           name=layer.name or f"layer{i}", from_linear=True)
        flat = False
        layer = replace(layer, name=layer.name or f"layer{i}")   # never mutate the caller's
        shape = layer.output_shape(shape)
        ops.append(layer)
    return ops, softmax


def random_weights(ops: Sequence, seed: int) -> dict[str, np.ndarray]:
    """He-normal weights and small random biases / batch-norm statistics."""
    rng = np.random.default_rng(seed)
    raw: dict[str, np.ndarray] = {}
    for op in ops:
        if not isinstance(op, Conv2d):
            continue
        shape = op.weight_shape()
        fan_in = int(np.prod(shape[1:]))
        raw[f"{op.name}.weight"] = (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in))
        if op.bias:
            raw[f"{op.name}.bias"] = rng.standard_normal(op.c_out) * 0.1
        if op.batch_norm:
            raw[f"{op.name}.bn.weight"] = rng.uniform(0.5, 1.5, op.c_out)
            raw[f"{op.name}.bn.bias"] = rng.standard_normal(op.c_out) * 0.1
            raw[f"{op.name}.bn.running_mean"] = rng.standard_normal(op.c_out) * 0.1
            raw[f"{op.name}.bn.running_var"] = rng.uniform(0.5, 1.5, op.c_out)
    return {k: v.astype(np.float32) for k, v in raw.items()}


def fold(ops: Sequence, raw: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The device's weights: batch norm folded in, Linear as a conv kernel,
    every array float32 and checked against its layer's shape."""
    out: dict[str, np.ndarray] = {}
    for op in ops:
        if not isinstance(op, Conv2d):
            continue
        key = f"{op.name}.weight"
        if key not in raw:
            raise KeyError(f"weights have no {key!r}")
        w = np.asarray(raw[key], np.float32)
        if op.from_linear:
            w = w.reshape(op.weight_shape())
        if w.shape != op.weight_shape():
            raise ValueError(f"{key} has shape {w.shape}, the layer needs {op.weight_shape()}")
        bn = op.batch_norm and f"{op.name}.bn.weight" in raw   # else: already folded
        has_bias = op.bias or (op.batch_norm and not bn)
        b = (np.asarray(raw[f"{op.name}.bias"], np.float32) if has_bias
             else np.zeros(op.c_out, np.float32))
        if bn:
            g, beta = raw[f"{op.name}.bn.weight"], raw[f"{op.name}.bn.bias"]
            mean, var = raw[f"{op.name}.bn.running_mean"], raw[f"{op.name}.bn.running_var"]
            scale = (g / np.sqrt(var.astype(np.float64) + BN_EPS)).astype(np.float32)
            w = w * scale[:, None, None, None]
            b = (b - mean) * scale + beta
        out[key] = np.ascontiguousarray(w, np.float32)
        if op.bias or op.batch_norm:
            out[f"{op.name}.bias"] = np.ascontiguousarray(b, np.float32)
    return out


@dataclass
class Model:
    """A network: its device ops, folded weights, and counts.

    `params` counts the network's parameters as published (batch norm folded
    into the conv: one bias per channel); `macs` counts multiply-accumulates
    of one image.
    """

    name: str
    input_shape: Shape
    ops: list
    softmax: bool
    weights: dict[str, np.ndarray] = field(repr=False)
    config: dict = field(default_factory=dict)

    @classmethod
    def build(cls, name: str, input_shape: Shape, layers: Sequence[LayerSpec],
              seed: int = 0, weights: Optional[Mapping[str, np.ndarray]] = None,
              config: Optional[dict] = None) -> "Model":
        ops, softmax = lower(layers, input_shape)
        raw = random_weights(ops, seed) if weights is None else weights
        return cls(name, tuple(input_shape), ops, softmax, fold(ops, raw), config or {})

    def shapes(self) -> list[Shape]:
        """Output shape (C, H, W) of every op."""
        shapes, s = [], self.input_shape
        for op in self.ops:
            s = op.output_shape(s)
            shapes.append(s)
        return shapes

    @property
    def output_shape(self) -> Shape:
        return self.shapes()[-1]

    @property
    def params(self) -> int:
        return sum(op.params() for op in self.ops)

    @property
    def macs(self) -> int:
        ins = [self.input_shape] + self.shapes()[:-1]
        return sum(op.macs(s) for op, s in zip(self.ops, ins))

    def load_npz(self, path) -> None:
        """Weights from an .npz (names in the module docstring)."""
        with np.load(path) as data:
            self.weights = fold(self.ops, {k: data[k] for k in data.files})

    def save_npz(self, path) -> None:
        """The folded weights (no batch-norm keys), loadable by load_npz."""
        np.savez(path, **self.weights)

    def reference(self, x: np.ndarray) -> np.ndarray:
        """The network in numpy (the oracle): (N, C, H, W) -> class scores."""
        y = np.asarray(x, np.float32)
        for op in self.ops:
            y = op.forward(y, self.weights)
        y = y.reshape(y.shape[0], -1)
        return ref.softmax(y, axis=1) if self.softmax else y

    def to_graph(self, batch: int = 1):
        """The network as a compiler IR graph (pyaccel.compiler.ir.Graph)."""
        from .compiler.frontend import from_model

        return from_model(self, batch)

    def compile(self, device, batch: int = 1):
        """Upload the weights once and prepare the whole network as one job
        (a v1 job: see `to_graph` and pyaccel.compiler for the graph compiler)."""
        from .compiled import CompiledModel

        return CompiledModel(self, device, batch)

    def summary(self) -> str:
        rows = [f"{self.name}: input {self.input_shape}, {self.params:,} params, "
                f"{self.macs:,} MACs"]
        ins = [self.input_shape] + self.shapes()[:-1]
        for op, s_in in zip(self.ops, ins):
            kind = ("conv" if isinstance(op, Conv2d) and op.groups == 1 else
                    "dwconv" if isinstance(op, Conv2d) else f"{op.kind}pool")
            rows.append(f"  {op.name:<14} {kind:<8} {str(s_in):>16} -> "
                        f"{str(op.output_shape(s_in)):<16} {op.activation or '':<6} "
                        f"{op.macs(s_in):>13,}")
        return "\n".join(rows)
