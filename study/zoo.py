"""The networks of the width/depth study (numpy only: host and guest share it).

All take a 32x32 single-channel digit and give 10 class probabilities:

- allconv: the nine variants of models.ALLCONV_VARIANTS (baseline; 1/2 and
  1/4 width, each also with layer groups 1-2, 3-4 or 5 doubled) and the 1/4
  width network at depths 3, 4, 6 and 7 (5 is "quarter");
- MobileNet-v1 at width multipliers 1.0, 0.75, 0.5 and 0.25.

Weights of the networks marked `committed` are in study/weights/ (folded
batch norm, float16; they fit in 5 MB together); the others are regenerated
by `make study` into build/study/weights/.
"""
from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

TOP = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TOP))
from pyaccel import models  # noqa: E402
from pyaccel.graph import Model  # noqa: E402

WEIGHTS = TOP / "study" / "weights"
SCRATCH = TOP / "build" / "study" / "weights"
MANIFEST = WEIGHTS / "manifest.json"
SIZE = 32
CLASSES = 10


@dataclass(frozen=True)
class Spec:
    name: str
    family: str                  # "allconv" or "mobilenet_v1"
    width: float
    double: tuple = ()
    depth: int = 5
    committed: bool = False

    def build(self, seed: int = 0) -> Model:
        if self.family == "mobilenet_v1":
            return models.mobilenet_v1(self.width, SIZE, CLASSES, seed, in_channels=1)
        return models.allconv(self.width, self.double, self.depth, input_size=SIZE,
                              in_channels=1, num_classes=CLASSES, seed=seed)

    @property
    def weights_path(self) -> Path:
        return (WEIGHTS if self.committed else SCRATCH) / f"{self.name}.npz"

    def to_dict(self) -> dict:
        return asdict(self)


def _allconv(variant: str, committed: bool) -> Spec:
    width, double = models.ALLCONV_VARIANTS[variant]
    return Spec(f"allconv-{variant}", "allconv", width, tuple(double), committed=committed)


SMALL = {"quarter", "quarter-double12", "quarter-double34", "quarter-double5", "half"}
SPECS = ([_allconv(v, v in SMALL) for v in models.ALLCONV_VARIANTS]
         + [Spec(f"allconv-quarter-depth{d}", "allconv", 0.25, depth=d, committed=True)
            for d in (3, 4, 6, 7)]
         + [Spec(f"mobilenet_v1-{w:g}", "mobilenet_v1", w, committed=w == 0.25)
            for w in (1.0, 0.75, 0.5, 0.25)])


def by_name() -> dict[str, Spec]:
    return {s.name: s for s in SPECS}


def manifest() -> dict:
    """What training recorded per network (host accuracies, predictions, ...)."""
    return json.loads(MANIFEST.read_text())
