"""A pyaccel network (graph.Model) as a PyTorch module.

The module's state_dict keys are pyaccel's weight names (graph.py): a
convolution named "block1.dw" is the submodule block1.dw, so its tensors are
"block1.dw.weight", "block1.dw.bias" and, trained with batch norm,
"block1.dw.bn.weight", ".bn.bias", ".bn.running_mean", ".bn.running_var".

- TorchNet(model): inference with the model's folded weights (the device's
  arithmetic: conv + bias, fused activation, pooling, softmax);
- TorchNet(model, batch_norm=True): a trainable twin (fresh weights); its
  state_dict (less num_batches_tracked) is what graph.fold takes.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pyaccel import reference as ref  # noqa: E402
from pyaccel.graph import Conv2d, Model, Pool2d  # noqa: E402


def activate(y: torch.Tensor, activation: Optional[str]) -> torch.Tensor:
    if activation == "relu":
        return F.relu(y)
    if activation == "relu6":
        return F.relu6(y)
    return y


class ConvLayer(nn.Module):
    """conv (+ bias) (+ batch norm) + activation, pyaccel's parameter names
    (a Linear layer is its lowered convolution: a [out][in][h][w] weight)."""

    def __init__(self, op: Conv2d, batch_norm: bool = False) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(op.weight_shape()))
        has_bias = op.bias or (op.batch_norm and not batch_norm)   # folded BN has a bias
        self.bias = nn.Parameter(torch.zeros(op.c_out)) if has_bias else None
        self.bn = nn.BatchNorm2d(op.c_out, eps=1e-5) if batch_norm else None
        nn.init.kaiming_normal_(self.weight, nonlinearity="relu")
        top, bottom, left, right = ref.padding4(op.padding)
        self.pre_pad = None if (top, left) == (bottom, right) else (left, right, top, bottom)
        self.padding = (top, left) if self.pre_pad is None else (0, 0)
        self.stride, self.dilation = ref.pair(op.stride, "stride"), ref.pair(op.dilation, "dil")
        self.groups, self.activation = op.groups, op.activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pre_pad is not None:
            x = F.pad(x, self.pre_pad)
        y = F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation,
                     self.groups)
        if self.bn is not None:
            y = self.bn(y)
        return activate(y, self.activation)


class PoolLayer(nn.Module):
    """Max or average pooling (count_include_pad, like the device), global if
    the kernel is None, + activation."""

    def __init__(self, op: Pool2d) -> None:
        super().__init__()
        self.op = op

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        op = self.op
        kernel, stride = op.window(tuple(x.shape[1:]))
        top, bottom, left, right = ref.padding4(op.padding)
        if op.kind == "avg" and kernel == tuple(x.shape[2:]) and not (top or bottom or left
                                                                        or right):
            y = x.mean(dim=(2, 3), keepdim=True)
        else:
            fill = float("-inf") if op.kind == "max" else 0.0
            if (top, left) != (bottom, right):
                x = F.pad(x, (left, right, top, bottom), value=fill)
                top = left = 0
            pool = F.max_pool2d if op.kind == "max" else F.avg_pool2d
            y = pool(x, kernel, stride, (top, left))   # avg: count_include_pad=True
        return activate(y, op.activation)


class TorchNet(nn.Module):
    """The network's ops as submodules at their pyaccel names, in order."""

    def __init__(self, model: Model, batch_norm: bool = False) -> None:
        super().__init__()
        self.names: list[str] = []
        for op in model.ops:
            layer = (ConvLayer(op, batch_norm and op.batch_norm) if isinstance(op, Conv2d)
                     else PoolLayer(op))
            parent: nn.Module = self
            *path, leaf = op.name.split(".")
            for part in path:
                if not hasattr(parent, part):
                    parent.add_module(part, nn.Module())
                parent = getattr(parent, part)
            parent.add_module(leaf, layer)
            self.names.append(op.name)
        self.softmax = model.softmax

    def layers(self) -> list[nn.Module]:
        return [self.get_submodule(name) for name in self.names]

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers():
            x = layer(x)
        return x.flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.logits(x)
        return torch.softmax(y, dim=1) if self.softmax else y


def inference_twin(model: Model) -> TorchNet:
    """TorchNet with the model's folded weights, in eval mode."""
    net = TorchNet(model)
    net.load_state_dict({k: torch.from_numpy(np.asarray(v, np.float32))
                         for k, v in model.weights.items()}, strict=True)
    return net.eval()


def raw_weights(net: TorchNet) -> dict[str, np.ndarray]:
    """The state_dict as pyaccel's raw npz names (batch norm not folded)."""
    return {k: v.detach().cpu().numpy().astype(np.float32)
            for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
