"""Network builders whose width and depth are parameters.

- `mobilenet_v1(width_mult, resolution, num_classes, seed)`: MobileNet v1
  (Howard et al., 2017), batch norm folded into each convolution, ReLU6.
- `allconv(width, double, depth, ...)`: the all-convolutional family:
  `depth` 3x3 convolutions (the first five with stride 2), then a 1x1
  classifier; "allconv6" is the baseline with depth 5 (+ classifier).

Both return a `graph.Model` with `.params`, `.macs`, `.reference(x)` and
`.compile(device)`.

The graph compiler's zoo (pyaccel.compiler.zoo; DAGs, built as IR graphs):

- `resnet(depth=18, width_mult=1.0, resolution=224, num_classes=1000,
  bottleneck_width=64)`: ResNet-18/34/50/101/152, Wide ResNet-50-2;
- `mobilenet_v2(width_mult=1.0, resolution=224, num_classes=1000)`;
- `shufflenet_v2(width_mult=1.0, resolution=224, num_classes=1000)`;
- `densenet(depth=121, growth_rate=32, resolution=224, num_classes=1000)`.

They return a `compiler.builder.GraphModel` with the same `.params`, `.macs`,
`.reference(x)`, `.compile(device, batch)` (and `.graph`, the IR).
"""
from __future__ import annotations

from typing import Iterable, Optional

from .compiler.builder import GraphModel
from .compiler.zoo import densenet, mobilenet_v2, resnet, shufflenet_v2
from .graph import (Conv2d, GlobalAvgPool2d, LayerSpec, Model, ReLU6, ReLU, Softmax)

__all__ = ["GraphModel", "Model", "allconv", "densenet", "mobilenet_v1", "mobilenet_v2",
           "resnet", "shufflenet_v2", "ZOO_FAMILIES"]
ZOO_FAMILIES = ("mobilenet_v1", "allconv", "resnet", "mobilenet_v2", "shufflenet_v2",
                "densenet")

# (output channels, stride) of MobileNet v1's 13 depthwise-separable blocks
MOBILENET_BLOCKS = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
                    (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1)]

# allconv: baseline widths of the five stride-2 layers
ALLCONV_BASELINE = (32, 64, 128, 256, 512)
ALLCONV_VARIANTS = {
    "baseline": (1.0, ()),
    "half": (0.5, ()), "half-double12": (0.5, (1, 2)), "half-double34": (0.5, (3, 4)),
    "half-double5": (0.5, (5,)),
    "quarter": (0.25, ()), "quarter-double12": (0.25, (1, 2)),
    "quarter-double34": (0.25, (3, 4)), "quarter-double5": (0.25, (5,)),
}


def scaled(channels: int, mult: float) -> int:
    """Channels after a width multiplier (at least 1)."""
    return max(1, int(channels * mult + 0.5))


def mobilenet_v1(width_mult: float = 1.0, resolution: int = 224, num_classes: int = 1000,
                 seed: int = 0, in_channels: int = 3) -> Model:
    """MobileNet v1 at a width multiplier and an input resolution (a multiple
    of 32), with random (seeded) weights."""
    if resolution % 32 or resolution < 32:
        raise ValueError(f"resolution must be a positive multiple of 32, got {resolution}")
    if width_mult <= 0:
        raise ValueError(f"width_mult must be positive, got {width_mult}")
    c = scaled(32, width_mult)
    layers: list[LayerSpec] = [Conv2d(in_channels, c, 3, 2, 1, bias=False, batch_norm=True,
                                      name="conv0"), ReLU6()]
    for i, (out, stride) in enumerate(MOBILENET_BLOCKS, 1):
        out = scaled(out, width_mult)
        layers += [Conv2d(c, c, 3, stride, 1, groups=c, bias=False, batch_norm=True,
                          name=f"block{i}.dw"), ReLU6(),
                   Conv2d(c, out, 1, bias=False, batch_norm=True, name=f"block{i}.pw"),
                   ReLU6()]
        c = out
    layers += [GlobalAvgPool2d(name="pool"), Conv2d(c, num_classes, 1, name="fc"), Softmax()]
    return Model.build(f"mobilenet_v1-{width_mult:g}-{resolution}",
                       (in_channels, resolution, resolution), layers, seed,
                       config=dict(width_mult=width_mult, resolution=resolution))


def allconv_widths(width: float = 1.0, double: Iterable[int] = (), depth: int = 5,
                   baseline: tuple = ALLCONV_BASELINE) -> list[int]:
    """Channels of each conv layer: the baseline scaled by `width`, layers in
    `double` (1-based) doubled; layers past the baseline repeat its last width."""
    double = set(double)
    if depth < 1:
        raise ValueError(f"depth must be at least 1, got {depth}")
    if not double <= set(range(1, depth + 1)):
        raise ValueError(f"double={sorted(double)} names layers outside 1..{depth}")
    base = [baseline[min(i, len(baseline) - 1)] for i in range(depth)]
    return [scaled(c, width) * (2 if i + 1 in double else 1) for i, c in enumerate(base)]


def allconv(width: float = 1.0, double: Iterable[int] = (), depth: int = 5,
            variant: Optional[str] = None, input_size: int = 32, in_channels: int = 1,
            num_classes: int = 10, seed: int = 0) -> Model:
    """The all-convolutional family: `depth` 3x3 ReLU convolutions (stride 2
    for the first five, 1 after), global average pooling if the map is still
    larger than 1x1, a 1x1 classifier and softmax.

    `variant` names a row of ALLCONV_VARIANTS (e.g. "quarter-double12") and
    overrides width and double."""
    if variant is not None:
        if variant not in ALLCONV_VARIANTS:
            raise ValueError(f"unknown allconv variant {variant!r}: "
                             f"one of {', '.join(ALLCONV_VARIANTS)}")
        width, double = ALLCONV_VARIANTS[variant]
    widths = allconv_widths(width, double, depth)
    layers: list[LayerSpec] = []
    c, size = in_channels, input_size
    for i, out in enumerate(widths):
        stride = 2 if i < 5 and size > 1 else 1
        layers += [Conv2d(c, out, 3, stride, 1, name=f"conv{i + 1}"), ReLU()]
        c, size = out, (size - 1) // stride + 1
    if size > 1:
        layers.append(GlobalAvgPool2d(name="pool"))
    layers += [Conv2d(c, num_classes, 1, name="classifier"), Softmax()]
    name = variant or f"allconv-w{width:g}" + (f"-d{''.join(map(str, sorted(double)))}"
                                               if double else "")
    return Model.build(f"{name}-depth{depth}", (in_channels, input_size, input_size), layers,
                       seed, config=dict(width=width, double=tuple(sorted(double)), depth=depth,
                                         widths=widths))
