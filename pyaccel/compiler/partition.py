"""Where each node runs: the device (with the op it maps to), the CPU (with
why), or nowhere (a view: no work). Contiguous device nodes form segments,
each submitted as ONE job (split only above the device's MAX_LAYERS).

`info` is a Device.info, or None for a full convaccel 2.0 (its limits from
docs/hardware.md); the decision reads INFO's ops, activations and dtypes
bitmaps and its limits, so a device lacking something never fails a job:
the node runs on the CPU and the support report says so.
"""
from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Optional

from ..jobs import ACTIVATIONS2, DTYPES, OPS2
from .ir import Graph, Node

DEVICE_OP = {"conv": "conv", "maxpool": "maxpool", "avgpool": "avgpool",
             "global_avgpool": "global_avgpool", "global_maxpool": "global_maxpool",
             "add": "add", "mul": "mul", "scale_shift": "scale_shift", "fc": "fc",
             "act": "act", "copy": "act", "channel_shuffle": "act", "quantize": "quantize",
             "dequantize": "dequantize"}
FREE_VIEWS = ("concat", "split", "slice", "flatten", "reshape")

DEFAULT_INFO = SimpleNamespace(
    version="2.0 (assumed)", layer2_size=256, ops=sum(1 << c for c in range(1, 13)),
    activations=0x7F, dtypes=0x3, max_kernel=16, max_pad=64, max_channels=8192,
    max_dim=4096, max_layers=1024)


@dataclass(frozen=True)
class Placement:
    node: str
    op: str
    where: str                  # "device", "cpu", "view"
    device_op: Optional[str]
    reason: str                 # why the CPU (or what the view is)


def _activation_name(node: Node) -> str:
    if "int8" in node.attrs:            # int8 layers: the clamp and the table, act 0
        return "none"
    a = node.attrs.get("activation")
    if node.op == "act":
        from .execute import act_spec
        a = act_spec(node.attrs)
        if a is None:
            return "?"
    return (a.name if a is not None else None) or "none"


def why_not(g: Graph, node: Node, info: Any, shuffle_mode: str = "copy") -> Optional[str]:
    """None if the device runs node, else the reason it cannot."""
    op = DEVICE_OP.get(node.op)
    if op is None:
        return f"the device has no {node.op} operation"
    if not info.layer2_size:
        return f"the device (convaccel {info.version}) has no hardware 2.0 layers"
    if not info.ops >> OPS2[op] & 1:
        return f"the device's INFO lists no {op.upper()} operation"
    act = _activation_name(node)
    if act == "?":
        a = node.attrs
        return f"clip({a.get('min')}, {a.get('max')}) is no device activation"
    if not info.activations >> ACTIVATIONS2[act] & 1:
        return f"the device's INFO lists no {act} activation"
    for t in node.inputs[:1] + node.outputs:
        dt = g.tensors[t].dtype
        if dt not in DTYPES or not info.dtypes >> DTYPES[dt] & 1:
            return f"the device has no {dt} tensors"
    shapes = [g.shape(t) for t in node.inputs[:1] + node.outputs]
    for s in shapes:
        if s[0] > info.max_dim or (len(s) == 4 and max(s[2:]) > info.max_dim):
            return f"shape {s} exceeds the device's MAX_DIM {info.max_dim}"
        if s[1] > info.max_channels:
            return f"{s[1]} channels exceed the device's MAX_CHANNELS {info.max_channels}"
    a = node.attrs
    if node.op == "conv":
        if not all(t in g.constants for t in node.inputs[1:]):
            return "its weights are computed at run time (the device reads constant weights)"
        ws = g.shape(node.inputs[1])
        big = max(ws[2], ws[3], *a["stride"], *a["dilation"])
        if big > info.max_kernel:
            return f"kernel/stride/dilation {big} exceed the device's MAX_KERNEL {info.max_kernel}"
        if max(a["pads"]) > info.max_pad:
            return f"padding {a['pads']} exceeds the device's MAX_PAD {info.max_pad}"
    if node.op in ("maxpool", "avgpool"):
        (kh, kw), pads = a["kernel"], a["pads"]
        if max(kh, kw, *a["stride"]) > info.max_kernel:
            return f"window {kh}x{kw} exceeds the device's MAX_KERNEL {info.max_kernel}"
        if max(pads[:2]) >= kh or max(pads[2:]) >= kw:
            return f"padding {pads} is not below the {kh}x{kw} window"
        if node.op == "avgpool" and not a.get("count_include_pad", True) and any(pads):
            return "average pooling with count_include_pad=False over padding"
    if node.op in ("fc", "scale_shift") and not all(t in g.constants for t in node.inputs[1:]):
        return "its weights are computed at run time (the device reads constant weights)"
    return None


def place(g: Graph, info: Any = None) -> list[Placement]:
    """A Placement for every node of g (after the passes)."""
    info = info or DEFAULT_INFO
    out = []
    for n in g.nodes:
        if n.op in FREE_VIEWS or (n.op == "channel_shuffle" and n.attrs.get("mode") == "view"):
            out.append(Placement(n.name, n.op, "view", None, "a view: no copy, no layer"))
            continue
        reason = why_not(g, n, info)
        if reason is None:
            dev_op = DEVICE_OP[n.op]
            note = (f"{n.attrs['groups']} copies of a channel group" if n.op == "channel_shuffle"
                    else "")
            out.append(Placement(n.name, n.op, "device", dev_op, note))
        else:
            out.append(Placement(n.name, n.op, "cpu", None, reason))
    return out


def segments(g: Graph, placements: list[Placement], max_layers: int = 1024) -> list:
    """[("device", [node, ...]) or ("cpu", [node])] in order; views join
    whatever surrounds them (they cost nothing)."""
    by_name = {n.name: n for n in g.nodes}
    segs: list = []
    count = 0
    for p in placements:
        node = by_name[p.node]
        if p.where == "view":
            continue
        layers = node.attrs["groups"] if node.op == "channel_shuffle" else 1
        if p.where == "device":
            if segs and segs[-1][0] == "device" and count + layers <= max_layers:
                segs[-1][1].append(node)
                count += layers
            else:
                segs.append(("device", [node]))
                count = layers
        else:
            segs.append(("cpu", [node]))
    return segs
