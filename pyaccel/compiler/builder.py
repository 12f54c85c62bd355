"""Build IR graphs layer by layer (the zoo's frontend), and GraphModel: a
built network with its counts, numpy reference and compile().

    b = Builder("net", (3, 32, 32), seed=0)
    y = b.conv(b.input, 16, 3, stride=2)          # conv + batch norm + ReLU
    y = b.fc(b.flatten(b.global_avgpool(y)), 10)
    model = b.finish(y)

Weights are random (seeded): He-normal convolutions and fully connected
layers, batch-norm statistics near 1 and 0 (PyTorch's layers are named the
same way: NAME.weight, NAME.bias, NAME.bn.*).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Optional, Sequence

import numpy as np

from . import execute
from .ir import Graph

if TYPE_CHECKING:
    from ..device import Device


class Builder:
    """Appends nodes with random weights to a Graph of one input (batch 1)."""

    def __init__(self, name: str, input_shape: Sequence[int], seed: int = 0,
                 batch: int = 1) -> None:
        self.graph = Graph(name)
        self.rng = np.random.default_rng(seed)
        self.input = self.graph.add_input("input", (batch,) + tuple(input_shape))
        self._count: dict[str, int] = {}

    def _name(self, base: str) -> str:
        i = self._count.get(base, 0)
        self._count[base] = i + 1
        return base if i == 0 and base not in self.graph.tensors else f"{base}{i}"

    def _const(self, name: str, a: np.ndarray) -> str:
        return self.graph.add_constant(name, np.asarray(a, np.float32))

    def shape(self, t: str) -> tuple:
        return self.graph.shape(t)

    def conv(self, x: str, c_out: int, k: int = 3, stride: int = 1, pad: Optional[int] = None,
             groups: int = 1, dilation: int = 1, bias: bool = False, bn: bool = True,
             act: Optional[str] = "relu", name: Optional[str] = None) -> str:
        """conv (+ batchnorm) (+ act); pad None: k // 2 * dilation."""
        name = self._name(name or "conv")
        c_in = self.shape(x)[1]
        fan_in = c_in // groups * k * k
        w = self._const(f"{name}.weight", self.rng.standard_normal((c_out, c_in // groups, k, k))
                        * np.sqrt(2.0 / fan_in))
        ins = [x, w]
        if bias:
            ins.append(self._const(f"{name}.bias", self.rng.standard_normal(c_out) * 0.1))
        y = self.graph.add_node("conv", ins, name=name, stride=stride, groups=groups,
                                dilation=dilation,
                                pads=k // 2 * dilation if pad is None else pad).outputs[0]
        if bn:
            y = self.bn(y, f"{name}.bn")
        return self.act(y, act) if act else y

    def bn(self, x: str, name: Optional[str] = None) -> str:
        name = self._name(name or "bn")
        c = self.shape(x)[1]
        r = self.rng
        ins = [x] + [self._const(f"{name}.{k}", v) for k, v in (
            ("weight", r.uniform(0.5, 1.5, c)), ("bias", r.standard_normal(c) * 0.1),
            ("running_mean", r.standard_normal(c) * 0.1), ("running_var", r.uniform(0.5, 1.5, c)))]
        return self.graph.add_node("batchnorm", ins, name=name, epsilon=1e-5).outputs[0]

    def act(self, x: str, kind: str, **params) -> str:
        return self.graph.add_node("act", [x], name=self._name(kind), kind=kind,
                                   **params).outputs[0]

    def _op(self, op: str, inputs: Sequence[str], name: Optional[str] = None, **attrs) -> str:
        return self.graph.add_node(op, list(inputs), name=self._name(name or op),
                                   **attrs).outputs[0]

    def maxpool(self, x: str, k: int, stride: Optional[int] = None, pad: int = 0) -> str:
        return self._op("maxpool", [x], kernel=k, stride=stride or k, pads=pad)

    def avgpool(self, x: str, k: int, stride: Optional[int] = None, pad: int = 0) -> str:
        return self._op("avgpool", [x], kernel=k, stride=stride or k, pads=pad)

    def global_avgpool(self, x: str) -> str:
        return self._op("global_avgpool", [x])

    def add(self, a: str, b: str, act: Optional[str] = None) -> str:
        y = self._op("add", [a, b])
        return self.act(y, act) if act else y

    def mul(self, a: str, b: str) -> str:
        return self._op("mul", [a, b])

    def concat(self, xs: Sequence[str]) -> str:
        return xs[0] if len(xs) == 1 else self._op("concat", xs)

    def split(self, x: str, parts: Sequence[int]) -> list:
        return self.graph.add_node("split", [x], name=self._name("split"),
                                   split=list(parts)).outputs

    def channel_shuffle(self, x: str, groups: int) -> str:
        return self._op("channel_shuffle", [x], name="shuffle", groups=groups)

    def flatten(self, x: str) -> str:
        return self._op("flatten", [x])

    def dropout(self, x: str) -> str:
        return self._op("dropout", [x])

    def softmax(self, x: str) -> str:
        return self._op("softmax", [x])

    def fc(self, x: str, out: int, bias: bool = True, act: Optional[str] = None,
           name: Optional[str] = None) -> str:
        name = self._name(name or "fc")
        f = self.shape(x)[1]
        ins = [x, self._const(f"{name}.weight", self.rng.standard_normal((out, f))
                              * np.sqrt(1.0 / f))]
        if bias:
            ins.append(self._const(f"{name}.bias", self.rng.standard_normal(out) * 0.1))
        y = self.graph.add_node("fc", ins, name=name).outputs[0]
        return self.act(y, act) if act else y

    def finish(self, *outputs: str, config: Optional[dict] = None) -> "GraphModel":
        for t in outputs:
            self.graph.mark_output(t)
        self.graph.check()
        return GraphModel(self.graph, config or {})


def rebatch(g: Graph, batch: int) -> Graph:
    """A copy of g with batch `batch`: every tensor's N, shapes re-inferred."""
    from .ir import infer

    h = g.copy()
    for t in h.inputs:
        info = h.tensors[t]
        info.shape = (batch,) + tuple(info.shape[1:])
    for n in h.nodes:
        for t, s in zip(n.outputs, infer(h, n)):
            h.tensors[t].shape = tuple(s)
    return h


@dataclass
class GraphModel:
    """A network as an IR graph (unfolded: batch norms as built), batch 1.

    ``macs`` and ``params`` count one image (params: PyTorch's, batch-norm
    scale and shift included); ``reference(x)`` is the numpy forward pass of
    any batch; ``compile(device, batch)`` runs it through the compiler."""

    graph: Graph
    config: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.graph.name

    @property
    def input_shape(self) -> tuple:
        return tuple(self.graph.shape(self.graph.inputs[0])[1:])

    @property
    def output_shape(self) -> tuple:
        return tuple(self.graph.shape(self.graph.outputs[0])[1:])

    @property
    def macs(self) -> int:
        return self.graph.macs

    @property
    def params(self) -> int:
        return self.graph.params

    def reference(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float32)
        y = execute.run(self.graph, x[None] if x.ndim == 3 else x)[self.graph.outputs[0]]
        return y.reshape(y.shape[0], -1)

    def batched(self, batch: int) -> Graph:
        return self.graph if batch == 1 else rebatch(self.graph, batch)

    def compile(self, device: "Device", batch: int = 1):
        from .api import compile as compile_graph

        return compile_graph(self.batched(batch), device)

    def summary(self) -> str:
        return self.graph.summary()

    def quantize(self, calibration_data, method: str = "minmax", percentile: float = 99.99,
                 keep_float=(), **kwargs):
        """Post-training int8 quantization (pyaccel.quantize.quantize): a
        QuantizedModel."""
        from ..quantize import quantize

        return quantize(self, calibration_data, method=method, percentile=percentile,
                        keep_float=keep_float, **kwargs)

    def save(self, path) -> None:
        """The graph (structure and weights) as an .npz (compiler.serialize)."""
        from . import serialize

        serialize.save(path, {"graph": self.graph}, {"config": self.config})

    @classmethod
    def load(cls, path) -> "GraphModel":
        """A model save wrote (a quantized one loads as a QuantizedModel)."""
        from . import serialize

        graphs, meta = serialize.load(path)
        if any("int8" in n.attrs for n in graphs["graph"].nodes):
            from ..quantize import QuantizedModel

            return QuantizedModel.load(path)
        return GraphModel(graphs["graph"], meta.get("config", {}))
