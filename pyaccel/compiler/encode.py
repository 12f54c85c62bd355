"""Device segments as Layer2 lists: views into the arena (the memory plan's
locations, strided for slices, concatenations and shuffles) and tensors in
the weights buffer."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..errors import AccelError
from ..jobs import Layer2, Tensor, View
from ..ops_v2 import pointwise_geometry
from .ir import NUMPY_DTYPES, Graph, Node, as4, packed_strides
from .plan import MemoryPlan


INT8_FIELDS = ("zp_in0", "zp_in1", "zp_out", "act_min", "act_max", "qscale")


class EncodeError(AccelError):
    """A node the encoder cannot express as device layers (names it)."""


class Encoder:
    def __init__(self, g: Graph, plan: MemoryPlan, arena: int, weights: int) -> None:
        self.g, self.plan, self.arena, self.weights = g, plan, arena, weights

    def view(self, t: str, c_start: int = 0, c_step: int = 1) -> View:
        g, p = self.g, self.plan
        dtype = g.tensors[t].dtype
        item = np.dtype(NUMPY_DTYPES[dtype]).itemsize
        if t in g.constants:
            if t not in p.weight_offsets:
                raise EncodeError(f"constant {t!r} is not in the weights buffer")
            st = packed_strides(g.shape(t))
            return View(self.weights, p.weight_offsets[t] + item * c_start * st[1], dtype,
                        (st[0], st[1] * c_step, st[2], st[3]))
        loc = p.locations[t]
        sn, sc, sh, sw = loc.strides
        off = p.offsets[loc.root] + item * (loc.offset + c_start * sc)
        return View(self.arena, off, g.tensors[t].dtype, (sn, sc * c_step, sh, sw))

    def tensor(self, t: str) -> Tensor:
        return Tensor(self.weights, self.plan.weight_offsets[t])

    def int8_fields(self, node: Node) -> dict:
        """Layer2 keywords of an int8 node: act 0, requant, lut, the quant fields."""
        q = node.attrs["int8"]
        quant = {k: q[k] for k in INT8_FIELDS if k in q}
        return dict(requant=self.tensor(q["requant"]) if q.get("requant") else None,
                    lut=self.tensor(q["lut"]) if q.get("lut") else None, quant=quant)

    def layers(self, node: Node) -> list[Layer2]:
        g, a = self.g, node.attrs
        x, y = node.inputs[0], node.outputs[0]
        xs, ys = as4(g.shape(x)), as4(g.shape(y))
        act = a.get("activation")
        kw = dict(activation=(act.name if act else None) or "none",
                  act_alpha=act.alpha if act else 0.0, act_beta=act.beta if act else 0.0)
        op = node.op
        if "int8" in a:
            kw = self.int8_fields(node)
            if op in ("act", "quantize", "dequantize"):
                return [Layer2(op, self.view(x), self.view(y), geometry=pointwise_geometry(xs),
                               **kw)]
        if op == "conv":
            w = g.shape(node.inputs[1])
            geo = self._window(xs, ys, (w[2], w[3]), a["stride"], a["pads"], a["dilation"],
                               a["groups"])
            return [Layer2("conv", self.view(x), self.view(y), weight=self.tensor(node.inputs[1]),
                           bias=self.tensor(node.inputs[2]) if len(node.inputs) > 2 else None,
                           geometry=geo, **kw)]
        if op in ("maxpool", "avgpool"):
            geo = self._window(xs, ys, a["kernel"], a["stride"], a["pads"], (1, 1), 1)
            return [Layer2(op, self.view(x), self.view(y), geometry=geo, **kw)]
        if op in ("global_avgpool", "global_maxpool"):
            return [Layer2(op, self.view(x), self.view(y),
                           geometry=pointwise_geometry(xs, out_hw=(1, 1)), **kw)]
        if op in ("add", "mul"):
            b = node.inputs[1]
            bcast = op == "mul" and as4(g.shape(b)) != xs
            return [Layer2(op, self.view(x), self.view(y), in1=self.view(b), broadcast=bcast,
                           geometry=pointwise_geometry(xs), **kw)]
        if op == "scale_shift":
            return [Layer2(op, self.view(x), self.view(y), weight=self.tensor(node.inputs[1]),
                           bias=self.tensor(node.inputs[2]), geometry=pointwise_geometry(xs),
                           **kw)]
        if op == "fc":
            return [Layer2("fc", self.view(x), self.view(y), weight=self.tensor(node.inputs[1]),
                           bias=self.tensor(node.inputs[2]) if len(node.inputs) > 2 else None,
                           geometry=pointwise_geometry(xs, c_out=ys[1]), **kw)]
        if op == "act":
            from .execute import act_spec
            s = act_spec(a)
            return [Layer2("act", self.view(x), self.view(y), activation=s.name or "none",
                           act_alpha=s.alpha, act_beta=s.beta, geometry=pointwise_geometry(xs))]
        if op in ("quantize", "dequantize"):
            raise EncodeError(f"{node.name}: a {op} node needs its int8 attributes")
        if op == "copy":
            return [Layer2("act", self.view(x), self.view(y), geometry=pointwise_geometry(xs),
                           **kw)]
        if op == "channel_shuffle":        # group i's k channels -> channels i, i+g, ...
            grp = a["groups"]
            k = xs[1] // grp
            half = (xs[0], k) + xs[2:]
            return [Layer2("act", self.view(x, i * k), self.view(y, i, grp),
                           geometry=pointwise_geometry(half),
                           **(kw if "int8" in a else {})) for i in range(grp)]
        raise EncodeError(f"{node.name}: no device layers for op {op!r}")

    @staticmethod
    def _window(xs, ys, kernel, stride, pads, dilation, groups) -> dict:
        n, c, h, w = xs
        return dict(n=n, c_in=c, h_in=h, w_in=w, c_out=ys[1], h_out=ys[2], w_out=ys[3],
                    groups=groups, kh=kernel[0], kw=kernel[1], stride_h=stride[0],
                    stride_w=stride[1], dil_h=dilation[0], dil_w=dilation[1], pad_top=pads[0],
                    pad_bottom=pads[1], pad_left=pads[2], pad_right=pads[3])

    def segment(self, nodes: Sequence[Node]) -> tuple[list, list]:
        """(layers, owner): owner[i] is the node whose layer i is."""
        layers, owner = [], []
        for n in nodes:
            try:
                ls = self.layers(n)
            except (KeyError, ValueError) as e:
                raise EncodeError(f"{n.name} ({n.op}) cannot be encoded: {e}") from None
            layers += ls
            owner += [n] * len(ls)
        return layers, owner
