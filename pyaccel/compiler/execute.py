"""The IR in numpy: one node's semantics (``evaluate``) and a whole graph
(``run``), with pyaccel.reference as the arithmetic. The oracle of the
compiler, the CPU fallback of the runtime and the constant folder use it."""
from __future__ import annotations

from typing import Mapping, Optional, Sequence

import numpy as np

from .. import reference as ref
from .ir import Graph, IRError, Node

CPU_ACTS = ("relu", "relu6", "leaky_relu", "sigmoid", "hard_sigmoid", "hard_swish")


def act_spec(attrs: Mapping) -> Optional[ref.Activation]:
    """The act node's activation as a reference.Activation; None for a clip
    that is no device activation (see clip_to_activation)."""
    kind = attrs["kind"]
    if kind == "clip":
        return clip_to_activation(attrs.get("min"), attrs.get("max"))
    if kind == "leaky_relu":
        return ref.activation(("leaky_relu", attrs["alpha"]))
    if kind in ("hard_sigmoid", "hard_swish"):
        return ref.activation((kind, attrs["alpha"], attrs["beta"]))
    return ref.activation(kind)


def clip_to_activation(lo, hi) -> Optional[ref.Activation]:
    """clip(lo, hi) as a device activation: (0, None/inf) ReLU, (0, 6) ReLU6, else None."""
    lo = None if lo is None or lo == -np.inf else float(lo)
    hi = None if hi is None or hi == np.inf else float(hi)
    if lo == 0.0 and hi is None:
        return ref.activation("relu")
    if lo == 0.0 and hi == 6.0:
        return ref.activation("relu6")
    return None


def _fused(node: Node):
    return node.attrs.get("activation")


def evaluate(g: Graph, node: Node, args: Sequence[np.ndarray]) -> list:
    """The node's outputs (float32 arrays) from its input arrays."""
    op, a = node.op, node.attrs
    if "int8" in a:                     # the golden model of the device's int8 layers
        from . import golden
        return golden.evaluate(g, node, args)
    act = _fused(node)
    x = args[0] if args else None
    if op == "conv":
        return [ref.conv2d(x, args[1], args[2] if len(args) > 2 else None, a["stride"],
                           a["pads"], a["dilation"], a["groups"], act)]
    if op == "maxpool":
        return [ref.max_pool2d(x, a["kernel"], a["stride"], a["pads"], act)]
    if op == "avgpool":
        if not a.get("count_include_pad", True) and any(a["pads"]):
            s = ref.avg_pool2d(x, a["kernel"], a["stride"], a["pads"])
            ones = np.ones((1, 1) + x.shape[2:], np.float32)
            cnt = ref.avg_pool2d(ones, a["kernel"], a["stride"], a["pads"])
            return [ref.act(s / cnt, act)]
        return [ref.avg_pool2d(x, a["kernel"], a["stride"], a["pads"], act)]
    if op == "global_avgpool":
        return [ref.global_avg_pool2d(x, act)]
    if op == "global_maxpool":
        return [ref.global_max_pool2d(x, act)]
    if op == "add":
        return [ref.add(x, args[1], act)]
    if op == "mul":
        return [ref.mul(x, args[1], act)]
    if op == "scale_shift":
        return [ref.scale_shift(x, args[1], args[2], act)]
    if op == "batchnorm":
        gamma, beta, mean, var = (np.asarray(v, np.float64) for v in args[1:])
        scale = gamma / np.sqrt(var + a["epsilon"])
        return [ref.scale_shift(x, scale, beta - mean * scale, act)]
    if op == "fc":
        return [ref.fc(np.asarray(x).reshape(x.shape[0], -1), args[1],
                       args[2] if len(args) > 2 else None, act)]
    if op == "act":
        spec = act_spec(a)
        if spec is None:            # a clip range no activation names
            lo, hi = a.get("min"), a.get("max")
            return [np.clip(np.asarray(x, np.float32), -np.inf if lo is None else lo,
                            np.inf if hi is None else hi).astype(np.float32)]
        return [ref.act(x, spec)]
    if op in ("identity", "dropout", "copy"):
        return [ref.act(x, act)]
    if op == "concat":
        return [np.concatenate(args, axis=1)]
    if op == "split":
        bounds = np.cumsum(a["split"])[:-1]
        return [np.ascontiguousarray(p) for p in np.split(x, bounds, axis=1)]
    if op == "slice":
        return [np.ascontiguousarray(x[:, a["start"]:a["end"]])]
    if op == "channel_shuffle":
        n, c, h, w = x.shape
        k = a["groups"]
        return [np.ascontiguousarray(x.reshape(n, k, c // k, h, w).transpose(0, 2, 1, 3, 4)
                                     .reshape(x.shape))]
    if op == "flatten":
        return [np.ascontiguousarray(x).reshape(x.shape[0], -1)]
    if op == "reshape":
        target = [x.shape[i] if v == 0 else int(v) for i, v in enumerate(a["shape"])]
        return [np.ascontiguousarray(x).reshape(target)]
    if op == "softmax":
        # float64 inside, as the oracle: a float32 softmax's last bits differ
        # between the guest's numpy (aarch64) and the host's (x86 SIMD exp),
        # and the device's int8 output must equal the golden model bit for bit
        return [ref.softmax(np.asarray(x, np.float32), axis=a.get("axis", 1))]
    raise IRError(f"{node.name}: no numpy semantics for op {op!r}")


def run(g: Graph, feeds: Mapping[str, np.ndarray] | np.ndarray) -> dict:
    """Every graph output from the inputs (an array: the only input)."""
    if not isinstance(feeds, Mapping):
        feeds = {g.inputs[0]: feeds}
    values: dict = {k: np.asarray(v, np.float32) for k, v in feeds.items()}
    values.update(g.constants)
    missing = [t for t in g.inputs if t not in values]
    if missing:
        raise IRError(f"{g.name}: no value for the input(s) {missing}")
    last_use = {}
    for i, n in enumerate(g.nodes):
        for t in n.inputs:
            last_use[t] = i
    for i, n in enumerate(g.nodes):
        for t, v in zip(n.outputs, evaluate(g, n, [values[t] for t in n.inputs])):
            values[t] = v
        for t in n.inputs:          # free what no later node reads (big nets, small RAM)
            if last_use.get(t) == i and t not in g.outputs and t not in g.constants:
                values.pop(t, None)
    return {t: values[t] for t in g.outputs}
