"""``python3 -m pyaccel run MODEL.onnx`` (pyaccel/cli.py hands .onnx paths
here): load with pyaccel.onnx, compile for the device, run the input
(``--input X.npy``, or a seeded standard-normal input of the model's input
shape), print the per-layer table, write the first output as float32
(``--output Y.npy``); ``--check`` compares with the IR's numpy semantics
(for a QDQ model, which runs as int8 layers: the golden model).
``python3 -m pyaccel check MODEL.onnx`` goes through cli.model_graph."""
from __future__ import annotations

import argparse
import sys

import numpy as np

from . import onnx as ponnx


def input_array(graph, args: argparse.Namespace) -> np.ndarray:
    shape = ponnx.onnx_shape(graph, graph.inputs[0])
    if args.input:
        x = np.load(args.input).astype(np.float32)
        if x.size != int(np.prod(shape)):
            raise ValueError(f"--input {args.input}: shape {x.shape} does not fit the model's "
                             f"input {shape}")
        return x.reshape(shape)
    return np.random.default_rng(args.seed).standard_normal(shape, dtype=np.float32)


def run(args: argparse.Namespace) -> int:
    from . import compiler
    from .compiler import execute
    from .device import open as open_device

    graph = ponnx.load_model(args.model).graph      # a QDQ model: its int8 graph
    if len(graph.inputs) != 1:
        raise ValueError(f"{args.model}: {len(graph.inputs)} inputs; run takes models with one")
    print(graph.summary() if getattr(args, "verbose", False) else
          f"{graph.name}: {graph.params:,} params, {graph.macs:,} MACs, "
          f"input {ponnx.onnx_shape(graph, graph.inputs[0])}")
    x = input_array(graph, args)
    feeds = ponnx.as_feeds(graph, x)
    dev_arg = args.device
    with open_device(int(dev_arg) if dev_arg and dev_arg.isdigit() else dev_arg) as dev:
        print("[pyaccel] compiling: passes, partition, memory plan, uploading weights",
              file=sys.stderr, flush=True)
        with compiler.compile(graph, dev) as net:
            print(net.report().splitlines()[-2] if len(net.report().splitlines()) > 1 else "")
            net(feeds)                                   # warm-up
            inf = net(feeds)
    y = ponnx.as_outputs(graph, inf.outputs)[0].astype(np.float32)
    print(inf.table())
    flat = y.reshape(y.shape[0], -1) if y.ndim > 1 else y[None]
    top = np.argsort(-flat[0])[:5]
    print(f"output {y.shape}; top-5 of the first:",
          ", ".join(f"{c}: {flat[0][c]:.4f}" for c in top))
    if getattr(args, "output", None):
        np.save(args.output, y)
        print(f"wrote {args.output} ({y.shape}, float32)")
    if getattr(args, "check", False):
        want = ponnx.as_outputs(graph, execute.run(graph, feeds))[0]
        err = float(np.abs(y - want).max())
        print(f"max |device - numpy IR| = {err:.3g}")
        return 0 if err <= 1e-3 * max(1.0, float(np.abs(want).max())) else 1
    return 0
