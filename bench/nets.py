"""The networks `make bench` measures (numpy only: the guest and the host share it).

- MAIN: the allconv variants (models.ALLCONV_VARIANTS) and MobileNet-v1 at
  widths 1.0, 0.75, 0.5, 0.25, all at 224x224 with 3 input channels: device
  vs guest CPU, device vs host PyTorch, overhead.
- SCALING: MobileNet-v1 at every width and the resolutions 192, 160, 128,
  allconv at half width and depths 4, 6, 7, 8 (below 4 the global pooling
  window would exceed the device's 16x16 kernel limit at 224), and the
  allconv variants and the 1/4-width depths 3..7 at the study's 32x32x1:
  device time against MACs, with MAIN.
- MODES: where one-submit-per-layer and copy-in/copy-out are compared with
  the compiled chain.
- ZOO: ResNet-18 and MobileNetV2 1.0 at 224 from the compiler's zoo
  (pyaccel.compiler.zoo, random weights seed 0), through the graph compiler
  (hardware 2.0 jobs): device e2e vs host PyTorch.
- INT8: MobileNet-v1 1.0 at 224 quantized on the host by pyaccel.quantize
  (INT8_CALIBRATION images), run on the device's int8 path; against host
  PyTorch float32 and onnxruntime int8 (quantize_static, QDQ) of the same net.
- BATCH: MobileNet-v1 1.0 at 224, batch BATCH: throughput vs PyTorch's.
"""
from __future__ import annotations

import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pyaccel import models  # noqa: E402
from pyaccel.graph import Model  # noqa: E402

WIDTHS = (1.0, 0.75, 0.5, 0.25)
RESOLUTIONS = (224, 192, 160, 128)


@dataclass(frozen=True)
class Net:
    """How to build one benchmarked network (random weights, seed 0)."""

    family: str                    # "mobilenet_v1" or "allconv"
    width: float = 1.0
    resolution: int = 224
    depth: int = 5                 # allconv only
    variant: Optional[str] = None  # allconv only: a row of ALLCONV_VARIANTS
    in_channels: int = 3

    @property
    def label(self) -> str:
        if self.family == "mobilenet_v1":
            return f"mobilenet_v1-{self.width:g}-{self.resolution}"
        name = self.variant or f"w{self.width:g}"
        return f"allconv-{name}-d{self.depth}-{self.resolution}x{self.in_channels}"

    def build(self) -> Model:
        if self.family == "mobilenet_v1":
            return models.mobilenet_v1(self.width, self.resolution,
                                       in_channels=self.in_channels)
        return models.allconv(self.width, depth=self.depth, variant=self.variant,
                              input_size=self.resolution, in_channels=self.in_channels)

    def to_dict(self) -> dict:
        return dict(asdict(self), label=self.label)


MAIN = ([Net("allconv", w, variant=v) for v, (w, _) in models.ALLCONV_VARIANTS.items()]
        + [Net("mobilenet_v1", w) for w in WIDTHS])
SCALING = ([Net("mobilenet_v1", w, r) for r in RESOLUTIONS[1:] for w in WIDTHS]
           + [Net("allconv", 0.5, depth=d) for d in (4, 6, 7, 8)]
           + [Net("allconv", w, 32, variant=v, in_channels=1)
              for v, (w, _) in models.ALLCONV_VARIANTS.items()]
           + [Net("allconv", 0.25, 32, depth=d, in_channels=1) for d in (3, 4, 6, 7)])
MODES = [Net("mobilenet_v1", 1.0), Net("mobilenet_v1", 0.25), Net("allconv", variant="baseline")]
MOBILENET_1 = Net("mobilenet_v1", 1.0)


@dataclass(frozen=True)
class ZooNet:
    """A network of the compiler's zoo (a GraphModel), batch 1."""

    family: str                    # "resnet18", "mobilenet_v2" (or "mobilenet_v1")
    resolution: int = 224

    @property
    def label(self) -> str:
        return f"{self.family}-{self.resolution}"

    def build(self):
        from pyaccel.compiler.builder import GraphModel
        from pyaccel.compiler import zoo

        if self.family == "resnet18":
            return zoo.resnet(18, 1.0, self.resolution)
        if self.family == "mobilenet_v2":
            return zoo.mobilenet_v2(1.0, self.resolution)
        return GraphModel(models.mobilenet_v1(1.0, self.resolution).to_graph())

    def to_dict(self) -> dict:
        return dict(asdict(self), label=self.label)


ZOO = [ZooNet("resnet18"), ZooNet("mobilenet_v2")]
INT8 = ZooNet("mobilenet_v1")          # quantized: bench/int8.py
INT8_CALIBRATION = 8                   # images (standard normal, seed 2)
BATCH = 8


def by_label() -> dict[str, Net]:
    return {n.label: n for n in MAIN + SCALING}
