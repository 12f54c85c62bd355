"""The compiler's model zoo: MACs and parameters against torchvision's (within
1%), and a numpy forward of each family at a small resolution, compiled and
run on the numpy device model (views, memory plan, encoder) against the
graph's reference."""
from __future__ import annotations

import numpy as np
import pytest

from pyaccel import models
from pyaccel.compiler import api
from pyaccel.compiler.simulate import HostDevice

# (builder, kwargs): (G MACs, M params) as torchvision's models count them
COUNTS = [
    ("resnet", dict(depth=18), 1.814, 11.69),
    ("resnet", dict(depth=34), 3.664, 21.80),
    ("resnet", dict(depth=50), 4.089, 25.56),
    ("resnet", dict(depth=50, bottleneck_width=128), 11.40, 68.88),
    ("mobilenet_v2", dict(width_mult=1.0), 0.3008, 3.50),
    ("mobilenet_v2", dict(width_mult=0.5), 0.0971, 1.97),
    ("mobilenet_v2", dict(width_mult=1.4), 0.5822, 6.11),
    ("shufflenet_v2", dict(width_mult=0.5), 0.0405, 1.37),
    ("shufflenet_v2", dict(width_mult=1.0), 0.1449, 2.28),
    ("shufflenet_v2", dict(width_mult=2.0), 0.5833, 7.39),
    ("densenet", dict(depth=121), 2.834, 7.98),
]


@pytest.mark.parametrize("family, kwargs, gmacs, mparams", COUNTS,
                         ids=[f"{c[0]}-{'-'.join(f'{v}' for v in c[1].values())}" for c in COUNTS])
def test_counts_match_torchvision(family, kwargs, gmacs, mparams):
    m = getattr(models, family)(**kwargs)
    assert abs(m.macs / 1e9 / gmacs - 1) < 0.01, m.macs
    assert abs(m.params / 1e6 / mparams - 1) < 0.01, m.params


SMALL = [
    ("resnet", dict(depth=18, width_mult=0.25, resolution=32)),
    ("resnet", dict(depth=50, width_mult=0.25, resolution=32, blocks=(1, 1, 1, 1))),
    ("mobilenet_v2", dict(width_mult=0.35, resolution=32)),
    ("shufflenet_v2", dict(width_mult=0.5, resolution=32, repeats=(2, 2, 1))),
    ("densenet", dict(growth_rate=8, resolution=32, blocks=(2, 3, 2))),
]


@pytest.mark.parametrize("family, kwargs", SMALL, ids=[s[0] + str(i) for i, s in enumerate(SMALL)])
def test_small_forward_compiled_matches_the_reference(family, kwargs):
    m = getattr(models, family)(num_classes=10, seed=1, **kwargs)
    x = np.random.default_rng(0).standard_normal((2,) + m.input_shape, dtype=np.float32)
    want = m.reference(x)
    assert want.shape == (2, 10) and np.isfinite(want).all()
    dev = HostDevice()
    with m.compile(dev, batch=2) as net:
        inf = net(x)
    assert net.jobs_per_inference == 1 and dev.jobs == 1       # one job: all on the device
    np.testing.assert_allclose(inf.output, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
    assert net.plan.arena_bytes < net.plan.activations_bytes


def test_bad_arguments_are_clear():
    with pytest.raises(ValueError, match="depth must be one of"):
        models.resnet(depth=20)
    with pytest.raises(ValueError, match="width_mult must be one of"):
        models.shufflenet_v2(0.75)
    with pytest.raises(ValueError, match="densenet depth"):
        models.densenet(depth=100)


def test_make_divisible_is_torchvisions():
    from pyaccel.compiler.zoo import make_divisible
    assert [make_divisible(32 * w) for w in (0.35, 0.5, 0.75, 1.0, 1.4)] == [16, 16, 24, 32, 48]
    assert make_divisible(1280 * 1.4) == 1792


def test_prepare_needs_no_device():
    p = api.prepare(models.densenet(growth_rate=8, resolution=32, blocks=(2, 2)).graph)
    assert all(pl.where in ("device", "view") for pl in p.placements)
