"""int8 nodes in numpy with the device's golden model (pyaccel.reference_int8):
what the device computes for a quantized graph, bit for bit.

``evaluate(g, node, args)`` is one int8 node (a node with ``attrs["int8"]``,
see ir.py); pyaccel.compiler.execute dispatches to it, so ``execute.run`` of a
quantized graph is the golden-model path (and the runtime's CPU fallback of
an int8 node). Views of int8 tensors (concat, split, ...) need no int8
arithmetic: execute handles them, keeping the dtype.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .. import reference_int8 as ri8
from .ir import Graph, IRError, Node


def evaluate(g: Graph, node: Node, args: Sequence[np.ndarray]) -> list:
    """The int8 node's outputs from its input arrays (int8; a dequantize: float32)."""
    q, a, op = node.attrs["int8"], node.attrs, node.op
    table = lambda k: g.constants[q[k]] if q.get(k) else None  # noqa: E731
    fin = dict(zp_out=q.get("zp_out", 0), act_min=q.get("act_min", -128),
               act_max=q.get("act_max", 127), lut=table("lut"))
    x = args[0]
    if op == "quantize":
        zp_out = fin.pop("zp_out")
        return [ri8.quantize(x, q["qscale"], zp_out, **fin)]
    if op == "dequantize":
        return [ri8.dequantize(x, q["qscale"], q["zp_in0"])]
    rq, zp = table("requant"), q.get("zp_in0", 0)
    bias = args[2] if len(args) > 2 else None
    if op == "conv":
        return [ri8.conv2d_int8(x, args[1], bias, a["stride"], a["pads"], a["dilation"],
                                a["groups"], requant=rq, zp_in=zp, **fin)]
    if op == "fc":
        return [ri8.fc_int8(np.asarray(x).reshape(x.shape[0], -1), args[1], bias, requant=rq,
                            zp_in=zp, **fin)]
    if op == "scale_shift":
        return [ri8.scale_shift_int8(x, args[1], args[2], requant=rq, zp_in=zp, **fin)]
    if op in ("add", "mul"):
        f = ri8.add_int8 if op == "add" else ri8.mul_int8
        return [f(x, args[1], requant=rq, zp_in0=zp, zp_in1=q["zp_in1"], **fin)]
    if op == "maxpool":
        return [ri8.max_pool2d_int8(x, a["kernel"], a["stride"], a["pads"], zp_in=zp, **fin)]
    if op == "avgpool":
        return [ri8.avg_pool2d_int8(x, a["kernel"], a["stride"], a["pads"], requant=rq,
                                    zp_in=zp, **fin)]
    if op == "global_avgpool":
        return [ri8.global_avg_pool2d_int8(x, requant=rq, zp_in=zp, **fin)]
    if op == "global_maxpool":
        return [ri8.global_max_pool2d_int8(x, zp_in=zp, **fin)]
    if op in ("act", "copy"):
        return [ri8.act_int8(x, requant=rq, zp_in=zp, **fin)]
    if op == "channel_shuffle":         # a permutation, copied by identity ACT layers
        n, c, h, w = x.shape
        k = a["groups"]
        y = x.reshape(n, k, c // k, h, w).transpose(0, 2, 1, 3, 4).reshape(x.shape)
        return [ri8.act_int8(np.ascontiguousarray(y), requant=rq, zp_in=zp, **fin)]
    raise IRError(f"{node.name}: no int8 semantics for op {op!r}")
