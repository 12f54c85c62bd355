"""Every network of the study, with its training recipe and the claims it
serves (numpy only: host and guest share it).

A Spec is one architecture trained one way; with a seed it is one *run*
(`Run`), the unit that is trained, cached, evaluated and reported. The
claims (README sections) are the keys of CLAIMS; `SPECS` lists the networks
in the order `make study` trains them (cheap phases first).

Recipes (`RECIPES`): the number of training images (a fixed stratified
subset of the 60,000) and epochs; see study/README.md for why.
"""
from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

HERE = Path(__file__).resolve().parent
TOP = HERE.parent
sys.path.insert(0, str(HERE))
import nets  # noqa: E402
from pyaccel.compiler.builder import GraphModel  # noqa: E402

SEEDS = (0, 1, 2)
WEIGHTS = HERE / "weights"                 # committed networks
MANIFEST = WEIGHTS / "manifest.json"

# name -> (training images, epochs); same optimizer everywhere (train.py)
RECIPES = {
    "full2": (60000, 2),      # cheap families: the whole training set, twice
    "small20": (6000, 20),    # 10% of it, as many steps as full2
    "sub30k1": (30000, 1),    # the allconv width variants, matched convnets: half, once
    "sub10k2": (10000, 2),    # MobileNet-v1 and ResNets: a sixth, twice
}

CLAIMS = {
    "c1": "allconv6 widths",
    "c2": "MobileNet-v1 width multiplier",
    "c3": "narrower vs shallower MobileNet at equal compute",
    "c4": "deeper vs wider at equal parameters",
    "c5": "depth with little data",
    "c6": "wide-shallow vs thin-deep residual networks",
    "c7": "the first layer's width",
    "c8": "int8 against float32",
    "c9": "ShuffleNetV2's guidelines on the device",
}


@dataclass(frozen=True)
class Spec:
    name: str
    family: str                       # allconv, mobilenet_v1, mlp, resnet
    args: tuple                       # builder keyword arguments, as sorted pairs
    recipe: str
    phase: int                        # make study trains phase 1 first
    claims: tuple = ()
    info: tuple = ()                  # (key, value) pairs for the tables

    def kwargs(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.args}

    def build(self, seed: int = 0) -> GraphModel:
        return BUILDERS[self.family](seed=seed, name=self.name, **self.kwargs())

    @property
    def n_train(self) -> int:
        return RECIPES[self.recipe][0]

    @property
    def epochs(self) -> int:
        return RECIPES[self.recipe][1]

    def to_dict(self) -> dict:
        d = asdict(self)
        d["args"], d["info"] = self.kwargs(), dict(self.info)
        return d


BUILDERS: dict[str, Callable[..., GraphModel]] = {
    "allconv": lambda widths, **k: nets.allconv(widths, **k),
    "mobilenet_v1": lambda width, drop=(), **k: nets.mobilenet_v1(width, drop, **k),
    "mlp": lambda hidden, **k: nets.mlp(hidden, **k),
    "resnet": lambda base, blocks, k, **kw: nets.resnet(base, blocks, k, **kw),
}


@dataclass(frozen=True)
class Run:
    spec: Spec
    seed: int

    @property
    def id(self) -> str:
        return f"{self.spec.name}-s{self.seed}"


def _args(**kw) -> tuple:
    return tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in kw.items()))


def _matched(make: Callable[[int], GraphModel], target: int, lo: int = 1,
             hi: int = 2048) -> int:
    """The integer width whose network's parameter count is nearest target."""
    best = min(range(lo, hi), key=lambda w: abs(make(w).params - target)) if hi - lo < 64 \
        else None
    if best is not None:
        return best
    while hi - lo > 1:                                   # params grow with the width
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if make(mid).params < target else (lo, mid)
    return min((lo, hi), key=lambda w: abs(make(w).params - target))


def _resnet_k(blocks: int, base: int, target: int) -> float:
    """Widening factor k (steps of 1/base) matching target parameters."""
    w = _matched(lambda c: nets.resnet(base, blocks, c / base), target, base // 2, base * 4)
    return w / base


def _specs() -> list[Spec]:
    s: list[Spec] = []
    # --- phase 1: cheap, the whole training set ------------------------------------
    for d in (3, 4, 5, 6, 7):                                       # claim 5 (and 7, 4)
        widths = nets.allconv_widths(0.25, depth=d)
        for recipe in ("full2", "small20"):
            s.append(Spec(f"depth{d}-{recipe}", "allconv", _args(widths=widths), recipe, 1,
                          ("c5",) + (("c7",) if d == 5 and recipe == "full2" else ()),
                          (("depth", d), ("data", recipe))))
    for first in (4, 16, 32, 64):                                   # claim 7
        widths = nets.allconv_widths(0.25, first=first)
        s.append(Spec(f"first{first}", "allconv", _args(widths=widths), "full2", 1, ("c7",),
                      (("first", first),)))
    target = nets.mlp([200]).params                                 # claim 4, MLPs
    for depth in (1, 2, 3, 5):
        h = 200 if depth == 1 else _matched(lambda w: nets.mlp([w] * depth), target, 16, 512)
        s.append(Spec(f"mlp{depth}x{h}", "mlp", _args(hidden=[h] * depth), "full2", 1,
                      ("c4",), (("depth", depth), ("width", h), ("kind", "fc"))))
    target = nets.allconv([56] * 3).params                          # claim 4, convs
    for depth in (2, 3, 5):
        c = 56 if depth == 3 else _matched(lambda w: nets.allconv([w] * depth), target, 8, 256)
        s.append(Spec(f"conv{depth}x{c}", "allconv", _args(widths=[c] * depth), "sub30k1", 3,
                      ("c4",), (("depth", depth), ("width", c), ("kind", "conv"))))
    # --- phase 3: the allconv width variants (claim 1) ---------------------------------
    for variant, (width, double) in nets.models.ALLCONV_VARIANTS.items():
        widths = nets.allconv_widths(width, double)
        s.append(Spec(f"allconv-{variant}", "allconv", _args(widths=widths), "sub30k1", 3,
                      ("c1",), (("width", width), ("double", "".join(map(str, double)) or "-"))))
    # --- phase 4: MobileNet-v1 (claims 2, 3) -------------------------------------------
    for w in (1.0, 0.75, 0.5, 0.25):
        s.append(Spec(f"mobilenet_v1-{w:g}", "mobilenet_v1", _args(width=w), "sub10k2", 4,
                      ("c2",) + (("c3",) if w == 0.75 else ()), (("width", w),)))
    s.append(Spec("mobilenet_v1-1-shallow", "mobilenet_v1",
                  _args(width=1.0, drop=[7, 8, 9, 10, 11]), "sub10k2", 4, ("c3",),
                  (("width", 1.0), ("dropped", "blocks 7-11 (conv5_2-conv5_6)"))))
    # --- phase 2: residual networks (claim 6) ------------------------------------------
    thin = nets.resnet(8, 3, 1.0).params
    for blocks in (3, 1):
        k = 1.0 if blocks == 3 else _resnet_k(blocks, 8, thin)
        s.append(Spec(f"resnet{6 * blocks + 2}-k{k:g}", "resnet",
                      _args(base=8, blocks=blocks, k=k), "sub10k2", 2, ("c6",),
                      (("depth", 6 * blocks + 2), ("k", k))))
    return s


SPECS = _specs()


def by_name() -> dict[str, Spec]:
    return {s.name: s for s in SPECS}


def runs(seeds=SEEDS) -> list[Run]:
    """All runs in training order: by phase, then by seed, then as listed."""
    return [Run(sp, seed) for phase in sorted({sp.phase for sp in SPECS}) for seed in seeds
            for sp in SPECS if sp.phase == phase]


def source_hash(*files: str) -> str:
    """sha256 of study files whose change invalidates trained networks."""
    h = hashlib.sha256()
    for f in files:
        h.update((HERE / f).read_bytes())
    return h.hexdigest()[:12]


def run_key(run: Run, code: str) -> str:
    """The cache key of a trained run: spec, seed, recipe and training code."""
    blob = json.dumps(dict(spec=run.spec.to_dict(), seed=run.seed,
                           recipe=RECIPES[run.spec.recipe], code=code), sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def manifest() -> dict:
    """The committed networks' record (study/weights/manifest.json)."""
    return json.loads(MANIFEST.read_text())
