"""Model builders, counts and weights, with no device (numpy only)."""
from __future__ import annotations

import numpy as np
import pytest

from pyaccel import graph, models
from pyaccel import reference as ref

# MobileNet v1 paper (Howard et al. 2017), Tables 6 and 7: million mult-adds
# and million parameters as printed. The paper mostly rounds (568.7 -> 569)
# but prints 290 for 290.7 at 160: we allow less than 1 M mult-adds apart.
PAPER_WIDTH = {1.0: (569, 4.2), 0.75: (325, 2.6), 0.5: (149, 1.3), 0.25: (41, 0.5)}
PAPER_RESOLUTION = {224: 569, 192: 418, 160: 290, 128: 186}


@pytest.mark.parametrize("alpha", PAPER_WIDTH)
def test_mobilenet_counts_match_the_paper_by_width(alpha):
    m = models.mobilenet_v1(alpha)
    macs, params = PAPER_WIDTH[alpha]
    assert abs(m.macs / 1e6 - macs) < 1
    assert round(m.params / 1e6, 1) == params


@pytest.mark.parametrize("resolution", PAPER_RESOLUTION)
def test_mobilenet_counts_match_the_paper_by_resolution(resolution):
    m = models.mobilenet_v1(1.0, resolution)
    assert abs(m.macs / 1e6 - PAPER_RESOLUTION[resolution]) < 1
    assert round(m.params / 1e6, 1) == 4.2


def test_mobilenet_structure():
    m = models.mobilenet_v1(0.5, 160, num_classes=7)
    assert m.output_shape == (7, 1, 1)
    assert m.shapes()[0] == (16, 80, 80)
    dw = [op for op in m.ops if isinstance(op, graph.Conv2d) and op.groups > 1]
    assert len(dw) == 13 and all(op.groups == op.c_in == op.c_out for op in dw)
    assert m.softmax and all(op.activation == "relu6" for op in m.ops[:-2])
    with pytest.raises(ValueError, match="multiple of 32"):
        models.mobilenet_v1(1.0, 100)


@pytest.mark.parametrize("variant, widths", [
    ("baseline", [32, 64, 128, 256, 512]),
    ("half", [16, 32, 64, 128, 256]),
    ("quarter-double12", [16, 32, 32, 64, 128]),
    ("quarter-double34", [8, 16, 64, 128, 128]),
    ("half-double5", [16, 32, 64, 128, 512]),
])
def test_allconv_variant_widths(variant, widths):
    m = models.allconv(variant=variant)
    assert m.config["widths"] == widths
    assert [op.c_out for op in m.ops] == widths + [10]
    assert m.output_shape == (10, 1, 1)


@pytest.mark.parametrize("depth", [1, 3, 5, 7])
def test_allconv_depth(depth):
    m = models.allconv(0.5, depth=depth)
    convs = [op for op in m.ops if isinstance(op, graph.Conv2d)]
    assert len(convs) == depth + 1
    assert m.output_shape == (10, 1, 1)
    assert [op.stride for op in convs[:-1]] == [2] * min(depth, 5) + [1] * max(0, depth - 5)
    if depth < 5:
        assert isinstance(m.ops[-2], graph.Pool2d)        # global pool before classifier


def test_allconv_counts_by_hand():
    m = models.allconv(1.0, depth=2, input_size=8, in_channels=1, num_classes=3)
    # conv1: 1->32 at 4x4 out; conv2: 32->64 at 2x2; pool; classifier 64->3
    assert m.macs == 32 * 16 * 9 + 64 * 4 * 32 * 9 + 3 * 64
    assert m.params == (32 * 9 + 32) + (64 * 32 * 9 + 64) + (3 * 64 + 3)


def test_batch_norm_folding_equals_explicit_batch_norm():
    layers = [graph.Conv2d(3, 4, 3, 1, 1, bias=False, batch_norm=True, name="c"), graph.ReLU()]
    m = graph.Model.build("bn", (3, 6, 6), layers, seed=3)
    raw = graph.random_weights(m.ops, 3)
    x = np.random.default_rng(0).standard_normal((2, 3, 6, 6), dtype=np.float32)
    y = ref.conv2d(x, raw["c.weight"], padding=1).astype(np.float64)
    g, b = raw["c.bn.weight"], raw["c.bn.bias"]
    mean, var = raw["c.bn.running_mean"], raw["c.bn.running_var"]
    y = (y - mean[:, None, None]) / np.sqrt(var[:, None, None] + graph.BN_EPS) \
        * g[:, None, None] + b[:, None, None]
    np.testing.assert_allclose(m.reference(x).reshape(y.shape), np.maximum(y, 0),
                               rtol=1e-4, atol=1e-5)


def test_npz_round_trip(tmp_path):
    m = models.mobilenet_v1(0.25, 64, num_classes=5, seed=1)
    m.save_npz(tmp_path / "w.npz")
    other = models.mobilenet_v1(0.25, 64, num_classes=5, seed=2)
    x = np.random.default_rng(0).standard_normal((1, 3, 64, 64), dtype=np.float32)
    assert not np.allclose(other.reference(x), m.reference(x))
    other.load_npz(tmp_path / "w.npz")
    np.testing.assert_allclose(other.reference(x), m.reference(x), rtol=1e-6)


def test_linear_after_flatten_is_a_whole_map_convolution():
    layers = [graph.Conv2d(1, 2, 3, name="c"), graph.Flatten(), graph.Linear(2 * 4 * 4, 3, name="fc")]
    m = graph.Model.build("lin", (1, 6, 6), layers)
    rng = np.random.default_rng(0)
    w = {"c.weight": rng.standard_normal((2, 1, 3, 3)).astype(np.float32),
         "c.bias": np.zeros(2, np.float32),
         "fc.weight": rng.standard_normal((3, 32)).astype(np.float32),
         "fc.bias": np.ones(3, np.float32)}
    m.weights = graph.fold(m.ops, w)
    x = rng.standard_normal((1, 1, 6, 6), dtype=np.float32)
    hidden = ref.conv2d(x, w["c.weight"], w["c.bias"]).reshape(1, -1)
    np.testing.assert_allclose(m.reference(x), hidden @ w["fc.weight"].T + 1, rtol=1e-5)


def test_builder_errors_are_clear():
    with pytest.raises(ValueError, match="ReLU must follow"):
        graph.lower([graph.ReLU()], (1, 4, 4))
    with pytest.raises(ValueError, match="Softmax must be the last"):
        graph.lower([graph.Softmax(), graph.Conv2d(1, 1, 1)], (1, 4, 4))
    with pytest.raises(ValueError, match="expects 3 channels"):
        graph.lower([graph.Conv2d(3, 1, 1)], (1, 4, 4))
    with pytest.raises(ValueError, match="unknown allconv variant"):
        models.allconv(variant="tiny")
    with pytest.raises(ValueError, match="outside 1..5"):
        models.allconv(double=(6,))
    with pytest.raises(KeyError, match="c.weight"):
        graph.fold([graph.Conv2d(1, 1, 1, name="c")], {})
