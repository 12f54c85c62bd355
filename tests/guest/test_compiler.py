"""The graph compiler on the device: every zoo family at two widths and two
depths or resolutions (small, so the emulated guest stays fast) against the
numpy reference, each device segment one job; a CPU-fallback node showing
what ran where; the arena smaller than the sum of the activations."""
from __future__ import annotations

import numpy as np
import pytest

from pyaccel import models
from pyaccel.compiler import check_report
from pyaccel.compiler.builder import Builder

CASES = {
    "resnet18-w0.25-r32": ("resnet", dict(depth=18, width_mult=0.25, resolution=32)),
    "resnet18-w0.5-r48": ("resnet", dict(depth=18, width_mult=0.5, resolution=48,
                                         blocks=(1, 1, 1, 1))),
    "resnet50-w0.25-r32": ("resnet", dict(depth=50, width_mult=0.25, resolution=32,
                                          blocks=(1, 1, 1, 1))),
    "mobilenet_v2-w0.35-r32": ("mobilenet_v2", dict(width_mult=0.35, resolution=32)),
    "mobilenet_v2-w0.5-r48-d0.5": ("mobilenet_v2", dict(width_mult=0.5, resolution=48,
                                                        depth_mult=0.5)),
    "shufflenet_v2-w0.5-r32": ("shufflenet_v2", dict(width_mult=0.5, resolution=32,
                                                     repeats=(2, 2, 1))),
    "shufflenet_v2-w1.0-r48": ("shufflenet_v2", dict(width_mult=1.0, resolution=48,
                                                     repeats=(1, 2, 1))),
    "densenet-k8-r32": ("densenet", dict(growth_rate=8, resolution=32, blocks=(2, 3))),
    "densenet-k12-r48": ("densenet", dict(growth_rate=12, resolution=48, blocks=(3, 2, 2))),
}


def close(got, want):
    scale = max(1.0, float(np.abs(want).max()))
    np.testing.assert_allclose(got.reshape(want.shape), want, rtol=1e-4, atol=1e-4 * scale)


@pytest.mark.parametrize("case", list(CASES))
def test_zoo_family_on_the_device(dev, case):
    family, kwargs = CASES[case]
    model = getattr(models, family)(num_classes=10, seed=2, **kwargs)
    x = np.random.default_rng(0).standard_normal((2,) + model.input_shape, dtype=np.float32)
    with model.compile(dev, batch=2) as net:
        inf = net(x)
        assert net.plan.arena_bytes < net.plan.activations_bytes
    close(inf.output, model.reference(x))
    assert len(inf.jobs) == 1 and all(s.where == "device" for s in inf.layers)
    assert inf.jobs[0].macs == 2 * model.macs
    assert all(s.cycles > 0 for s in inf.layers)


def test_cpu_fallback_in_the_middle_says_what_ran_where(dev):
    b = Builder("mid", (4, 8, 8), seed=3)
    y = b.conv(b.input, 8, 3)
    y = b.softmax(y)                                # the device has no softmax
    y = b.conv(y, 8, 3, act="hard_swish")
    model = b.finish(b.fc(b.flatten(b.global_avgpool(y)), 5))
    report = check_report(model.graph, dev.info)
    assert "no softmax operation" in report and "2 job(s)" in report
    x = np.random.default_rng(1).standard_normal((1, 4, 8, 8), dtype=np.float32)
    with model.compile(dev) as net:
        inf = net(x)
    close(inf.output, model.reference(x))
    where = {s.name: s.where for s in inf.layers}
    assert where["softmax"] == "cpu" and list(where.values()).count("device") == 4
    assert len(inf.jobs) == 2 and "1 on the CPU" in inf.where()
    print(inf.table())


def test_mobilenet_v1_through_the_compiler(dev):
    m = models.mobilenet_v1(0.25, 64, num_classes=10)
    x = np.random.default_rng(0).standard_normal((1, 3, 64, 64), dtype=np.float32)
    from pyaccel.compiler import compile as compile_graph
    with compile_graph(m.to_graph(), dev) as net:
        inf = net(x)
        print(net.report().splitlines()[-1])
        assert net.plan.arena_bytes < net.plan.activations_bytes
    np.testing.assert_allclose(inf.output, m.reference(x), rtol=1e-4, atol=1e-5)
    assert len(inf.jobs) == 1 and [s.name for s in inf.layers if s.where == "cpu"] == ["softmax"]
