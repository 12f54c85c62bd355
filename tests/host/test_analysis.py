"""pyaccel.analysis and the CLI's quantize / analyze on the host: per-layer
errors from the golden model and from the simulated device (equal: they are
bit for bit the same), the flagged layers, auto_float, the PNG or why not."""
from __future__ import annotations

import numpy as np
import pytest

from pyaccel import analysis, cli, models
from pyaccel.compiler.builder import GraphModel
from pyaccel.compiler.simulate import HostDevice
from pyaccel.quantize import quantize


def model():
    return models.mobilenet_v2(0.35, 32, 10, seed=1, depth_mult=0.5)


def images(m, n, seed=0):
    return np.random.default_rng(seed).standard_normal((n,) + m.input_shape, dtype=np.float32)


def test_per_layer_errors_golden_equals_simulated_device():
    m = model()
    qm = quantize(m, images(m, 4))
    x = images(m, 2, 1)
    gold = analysis.analyze(qm, x)
    sim = analysis.analyze(qm, x, HostDevice())
    assert gold.backend == "golden model" and sim.backend == "device"
    assert [(r.name, r.cosine, r.saturated) for r in gold.layers] == \
        [(r.name, r.cosine, r.saturated) for r in sim.layers]
    names = [r.name for r in gold.layers]
    assert "features.0" in names and "classifier" in names
    first = gold.layers[0]
    assert first.cosine == pytest.approx(first.alone_cosine)   # nothing before it
    assert all(0 <= r.saturated <= 1 and r.cosine > 0.5 for r in gold.layers)
    assert len(gold.flagged) == 1 and gold.flagged[0] in names
    table = gold.table()
    assert "<- keep float" in table and "alone cos" in table


def test_worst_layer_kept_float_and_auto_float():
    m = model()
    cal = images(m, 4)
    qm = quantize(m, cal)
    worst = analysis.worst_layers(qm.float_graph, qm.graph, cal, 2)
    auto = quantize(m, cal, auto_float=2)
    assert auto.calibration["auto_float"] == worst
    assert all(auto.precision[k] == "f32" for k in worst)
    x = images(m, 2, 3)
    with auto.compile(HostDevice(), batch=2) as net:
        inf = net(x)
    assert np.array_equal(inf.output.reshape(-1), auto.reference(x).reshape(-1))


def test_plot_writes_a_png_or_says_why(tmp_path):
    m = model()
    qm = quantize(m, images(m, 2))
    res = analysis.analyze(qm, images(m, 1))
    why = analysis.plot(res, tmp_path / "err.png")
    if why is None:
        assert (tmp_path / "err.png").read_bytes()[:4] == b"\x89PNG"
    else:
        assert "matplotlib" in why


def test_cli_quantize_then_analyze_the_saved_model(tmp_path, capsys):
    out = tmp_path / "r.npz"
    args = ["resnet", "--width", "0.25", "--resolution", "32", "--classes", "10",
            "--data", "random:4"]
    assert cli.main(["quantize", *args, "--keep-float", "layer1.0.conv1", "-o", str(out)]) == 0
    assert "1 float32 (layer1.0.conv1)" in capsys.readouterr().out
    saved = GraphModel.load(out)
    assert saved.precision["layer1.0.conv1"] == "f32"
    assert cli.main(["analyze", str(out), "--data", "random:4", "--golden"]) == 0
    text = capsys.readouterr().out
    assert "golden model" in text and "layer1.0.conv1" in text and "flagged" in text
