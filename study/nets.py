"""The study's network families as pyaccel IR graphs (numpy only: host and
guest share it). Every network takes one 28x28 Fashion-MNIST image
(1 channel; the fully connected nets take it as 784 channels of 1x1) and
gives 10 logits; every convolution has batch norm (folded before export)
and ReLU (ReLU6 in MobileNet), as pyaccel.compiler.builder builds them.

- allconv(widths): 3x3 convolutions, stride 2 for the first five (while the
  map is larger than 1x1), global average pooling if the map is still
  larger than 1x1, a 1x1 classifier (pyaccel.models.allconv's layout);
- mobilenet_v1(width, drop): MobileNet v1 (pyaccel.models.mobilenet_v1's
  blocks); `drop` removes blocks by number (7-11 are the paper's five
  14x14 blocks conv5_2..conv5_6 at 224, 2x2 here);
- mlp(hidden): fully connected layers as 1x1 convolutions on (784, 1, 1);
- resnet(base, blocks, k): a CIFAR-style ResNet / Wide ResNet (Zagoruyko &
  Komodakis): a 3x3 stem, three stages of `blocks` basic blocks of widths
  base*k, 2*base*k, 4*base*k (stride 2 into stages 2 and 3), 1x1 projection
  shortcuts where the shape changes, global average pooling, fc.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pyaccel import models  # noqa: E402
from pyaccel.compiler.builder import Builder, GraphModel  # noqa: E402

SIZE = 28
CLASSES = 10


def allconv_widths(width: float, double: Sequence[int] = (), depth: int = 5,
                   first: int | None = None) -> list[int]:
    """pyaccel.models.allconv's channels (baseline 32..512 scaled, layers in
    `double` doubled); `first` overrides the first layer's."""
    w = models.allconv_widths(width, double, depth)
    if first is not None:
        w[0] = first
    return w


def allconv(widths: Sequence[int], seed: int = 0, name: str = "allconv") -> GraphModel:
    b = Builder(name, (1, SIZE, SIZE), seed)
    x, size = b.input, SIZE
    for i, c in enumerate(widths):
        stride = 2 if i < 5 and size > 1 else 1
        x = b.conv(x, c, 3, stride, name=f"conv{i + 1}")
        size = (size - 1) // stride + 1
    if size > 1:
        x = b.global_avgpool(x)
    x = b.conv(x, CLASSES, 1, bias=True, bn=False, act=None, name="classifier")
    return b.finish(b.flatten(x), config=dict(family="allconv", widths=list(widths)))


def mobilenet_v1(width: float, drop: Sequence[int] = (), seed: int = 0,
                 resolution: int = SIZE, name: str = "mobilenet_v1") -> GraphModel:
    b = Builder(name, (1, resolution, resolution), seed)
    c = models.scaled(32, width)
    x = b.conv(b.input, c, 3, 2, act="relu6", name="conv0")
    for i, (out, stride) in enumerate(models.MOBILENET_BLOCKS, 1):
        if i in drop:
            continue
        out = models.scaled(out, width)
        x = b.conv(x, c, 3, stride, groups=c, act="relu6", name=f"block{i}.dw")
        x = b.conv(x, out, 1, act="relu6", name=f"block{i}.pw")
        c = out
    y = b.fc(b.flatten(b.global_avgpool(x)), CLASSES, name="fc")
    return b.finish(y, config=dict(family="mobilenet_v1", width=width, drop=list(drop),
                                   resolution=resolution))


def mlp(hidden: Sequence[int], seed: int = 0, name: str = "mlp") -> GraphModel:
    b = Builder(name, (SIZE * SIZE, 1, 1), seed)
    x = b.input
    for i, h in enumerate(hidden):
        x = b.conv(x, h, 1, name=f"fc{i + 1}")
    x = b.conv(x, CLASSES, 1, bias=True, bn=False, act=None, name="classifier")
    return b.finish(b.flatten(x), config=dict(family="mlp", hidden=list(hidden)))


def resnet(base: int, blocks: int, k: float, seed: int = 0, name: str = "resnet") -> GraphModel:
    b = Builder(name, (1, SIZE, SIZE), seed)
    x = b.conv(b.input, base, 3, name="stem")
    c = base
    for stage in range(3):
        planes = max(1, int(round(base * k * (1 << stage))))
        for i in range(blocks):
            stride = 2 if stage > 0 and i == 0 else 1
            pre = f"layer{stage + 1}.{i}"
            y = b.conv(x, planes, 3, stride, name=f"{pre}.conv1")
            y = b.conv(y, planes, 3, 1, act=None, name=f"{pre}.conv2")
            short = x
            if stride != 1 or c != planes:
                short = b.conv(x, planes, 1, stride, 0, act=None, name=f"{pre}.downsample")
            x = b.add(y, short, act="relu")
            c = planes
    y = b.fc(b.flatten(b.global_avgpool(x)), CLASSES, name="fc")
    return b.finish(y, config=dict(family="resnet", base=base, blocks=blocks, k=k,
                                   depth=6 * blocks + 2))
