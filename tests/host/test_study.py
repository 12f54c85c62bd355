"""The width/depth study's host-side logic (study/), numpy only, no training:
the statistics and verdict rule, the matched parameter counts its claims
rely on, and the committed test subset against Debian's Fashion-MNIST."""
from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

STUDY = Path(__file__).resolve().parents[2] / "study"


def _load(name: str):
    """A study module under a private name (bench/ has a stats.py too)."""
    if str(STUDY) not in sys.path:
        sys.path.append(str(STUDY))
    spec = importlib.util.spec_from_file_location(f"study_{name}", STUDY / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod            # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


stats = _load("stats")
fashion = _load("fashion")


def test_interval_three_seeds():
    i = stats.interval([0.80, 0.81, 0.82])
    assert i.mean == pytest.approx(0.81)
    assert i.half == pytest.approx(4.303 * 0.01 / math.sqrt(3), rel=1e-3)
    assert stats.interval([0.5]).n == 1 and math.isinf(stats.interval([0.5]).hi)


def test_verdict_needs_separated_intervals():
    a, b = stats.interval([0.90, 0.91, 0.92]), stats.interval([0.80, 0.81, 0.82])
    assert stats.compare(a, b) == "higher" and stats.compare(b, a) == "lower"
    c = stats.interval([0.85, 0.90, 0.95])        # wide: overlaps both
    assert stats.compare(a, c) == "overlap" and stats.compare(c, b) == "overlap"
    with pytest.raises(ValueError):
        stats.interval([])


def test_subset_is_stratified():
    y = np.repeat(np.arange(10), 600)
    idx = fashion.subset(y, 600, seed=0)
    assert np.bincount(y[idx]).tolist() == [60] * 10
    assert np.array_equal(idx, fashion.subset(y, 600, seed=0))
    assert len(fashion.subset(y, 10 ** 6)) == len(y)


def test_matched_parameter_counts():
    zoo = _load("zoo")
    specs = zoo.by_name()
    for family, tol in (("mlp", 0.005), ("allconv", 0.02)):
        counts = [s.build().params for s in zoo.SPECS
                  if "c4" in s.claims and s.family == family]
        assert len(counts) >= 3
        assert max(counts) / min(counts) - 1 < tol, (family, counts)
    res = [specs[s.name].build().params for s in zoo.SPECS if "c6" in s.claims]
    assert max(res) / min(res) - 1 < 0.03, res
    assert len({r.id for r in zoo.runs()}) == len(zoo.SPECS) * len(zoo.SEEDS)


def test_committed_subset_matches_the_package():
    if not fashion.available():
        pytest.skip(f"{fashion.DATA_DIR} missing: install {fashion.PACKAGE} (make setup)")
    with np.load(fashion.TEST_SUBSET) as f:
        x, y, idx = f["x"], f["y"], f["index"]
    xt, yt = fashion.load("test")
    assert np.array_equal(x, xt[idx]) and np.array_equal(y, yt[idx])
    manifest = json.loads((STUDY / "weights" / "manifest.json").read_text())
    assert manifest["n_test"] == len(y) == 1000
