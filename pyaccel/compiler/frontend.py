"""graph.Model (the sequential builder) as an IR Graph: its folded weights,
its ops with their activations as act nodes (the passes fuse them again),
a flatten and, if the model has one, a softmax (a CPU node)."""
from __future__ import annotations

import numpy as np

from .ir import Graph


def from_model(model, batch: int = 1) -> Graph:
    from ..graph import Conv2d

    g = Graph(model.name)
    x = g.add_input("input", (batch,) + tuple(model.input_shape))
    for op in model.ops:
        if isinstance(op, Conv2d):
            w = g.add_constant(f"{op.name}.weight",
                               np.asarray(model.weights[f"{op.name}.weight"]).reshape(
                                   op.weight_shape()))
            ins = [x, w]
            if f"{op.name}.bias" in model.weights:
                ins.append(g.add_constant(f"{op.name}.bias", model.weights[f"{op.name}.bias"]))
            from ..reference import padding4, pair
            x = g.add_node("conv", ins, name=op.name, stride=pair(op.stride, "stride"),
                           pads=padding4(op.padding), dilation=pair(op.dilation, "dilation"),
                           groups=op.groups).outputs[0]
        elif op.kernel is None:
            x = g.add_node(f"global_{op.kind}pool", [x], name=op.name).outputs[0]
        else:
            (kh, kw), stride = op.window(g.shape(x)[1:])
            from ..reference import padding4
            x = g.add_node(f"{op.kind}pool", [x], name=op.name, kernel=(kh, kw), stride=stride,
                           pads=padding4(op.padding)).outputs[0]
        if op.activation:
            x = g.add_node("act", [x], name=f"{op.name}.{op.activation}",
                           kind=op.activation).outputs[0]
    x = g.add_node("flatten", [x], name="flatten").outputs[0]
    if model.softmax:
        x = g.add_node("softmax", [x], name="softmax").outputs[0]
    g.mark_output(x)
    g.check()
    return g
