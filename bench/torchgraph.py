"""A compiler IR graph (pyaccel.compiler.ir.Graph, float32) as a PyTorch
module: the host twin of a zoo network for `make bench`, and what
torch.onnx.export turns into the onnxruntime baseline (bench/int8.py).

The graph given is the one the device runs (after the float passes: batch
norms folded into the convolutions, activations fused), so PyTorch computes
exactly the device's arithmetic, with the same weights.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def _act(y: torch.Tensor, a) -> torch.Tensor:
    if a is None or a.name in ("none", "", None):
        return y
    if a.name == "relu":
        return F.relu(y)
    if a.name == "relu6":
        return F.relu6(y)
    if a.name == "leaky_relu":
        return F.leaky_relu(y, a.alpha)
    if a.name == "sigmoid":
        return torch.sigmoid(y)
    if a.name == "hard_sigmoid":
        return torch.clamp(a.alpha * y + a.beta, 0, 1)
    if a.name == "hard_swish":
        return y * torch.clamp(a.alpha * y + a.beta, 0, 1)
    raise ValueError(f"no torch form of activation {a.name!r}")


def _pads(pads) -> tuple:
    top, left, bottom, right = pads
    if (top, left) != (bottom, right):
        raise ValueError(f"asymmetric padding {pads}: not in the benchmark's networks")
    return (top, left)


class GraphNet(nn.Module):
    """forward(x) runs the graph's nodes in order on torch tensors."""

    def __init__(self, graph) -> None:
        super().__init__()
        self.graph = graph
        self.names = {}
        for i, (t, a) in enumerate(graph.constants.items()):
            key = f"c{i}"
            self.register_buffer(key, torch.from_numpy(np.ascontiguousarray(a, np.float32)))
            self.names[t] = key

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = self.graph
        v = {g.inputs[0]: x}
        for t, key in self.names.items():
            v[t] = getattr(self, key)
        for n in g.nodes:
            args = [v[t] for t in n.inputs]
            v[n.outputs[0]] = self._node(n, args)
        return v[g.outputs[0]]

    @staticmethod
    def _node(n, args):
        op, a = n.op, n.attrs
        act = a.get("activation")
        x = args[0]
        if op == "conv":
            y = F.conv2d(x, args[1], args[2] if len(args) > 2 else None, a["stride"],
                         _pads(a["pads"]), a["dilation"], a["groups"])
            return _act(y, act)
        if op == "maxpool":
            return _act(F.max_pool2d(x, a["kernel"], a["stride"], _pads(a["pads"])), act)
        if op == "avgpool":
            return _act(F.avg_pool2d(x, a["kernel"], a["stride"], _pads(a["pads"]),
                                     count_include_pad=a.get("count_include_pad", True)), act)
        if op == "global_avgpool":
            return _act(x.mean((2, 3), keepdim=True), act)
        if op == "add":
            return _act(x + args[1], act)
        if op == "mul":
            return _act(x * args[1], act)
        if op == "flatten":
            return x.flatten(1)
        if op == "fc":
            return _act(F.linear(x.flatten(1), args[1], args[2] if len(args) > 2 else None), act)
        if op == "softmax":
            return torch.softmax(x, a.get("axis", 1))
        if op in ("identity", "dropout"):
            return _act(x, act)
        raise ValueError(f"{n.name}: no torch form of op {op!r}")


def twin(graph_model) -> GraphNet:
    """The device's graph of a GraphModel (float passes applied) as a module."""
    from pyaccel.quantize import float_passes

    return GraphNet(float_passes(graph_model.graph)).eval()
