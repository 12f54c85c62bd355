"""PyTorch twins of the zoo families at small resolution, and a network the
tests never saw, exported with torch.onnx.export (opset 13 and 17,
dynamo=False) for tests/host/test_onnx_torch.py.

Runs in the bench venv (bench/requirements.txt has torch 2.13.0 CPU):

    $(scripts/venv.sh bench/requirements.txt) tests/host/torch_zoo.py OUT_DIR

writes OUT_DIR/<net>-opset<k>.onnx and OUT_DIR/<net>.npz (a seeded input
"x" and PyTorch's output "y"). Batch norms are in eval mode with random
running statistics, so folding is exercised.
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

OPSETS = (13, 17)


def cbr(cin, cout, k=3, s=1, groups=1, act=nn.ReLU):
    layers = [nn.Conv2d(cin, cout, k, s, k // 2, groups=groups, bias=False),
              nn.BatchNorm2d(cout)]
    return nn.Sequential(*layers, act()) if act else nn.Sequential(*layers)


class SE(nn.Module):
    def __init__(self, c, r=4):
        super().__init__()
        self.fc1, self.fc2 = nn.Conv2d(c, c // r, 1), nn.Conv2d(c // r, c, 1)

    def forward(self, x):
        s = F.adaptive_avg_pool2d(x, 1)
        return x * F.hardsigmoid(self.fc2(F.relu(self.fc1(s))))


class Unseen(nn.Module):
    """A residual, a concat of two branches, an SE block, hard-swish, dropout."""

    def __init__(self):
        super().__init__()
        self.stem = cbr(3, 16, s=2)
        self.res = nn.Sequential(cbr(16, 16), cbr(16, 16, act=None))
        self.b1, self.b2 = cbr(16, 8, k=1), nn.Sequential(cbr(16, 8, k=1),
                                                         cbr(8, 8, act=nn.ReLU6))
        self.se = SE(16)
        self.head = cbr(16, 24, act=nn.Hardswish)
        self.drop = nn.Dropout(0.2)
        self.fc = nn.Linear(24, 10)

    def forward(self, x):
        x = self.stem(x)
        x = F.relu(x + self.res(x))
        x = torch.cat([self.b1(x), self.b2(x)], 1)
        x = F.max_pool2d(self.se(x), 2)
        x = F.adaptive_avg_pool2d(self.head(x), 1)
        return torch.softmax(self.fc(self.drop(x.view(x.size(0), -1))), 1)


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, s):
        super().__init__()
        self.a, self.b = cbr(cin, cout, s=s), cbr(cout, cout, act=None)
        self.down = None if (cin, s) == (cout, 1) else cbr(cin, cout, k=1, s=s, act=None)

    def forward(self, x):
        return F.relu(self.b(self.a(x)) + (x if self.down is None else self.down(x)))


class ResNetLike(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = cbr(3, 16, k=7, s=2)
        self.layers = nn.Sequential(BasicBlock(16, 16, 1), BasicBlock(16, 32, 2),
                                    BasicBlock(32, 64, 2))
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        x = self.layers(F.max_pool2d(self.stem(x), 3, 2, 1))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class InvertedResidual(nn.Module):
    def __init__(self, cin, cout, s, t):
        super().__init__()
        h = cin * t
        layers = [] if t == 1 else [cbr(cin, h, k=1, act=nn.ReLU6)]
        layers += [cbr(h, h, s=s, groups=h, act=nn.ReLU6), cbr(h, cout, k=1, act=None)]
        self.body, self.res = nn.Sequential(*layers), (cin, s) == (cout, 1)

    def forward(self, x):
        return x + self.body(x) if self.res else self.body(x)


class MobileNetV2Like(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = cbr(3, 16, s=2, act=nn.ReLU6)
        self.blocks = nn.Sequential(*[InvertedResidual(*a) for a in
                                      ((16, 16, 1, 1), (16, 24, 2, 4), (24, 24, 1, 4),
                                       (24, 32, 2, 4), (32, 32, 1, 4))])
        self.last = cbr(32, 64, k=1, act=nn.Hardswish)
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        return self.fc(self.last(self.blocks(self.stem(x))).mean((2, 3)))


def shuffle(x, g=2):
    n, c, h, w = x.shape
    return x.view(n, g, c // g, h, w).transpose(1, 2).reshape(n, c, h, w)


class ShuffleUnit(nn.Module):
    def __init__(self, c):
        super().__init__()
        h = c // 2
        self.branch = nn.Sequential(cbr(h, h, k=1), cbr(h, h, groups=h, act=None),
                                    cbr(h, h, k=1))

    def forward(self, x):
        a, b = x.chunk(2, 1)
        return shuffle(torch.cat([a, self.branch(b)], 1))


class ShuffleNetV2Like(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = cbr(3, 24, s=2)
        self.units = nn.Sequential(ShuffleUnit(24), ShuffleUnit(24))
        self.last = cbr(24, 32, k=1)
        self.fc = nn.Linear(32, 10)

    def forward(self, x):
        x = self.last(self.units(F.max_pool2d(self.stem(x), 3, 2, 1)))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


class DenseLayer(nn.Module):
    def __init__(self, c, growth=8):
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(c), nn.Conv2d(c, 4 * growth, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(4 * growth)
        self.conv2 = nn.Conv2d(4 * growth, growth, 3, padding=1, bias=False)

    def forward(self, x):
        y = self.conv1(F.relu(self.bn1(x)))                 # pre-activation: BN first
        return torch.cat([x, self.conv2(F.relu(self.bn2(y)))], 1)


class DenseNetLike(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = cbr(3, 16)
        self.block = nn.Sequential(DenseLayer(16), DenseLayer(24), DenseLayer(32))
        self.bn = nn.BatchNorm2d(40)                        # right after a concat
        self.trans = nn.Conv2d(40, 20, 1, bias=False)
        self.bn_last = nn.BatchNorm2d(20)
        self.fc = nn.Linear(20, 10)

    def forward(self, x):
        x = self.trans(F.relu(self.bn(self.block(self.stem(x)))))
        x = F.relu(self.bn_last(F.avg_pool2d(x, 2)))
        return self.fc(torch.flatten(F.adaptive_max_pool2d(x, 1), 1))


NETS = {"unseen": (Unseen, 32), "resnet_like": (ResNetLike, 64),
        "mobilenet_v2_like": (MobileNetV2Like, 32), "shufflenet_v2_like": (ShuffleNetV2Like, 32),
        "densenet_like": (DenseNetLike, 16)}


def build(name: str, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    net = NETS[name][0]()
    g = torch.Generator().manual_seed(seed + 1)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.weight.data = torch.rand(c, generator=g) + 0.5
            m.bias.data = torch.randn(c, generator=g) * 0.1
            m.running_mean = torch.randn(c, generator=g) * 0.1
            m.running_var = torch.rand(c, generator=g) + 0.5
    return net.eval()


def export_all(out: Path) -> list:
    import numpy as np

    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, (_, res) in NETS.items():
        net = build(name)
        x = torch.from_numpy(np.random.default_rng(7).standard_normal(
            (1, 3, res, res)).astype(np.float32))
        with torch.no_grad():
            y = net(x)
        np.savez(out / f"{name}.npz", x=x.numpy(), y=y.numpy())
        for opset in OPSETS:
            p = out / f"{name}-opset{opset}.onnx"
            torch.onnx.export(net, (x,), str(p), opset_version=opset, dynamo=False,
                              input_names=["input"], output_names=["output"])
            written.append(p)
    return written


if __name__ == "__main__":
    torch.set_num_threads(1)
    for p in export_all(Path(sys.argv[1])):
        print(p)
