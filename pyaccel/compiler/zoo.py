"""The model zoo: ResNet, MobileNetV2, ShuffleNetV2 and DenseNet as IR graphs
(torchvision's layouts), width and depth as parameters, random weights.

Each returns a builder.GraphModel whose ``macs`` and ``params`` match
torchvision's models (params unfolded: batch-norm scale and shift counted).
"""
from __future__ import annotations

from typing import Optional, Sequence

from .builder import Builder, GraphModel

RESNET_LAYERS = {18: ("basic", (2, 2, 2, 2)), 34: ("basic", (3, 4, 6, 3)),
                 50: ("bottleneck", (3, 4, 6, 3)), 101: ("bottleneck", (3, 4, 23, 3)),
                 152: ("bottleneck", (3, 8, 36, 3))}


def _positive(name: str, value: float) -> None:
    if value <= 0:
        raise ValueError(f"{name} must be positive, got {value}")


def resnet(depth: int = 18, width_mult: float = 1.0, resolution: int = 224,
           num_classes: int = 1000, bottleneck_width: int = 64, seed: int = 0,
           blocks: Optional[Sequence[int]] = None, in_channels: int = 3) -> GraphModel:
    """ResNet-`depth` (18, 34: basic blocks; 50, 101, 152: bottlenecks, stride on
    the 3x3 as torchvision); width_mult scales the four stages (the 64-channel
    stem stays); bottleneck_width 128 with depth 50 is wide_resnet50_2.
    `blocks` overrides the blocks per stage (tiny test networks)."""
    if depth not in RESNET_LAYERS:
        raise ValueError(f"resnet depth must be one of {sorted(RESNET_LAYERS)}, got {depth}")
    _positive("width_mult", width_mult)
    kind, layers = RESNET_LAYERS[depth]
    layers = tuple(blocks) if blocks is not None else layers
    exp = 1 if kind == "basic" else 4
    b = Builder(f"resnet{depth}-{width_mult:g}-{resolution}", (in_channels, resolution,
                                                              resolution), seed)
    x = b.conv(b.input, 64, 7, 2, 3, name="conv1")
    x = b.maxpool(x, 3, 2, 1)
    c_in = 64
    for stage, n_blocks in enumerate(layers):
        planes = max(1, int(round((64 << stage) * width_mult)))
        for i in range(n_blocks):
            stride = 2 if stage > 0 and i == 0 else 1
            pre = f"layer{stage + 1}.{i}"
            if kind == "basic":
                y = b.conv(x, planes, 3, stride, name=f"{pre}.conv1")
                y = b.conv(y, planes, 3, 1, act=None, name=f"{pre}.conv2")
            else:
                width = int(planes * (bottleneck_width / 64.0))
                y = b.conv(x, width, 1, name=f"{pre}.conv1")
                y = b.conv(y, width, 3, stride, name=f"{pre}.conv2")
                y = b.conv(y, planes * exp, 1, act=None, name=f"{pre}.conv3")
            short = x
            if stride != 1 or c_in != planes * exp:
                short = b.conv(x, planes * exp, 1, stride, 0, act=None, name=f"{pre}.downsample")
            x = b.add(y, short, act="relu")
            c_in = planes * exp
    y = b.fc(b.flatten(b.global_avgpool(x)), num_classes)
    return b.finish(y, config=dict(family="resnet", depth=depth, width_mult=width_mult,
                                   resolution=resolution, bottleneck_width=bottleneck_width))


def make_divisible(v: float, divisor: int = 8, min_value: Optional[int] = None) -> int:
    """torchvision's _make_divisible: v rounded to a multiple of divisor, never
    below 90% of v."""
    min_value = min_value or divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


MOBILENET_V2 = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                (6, 160, 3, 2), (6, 320, 1, 1)]


def mobilenet_v2(width_mult: float = 1.0, resolution: int = 224, num_classes: int = 1000,
                 seed: int = 0, depth_mult: float = 1.0, in_channels: int = 3) -> GraphModel:
    """MobileNetV2 (Sandler et al.; torchvision's): inverted residuals, ReLU6,
    channels rounded to multiples of 8; depth_mult scales each stage's repeats."""
    _positive("width_mult", width_mult)
    b = Builder(f"mobilenet_v2-{width_mult:g}-{resolution}", (in_channels, resolution,
                                                             resolution), seed)
    c = make_divisible(32 * width_mult)
    last = make_divisible(1280 * max(1.0, width_mult))
    x = b.conv(b.input, c, 3, 2, act="relu6", name="features.0")
    idx = 1
    for t, ch, n, s in MOBILENET_V2:
        out = make_divisible(ch * width_mult)
        for i in range(max(1, int(round(n * depth_mult)))):
            stride = s if i == 0 else 1
            pre = f"features.{idx}"
            hidden = int(round(c * t))
            y = x if t == 1 else b.conv(x, hidden, 1, act="relu6", name=f"{pre}.expand")
            y = b.conv(y, hidden, 3, stride, groups=hidden, act="relu6", name=f"{pre}.dw")
            y = b.conv(y, out, 1, act=None, name=f"{pre}.project")
            x = b.add(x, y) if stride == 1 and c == out else y
            c, idx = out, idx + 1
    x = b.conv(x, last, 1, act="relu6", name=f"features.{idx}")
    y = b.fc(b.dropout(b.flatten(b.global_avgpool(x))), num_classes, name="classifier")
    return b.finish(y, config=dict(family="mobilenet_v2", width_mult=width_mult,
                                   resolution=resolution, depth_mult=depth_mult))


SHUFFLENET_V2 = {0.5: (24, 48, 96, 192, 1024), 1.0: (24, 116, 232, 464, 1024),
                 1.5: (24, 176, 352, 704, 1024), 2.0: (24, 244, 488, 976, 2048)}


def shufflenet_v2(width_mult: float = 1.0, resolution: int = 224, num_classes: int = 1000,
                  seed: int = 0, repeats: Sequence[int] = (4, 8, 4),
                  in_channels: int = 3) -> GraphModel:
    """ShuffleNetV2 (Ma et al.; torchvision's) at 0.5, 1.0, 1.5 or 2.0: channel
    split, two branches, concat and channel shuffle by 2 (views, no copies
    but the stride-1 units' left halves)."""
    if width_mult not in SHUFFLENET_V2:
        raise ValueError(f"shufflenet_v2 width_mult must be one of {sorted(SHUFFLENET_V2)}, "
                         f"got {width_mult}")
    widths = SHUFFLENET_V2[width_mult]
    b = Builder(f"shufflenet_v2-{width_mult:g}-{resolution}", (in_channels, resolution,
                                                              resolution), seed)
    x = b.conv(b.input, widths[0], 3, 2, name="conv1")
    x = b.maxpool(x, 3, 2, 1)
    c = widths[0]
    for stage, (n, out) in enumerate(zip(repeats, widths[1:4]), 2):
        bf = out // 2
        for i in range(n):
            pre = f"stage{stage}.{i}"
            if i == 0:
                left = b.conv(x, c, 3, 2, groups=c, act=None, name=f"{pre}.branch1.dw")
                left = b.conv(left, bf, 1, name=f"{pre}.branch1.pw")
                right = x
            else:
                left, right = b.split(x, [bf, bf])
            stride = 2 if i == 0 else 1
            r = b.conv(right, bf, 1, name=f"{pre}.branch2.pw1")
            r = b.conv(r, bf, 3, stride, groups=bf, act=None, name=f"{pre}.branch2.dw")
            r = b.conv(r, bf, 1, name=f"{pre}.branch2.pw2")
            x = b.channel_shuffle(b.concat([left, r]), 2)
            c = out
    x = b.conv(x, widths[4], 1, name="conv5")
    y = b.fc(b.flatten(b.global_avgpool(x)), num_classes)
    return b.finish(y, config=dict(family="shufflenet_v2", width_mult=width_mult,
                                   resolution=resolution))


DENSENET_BLOCKS = {121: (6, 12, 24, 16), 169: (6, 12, 32, 32), 201: (6, 12, 48, 32),
                   264: (6, 12, 64, 48)}


def densenet(depth: int = 121, growth_rate: int = 32, resolution: int = 224,
             num_classes: int = 1000, seed: int = 0, bn_size: int = 4,
             blocks: Optional[Sequence[int]] = None, in_channels: int = 3) -> GraphModel:
    """DenseNet-BC-`depth` (121, 169, 201, 264; torchvision's layout): 2k initial
    channels, bottleneck 1x1 of bn_size*k, transitions halving the channels.
    Each layer's input is a channel prefix of its block's concatenation (a view):
    layers write their k channels straight into it. `blocks` overrides the
    layers per block (tiny test networks)."""
    if blocks is None:
        if depth not in DENSENET_BLOCKS:
            raise ValueError(f"densenet depth must be one of {sorted(DENSENET_BLOCKS)}, "
                             f"got {depth}")
        blocks = DENSENET_BLOCKS[depth]
    _positive("growth_rate", growth_rate)
    k = growth_rate
    b = Builder(f"densenet{depth}-k{k}-{resolution}", (in_channels, resolution, resolution),
                seed)
    x = b.conv(b.input, 2 * k, 7, 2, 3, name="features.conv0")
    x = b.maxpool(x, 3, 2, 1)
    c = 2 * k
    for bi, n in enumerate(blocks, 1):
        feats = [x]
        for li in range(1, n + 1):
            pre = f"features.denseblock{bi}.denselayer{li}"
            y = b.act(b.bn(b.concat(feats), f"{pre}.norm1"), "relu")
            y = b.conv(y, bn_size * k, 1, name=f"{pre}.conv1")
            y = b.conv(y, k, 3, bn=False, act=None, name=f"{pre}.conv2")
            feats.append(y)
        x = b.concat(feats)
        c += n * k
        if bi != len(blocks):
            pre = f"features.transition{bi}"
            y = b.act(b.bn(x, f"{pre}.norm"), "relu")
            y = b.conv(y, c // 2, 1, bn=False, act=None, name=f"{pre}.conv")
            x = b.avgpool(y, 2, 2)
            c //= 2
    x = b.act(b.bn(x, "features.norm5"), "relu")
    y = b.fc(b.flatten(b.global_avgpool(x)), num_classes, name="classifier")
    return b.finish(y, config=dict(family="densenet", depth=depth, growth_rate=k,
                                   resolution=resolution, blocks=tuple(blocks)))


ZOO = {"resnet": resnet, "mobilenet_v2": mobilenet_v2, "shufflenet_v2": shufflenet_v2,
       "densenet": densenet}
