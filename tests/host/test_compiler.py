"""The graph compiler on the host: IR, passes, views, memory plan, partition
and CPU fallback, the support report, run on the numpy device model."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from pyaccel import models
from pyaccel.compiler import Graph, IRError, api, check_report, passes, plan
from pyaccel.compiler.builder import Builder
from pyaccel.compiler.partition import DEFAULT_INFO
from pyaccel.compiler.simulate import HostDevice


def run_both(model, batch=1, info=None):
    x = np.random.default_rng(0).standard_normal((batch,) + model.input_shape, dtype=np.float32)
    dev = HostDevice(info)
    with model.compile(dev, batch) as net:
        inf = net(x)
    want = model.reference(x)
    np.testing.assert_allclose(inf.output.reshape(want.shape), want, rtol=1e-4,
                               atol=1e-4 * max(1.0, np.abs(want).max()))
    return net, inf, dev


def test_ir_shapes_counts_and_errors():
    g = Graph("t")
    x = g.add_input("x", (2, 4, 9, 9))
    w = g.add_constant("w", np.zeros((8, 2, 3, 3), np.float32))
    c = g.add_node("conv", [x, w], name="c", stride=2, pads=1, groups=2)
    assert g.shape(c.outputs[0]) == (2, 8, 5, 5)
    assert g.macs == 2 * 8 * 25 * 2 * 9 and g.params == 8 * 2 * 9
    left, right = g.add_node("split", c.outputs, split=[3, 5]).outputs
    assert g.shape(right) == (2, 5, 5, 5)
    with pytest.raises(IRError, match="groups=3 must divide"):
        g.add_node("conv", [x, w], groups=3)
    with pytest.raises(IRError, match="no tensor"):
        g.add_node("act", ["nope"], kind="relu")
    with pytest.raises(IRError, match="act kind"):
        g.add_node("act", [x], kind="tanh")


def test_batchnorm_folds_only_into_a_conv_read_by_it_alone():
    b = Builder("bn", (3, 8, 8))
    y = b.conv(b.input, 4, 3, bn=False, act=None)
    z = b.bn(y)                         # y is read twice: no folding
    out = b.add(z, y)
    m = b.finish(b.flatten(b.conv(out, 4, 1)))
    g = m.graph.copy()
    passes.optimize(g)
    ops = [n.op for n in g.nodes]
    assert "batchnorm" not in ops and ops.count("scale_shift") == 1
    assert ops.count("conv") == 2       # the second conv's bn folded, its ReLU fused
    assert g.nodes[-2].attrs["activation"].name == "relu"
    run_both(m)


def test_densenet_concatenation_is_views_without_copies():
    m = models.densenet(growth_rate=8, resolution=32, blocks=(3, 2), num_classes=10)
    p = api.prepare(m.graph)
    assert not [n for n in p.graph.nodes if n.op == "copy"]
    assert sum(pl.where == "view" for pl in p.placements) >= 5
    run_both(m, batch=2)


def test_shufflenet_copies_only_the_stride_1_left_halves():
    repeats = (2, 3, 1)
    m = models.shufflenet_v2(0.5, 32, num_classes=10, repeats=repeats)
    p = api.prepare(m.graph)
    copies = [n for n in p.graph.nodes if n.op == "copy"]
    assert len(copies) == sum(r - 1 for r in repeats)
    shuffles = [n for n in p.graph.nodes if n.op == "channel_shuffle"]
    assert all(n.attrs["mode"] == "view" for n in shuffles)
    run_both(m, batch=2)


def test_a_shuffle_that_is_no_view_becomes_group_copies():
    b = Builder("sh", (6, 5, 5))
    y = b.conv(b.input, 6, 1, act="relu")
    y = b.channel_shuffle(y, 3)
    m = b.finish(b.flatten(b.conv(y, 4, 3)))
    p = api.prepare(m.graph)
    node = next(n for n in p.graph.nodes if n.op == "channel_shuffle")
    assert node.attrs["mode"] == "copy"
    net, inf, dev = run_both(m, batch=2)
    assert len(net.program[0][1]) == 1 + 3 + 1       # conv, 3 group copies, conv


def test_mobilenet_v1_memory_plan_matches_the_issue():
    p = api.prepare(models.mobilenet_v1(1.0, 224).to_graph())
    total, arena = p.plan.activations_bytes / 1e6, p.plan.arena_bytes / 1e6
    assert 19 < total < 22 and 4.5 < arena < 5.5, p.plan.report()
    assert p.plan.arena_bytes >= p.plan.peak_live_bytes


def test_plan_never_overlaps_tensors_alive_together():
    m = models.resnet(18, 0.25, 32, num_classes=10)
    p = api.prepare(m.graph).plan
    items = [(p.offsets[r], p.root_bytes[r], *p.lifetimes[r]) for r in p.offsets]
    for i, (o1, s1, f1, l1) in enumerate(items):
        for o2, s2, f2, l2 in items[i + 1:]:
            if f1 <= l2 and f2 <= l1:
                assert o1 + s1 <= o2 or o2 + s2 <= o1
    assert p.arena_bytes < p.activations_bytes


def test_softmax_in_the_middle_runs_on_the_cpu_between_two_jobs():
    b = Builder("mid", (4, 6, 6))
    y = b.conv(b.input, 8, 3)
    y = b.softmax(y)                    # over channels, on the CPU
    y = b.conv(y, 8, 3, act="relu")
    m = b.finish(b.fc(b.flatten(b.global_avgpool(y)), 5))
    report = check_report(m.graph)
    assert "softmax" in report and "cpu" in report and "no softmax operation" in report
    assert "2 job(s)" in report
    net, inf, dev = run_both(m)
    assert dev.jobs == 2 and [s.where for s in inf.layers].count("cpu") == 1
    assert "1 on the CPU" in inf.where() and "softmax" in inf.table()


def test_a_device_without_an_activation_sends_the_node_to_the_cpu():
    info = SimpleNamespace(**{**vars(DEFAULT_INFO), "activations": 0x7F & ~(1 << 6)},
                           model_clock_mhz=1000)           # no hard_swish
    b = Builder("hs", (3, 8, 8))
    y = b.conv(b.input, 8, 3, act="hard_swish")
    m = b.finish(b.flatten(b.global_avgpool(b.conv(y, 4, 1))))
    p = api.prepare(m.graph, info)
    cpu = [pl for pl in p.placements if pl.where == "cpu"]
    assert len(cpu) == 1 and "hard_swish" in cpu[0].reason
    net, inf, dev = run_both(m, info=info)
    assert dev.jobs == 1                # the conv with hard_swish on the CPU, then one job


def test_clip_ranges_and_identities():
    b = Builder("clip", (3, 6, 6))
    y = b.conv(b.input, 4, 3, act=None)
    y = b.act(y, "clip", min=0.0, max=6.0)          # ReLU6: fused
    y = b.dropout(y)
    y = b.conv(y, 4, 3, act=None)
    y = b.act(y, "clip", min=-1.0, max=1.0)         # no device activation: CPU
    m = b.finish(b.flatten(y))
    p = api.prepare(m.graph)
    assert [n.op for n in p.graph.nodes] == ["conv", "conv", "act", "flatten"]
    assert [pl.where for pl in p.placements] == ["device", "device", "cpu", "view"]
    run_both(m)


def test_model_to_graph_matches_the_sequential_reference():
    m = models.allconv(variant="quarter")
    g = m.to_graph()
    assert g.macs == m.macs
    from pyaccel.compiler.builder import GraphModel
    run_both(GraphModel(g))


def test_greedy_placement_shares_memory():
    offsets, total = plan.place({"a": 100, "b": 100, "c": 50}, {"a": (0, 1), "b": (2, 3),
                                                                "c": (1, 2)})
    assert total == 150 and offsets["a"] == offsets["b"]
