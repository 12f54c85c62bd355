"""A pyaccel IR graph (pyaccel.compiler.ir.Graph) as a PyTorch module, for
training on the host (bench venv: torch).

    net = GraphNet(graph, train=True)    # weights from the graph's constants
    logits = net(x)                      # x (N, C, H, W) float32
    graph = net.to_graph()               # the trained constants back in a copy

Constants that are conv / fc weights and biases and batch-norm gamma / beta
become parameters; batch-norm running statistics are buffers (updated in
training mode, momentum 0.1, as nn.BatchNorm2d). Ops: conv, batchnorm, act
(relu, relu6), add, maxpool, avgpool, global_avgpool, flatten, fc, identity,
dropout, softmax (skipped: the module returns logits). Anything else raises
GraphNetError naming the node. The same module runs a folded graph (conv
with bias, no batch norm): the host's reference for device accuracy.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pyaccel.compiler.ir import Graph

PARAM_ROLES = {"conv": (1, 2), "fc": (1, 2), "batchnorm": (1, 2)}
BUFFER_ROLES = {"batchnorm": (3, 4)}


class GraphNetError(ValueError):
    """A graph op GraphNet cannot run: the message names the node."""


def _key(name: str) -> str:
    return name.replace(".", "__")


class GraphNet(nn.Module):
    """The graph's nodes in order, its constants as parameters and buffers."""

    def __init__(self, graph: Graph, train: bool = False) -> None:
        super().__init__()
        self.graph = graph
        self.params = nn.ParameterDict()
        self.names: dict[str, str] = {}          # tensor name -> attribute key
        for node in graph.nodes:
            for role, idx in (("param", PARAM_ROLES.get(node.op, ())),
                              ("buffer", BUFFER_ROLES.get(node.op, ()))):
                for i in idx:
                    if i >= len(node.inputs) or node.inputs[i] not in graph.constants:
                        continue
                    t = node.inputs[i]
                    value = torch.from_numpy(graph.constants[t].astype("float32").copy())
                    if train and node.op == "batchnorm":
                        value = torch.full_like(value, (1.0, 0.0, 0.0, 1.0)[i - 1])
                    if role == "param":
                        self.params[_key(t)] = nn.Parameter(value)
                    else:
                        self.register_buffer(_key(t), value)
                    self.names[t] = _key(t)

    def _const(self, t: str) -> torch.Tensor:
        k = self.names.get(t)
        if k is None:
            return torch.from_numpy(self.graph.constants[t].astype("float32"))
        return self.params[k] if k in self.params else getattr(self, k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = self.graph
        env = {g.inputs[0]: x}
        for n in g.nodes:
            a = n.attrs
            arg = lambda i: env[n.inputs[i]] if n.inputs[i] in env else self._const(n.inputs[i])  # noqa: E731,E501
            if n.op == "conv":
                t, b, l, r = a["pads"]
                xin = arg(0)
                if (t, l) != (b, r):
                    xin, pad = F.pad(xin, (l, r, t, b)), (0, 0)
                else:
                    pad = (t, l)
                y = F.conv2d(xin, arg(1), arg(2) if len(n.inputs) > 2 else None, a["stride"],
                             pad, a["dilation"], a["groups"])
            elif n.op == "batchnorm":
                y = F.batch_norm(arg(0), arg(3), arg(4), arg(1), arg(2), self.training, 0.1,
                                 a["epsilon"])
            elif n.op == "act":
                kind = a["kind"]
                if kind == "relu":
                    y = F.relu(arg(0))
                elif kind == "relu6":
                    y = F.relu6(arg(0))
                else:
                    raise GraphNetError(f"{n.name}: activation {kind!r} is not supported")
            elif n.op == "add":
                y = arg(0) + arg(1)
            elif n.op in ("maxpool", "avgpool"):
                t, b, l, r = a["pads"]
                xin = arg(0)
                if (t, l) != (b, r):
                    raise GraphNetError(f"{n.name}: asymmetric pooling pads")
                if n.op == "maxpool":
                    y = F.max_pool2d(xin, a["kernel"], a["stride"], (t, l))
                else:
                    y = F.avg_pool2d(xin, a["kernel"], a["stride"], (t, l),
                                     count_include_pad=a.get("count_include_pad", True))
            elif n.op == "global_avgpool":
                y = arg(0).mean(dim=(2, 3), keepdim=True)
            elif n.op == "flatten":
                y = arg(0).flatten(1)
            elif n.op == "fc":
                y = F.linear(arg(0).flatten(1), arg(1), arg(2) if len(n.inputs) > 2 else None)
            elif n.op in ("identity", "dropout", "softmax"):
                y = arg(0)
            else:
                raise GraphNetError(f"{n.name}: op {n.op!r} is not supported")
            env[n.outputs[0]] = y
        return env[g.outputs[0]].flatten(1)

    def to_graph(self) -> Graph:
        """A copy of the graph whose constants are the module's current values."""
        g = self.graph.copy()
        for t, k in self.names.items():
            v = self.params[k] if k in self.params else getattr(self, k)
            g.constants[t] = v.detach().cpu().numpy().astype("float32").copy()
        return g
