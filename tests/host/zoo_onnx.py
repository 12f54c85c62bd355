"""A compiler IR graph (a zoo network before the passes) written as ONNX,
with the spellings torch.onnx.export uses for the same PyTorch modules:
Conv, BatchNormalization, Relu, Clip (ReLU6), HardSwish (opset >= 14) or
x * HardSigmoid(x) (below), Add, Mul, Concat, Split, the
Reshape/Transpose/Reshape of a channel shuffle, MaxPool, AveragePool,
GlobalAveragePool, Flatten, Gemm (transB=1), Softmax. Test tooling (it needs
the onnx package): the guest runs these files on the device
(tests/host/guest_models.py); test_onnx_torch.py checks torch's own export.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ACTS = {"relu": "Relu", "sigmoid": "Sigmoid", "hsigmoid": "HardSigmoid"}


def _pads(p) -> list:
    t, b, l_, r = p                                   # IR (t, b, l, r) -> ONNX (t, l, b, r)
    return [t, l_, b, r]


def to_onnx(g, opset: int = 13, input_name: str = "input") -> onnx.ModelProto:
    """ONNX model of IR graph g (ops of a zoo network; see the module doc),
    its input named input_name."""
    nodes, inits, k = [], [], [0]
    x0 = g.inputs[0]

    def name(base: str) -> str:
        k[0] += 1
        return f"{base}_{k[0]}"

    def const(a, base: str) -> str:
        n = name(base)
        inits.append(numpy_helper.from_array(np.asarray(a), n))
        return n

    def node(op: str, ins: list, outs: list, **attrs) -> None:
        nodes.append(helper.make_node(op, ins, outs, name=name(f"/{op}"), **attrs))

    for n in g.nodes:
        a, x, y = n.attrs, n.inputs, n.outputs
        ins = [input_name if t == x0 else t if t not in g.constants else
               const(g.constants[t], t) for t in x]
        if n.op == "conv":
            w = g.constants[x[1]]
            node("Conv", ins, y, kernel_shape=list(w.shape[2:]), strides=list(a["stride"]),
                 pads=_pads(a["pads"]), dilations=list(a["dilation"]), group=a["groups"])
        elif n.op == "batchnorm":
            node("BatchNormalization", ins, y, epsilon=a["epsilon"], momentum=0.9)
        elif n.op == "act":
            kind = a["kind"]
            if kind == "relu6":
                node("Clip", [ins[0], const(np.float32(0), "min"), const(np.float32(6), "max")], y)
            elif kind == "hswish" and opset < 14:
                hs = name("hardsigmoid")
                node("HardSigmoid", ins, [hs], alpha=1 / 6, beta=0.5)
                node("Mul", [ins[0], hs], y)
            elif kind == "hswish":
                node("HardSwish", ins, y)
            elif kind == "hsigmoid":
                node("HardSigmoid", ins, y, alpha=1 / 6, beta=0.5)
            elif kind in ACTS:
                node(ACTS[kind], ins, y)
            else:
                raise ValueError(f"{n.name}: no ONNX spelling for activation {kind}")
        elif n.op in ("maxpool", "avgpool"):
            extra = {} if n.op == "maxpool" else {
                "count_include_pad": int(a.get("count_include_pad", True))}
            node("MaxPool" if n.op == "maxpool" else "AveragePool", ins, y,
                 kernel_shape=list(a["kernel"]), strides=list(a["stride"]),
                 pads=_pads(a["pads"]), **extra)
        elif n.op == "global_avgpool":
            node("GlobalAveragePool", ins, y)
        elif n.op in ("add", "mul"):
            node(n.op.capitalize(), ins, y)
        elif n.op == "concat":
            node("Concat", ins, y, axis=1)
        elif n.op == "split":
            node("Split", [ins[0], const(np.array(a["split"], np.int64), "split")], y, axis=1)
        elif n.op == "channel_shuffle":
            nb, c, h, w = g.shape(x[0])
            grp = a["groups"]
            r5, tr = name("reshape"), name("transpose")
            node("Reshape", [ins[0], const(np.array([nb, grp, c // grp, h, w], np.int64), "s")],
                 [r5])
            node("Transpose", [r5], [tr], perm=[0, 2, 1, 3, 4])
            node("Reshape", [tr, const(np.array([nb, c, h, w], np.int64), "s")], y)
        elif n.op == "flatten":
            node("Flatten", ins, y, axis=1)
        elif n.op == "fc":
            node("Gemm", ins, y, alpha=1.0, beta=1.0, transB=1)
        elif n.op in ("dropout", "identity"):
            node("Identity", ins, y)
        elif n.op == "softmax":
            node("Softmax", ins, y, axis=1)
        else:
            raise ValueError(f"{n.name}: no ONNX spelling for op {n.op}")
    gp = helper.make_graph(
        nodes, g.name,
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, list(g.shape(x0)))],
        [helper.make_tensor_value_info(t, TensorProto.FLOAT, None) for t in g.outputs], inits)
    m = helper.make_model(gp, opset_imports=[helper.make_opsetid("", opset)], ir_version=8,
                          producer_name="pyaccel-tests")
    return onnx.shape_inference.infer_shapes(m)
