"""The host half of the device-vs-host comparison: the same networks in
PyTorch on the host's CPU (torch.set_num_threads(threads)), end to end and
layer by layer (each layer timed alone on its real input)."""
from __future__ import annotations

import time

import numpy as np
import torch

from nets import Net
from stats import repeat, summary
from torchnet import inference_twin


def measure(net: Net, repeats: int, layer_repeats: int, settle: float = 0.05) -> dict:
    """e2e and per-layer wall times (ms summaries) of net's twin, batch 1."""
    model = net.build()
    twin = inference_twin(model)
    x = torch.from_numpy(np.random.default_rng(1).standard_normal(
        (1,) + model.input_shape, dtype=np.float32))
    with torch.inference_mode():
        time.sleep(settle)       # let other thread pools go idle
        e2e = repeat(lambda: twin(x), repeats, warmup=5)
        layers, y = [], x
        for name, layer in zip(twin.names, twin.layers()):
            inp = y
            times = repeat(lambda: layer(inp), layer_repeats, warmup=3)
            y = layer(inp)
            layers.append(dict(name=name, **summary(times)))
        expected = model.reference(x.numpy())
        err = float(np.abs(twin(x).numpy() - expected).max())
    return dict(e2e=summary(e2e), layers=layers, max_abs_err_vs_oracle=err)


def env(threads: int) -> dict:
    return dict(torch=torch.__version__, threads=torch.get_num_threads(),
                requested_threads=threads)
