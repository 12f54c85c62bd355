"""The host half of the device-vs-host comparison: the same networks in
PyTorch on the host's CPU (torch.set_num_threads(threads)), end to end and
layer by layer (each layer timed alone on its real input)."""
from __future__ import annotations

import time

import numpy as np
import torch

from nets import Net, ZooNet
from stats import repeat, summary
from torchnet import inference_twin


def net_input(shape: tuple, batch: int = 1) -> np.ndarray:
    """guest_bench.net_input: standard normal, seed 1."""
    return np.random.default_rng(1).standard_normal((batch,) + tuple(shape), dtype=np.float32)


def measure_graph(net: ZooNet, repeats: int, settle: float = 0.05) -> dict:
    """A zoo network's twin (bench/torchgraph.py: the device's graph), e2e, batch 1."""
    import torchgraph

    model = net.build()
    twin = torchgraph.twin(model)
    x = net_input(model.input_shape)
    with torch.inference_mode():
        time.sleep(settle)
        e2e = repeat(lambda: twin(torch.from_numpy(x)), repeats, warmup=5)
        y = twin(torch.from_numpy(x)).numpy()
    expected = model.reference(x)
    return dict(e2e=summary(e2e), max_abs_err_vs_oracle=float(np.abs(
        y.reshape(expected.shape) - expected).max()), oracle_max_abs=float(np.abs(expected).max()))


def measure_batch(net: Net, batch: int, repeats: int, settle: float = 0.05) -> dict:
    model = net.build()
    twin = inference_twin(model)
    x = torch.from_numpy(net_input(model.input_shape, batch))
    with torch.inference_mode():
        time.sleep(settle)
        e2e = repeat(lambda: twin(x), repeats, warmup=3)
    return dict(e2e=summary(e2e), batch=batch)


def library_layers(repeats: int) -> dict:
    """MobileNet-v1 1.0's convolutions through build/libconvaccel_compute.so
    (the device's kernels, built with the same flags QEMU builds them with:
    qemu/compute/cflags), with the device's activations and default threads."""
    import bench_device as bd

    path = bd.build_library()
    ffi, lib = bd.load_library(path)
    rows = bd.library_times(ffi, lib, bd.mobilenet_v1(), repeats)
    for r in rows:
        r["hot"] = summary([t * 1e6 for t in r.pop("times_ms")])
        r["chain"] = summary([t * 1e6 for t in r.pop("chain_times_ms")])
    return dict(library=path, threads=lib.cvc_default_threads(), layers=rows,
                openblas_core=ffi.string(lib.openblas_get_corename()).decode())


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
