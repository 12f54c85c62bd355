"""Graph passes over the IR, in order (``optimize`` runs them all):

1. ``remove_identities``: identity and dropout disappear;
2. ``fold_constants``: a node whose inputs are all constants becomes a constant;
3. ``fold_batchnorm``: conv + batchnorm -> conv (only when the conv's output
   has no other reader and is no graph output);
4. ``batchnorm_to_scale_shift``: a batch norm left over becomes scale_shift;
5. ``fuse_activations``: conv / fc / add / mul / scale_shift / pools / copy +
   act -> the node with attrs["activation"] (a reference.Activation);
6. ``remove_dead``: nodes nothing reads, constants no node reads;
7. ``make_views``: concat, split, slice, channel shuffle, flatten and reshape
   become views (no copies): returns {tensor: ViewOf}, inserting a copy node
   only where a tensor cannot be written in place (a concat input that is a
   graph input, a constant, a view, or in two concats).

Each pass works on the graph in place and keeps it well formed.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from . import execute
from .ir import VIEW_OPS, Graph, Node, infer, int8_tables, packed_strides

FUSES_ACTIVATION = ("conv", "fc", "add", "mul", "scale_shift", "maxpool", "avgpool",
                    "global_avgpool", "global_maxpool", "copy")


def _drop_tensor(g: Graph, t: str) -> None:
    g.tensors.pop(t, None)
    g.constants.pop(t, None)


def _rename_input(g: Graph, old: str, new: str) -> None:
    for n in g.nodes:
        n.inputs = [new if t == old else t for t in n.inputs]
    g.outputs = [new if t == old else t for t in g.outputs]


def remove_identities(g: Graph) -> None:
    for n in [n for n in g.nodes if n.op in ("identity", "dropout")]:
        x, y = n.inputs[0], n.outputs[0]
        if y in g.outputs and (x in g.inputs or x in g.outputs):
            n.op = "copy"               # an output must be a tensor of its own
            continue
        g.nodes.remove(n)
        _rename_input(g, y, x)
        _drop_tensor(g, y)


def fold_constants(g: Graph) -> None:
    for n in list(g.nodes):
        if n.inputs and all(t in g.constants for t in n.inputs) and "int8" not in n.attrs:
            for t, v in zip(n.outputs, execute.evaluate(g, n, [g.constants[t] for t in n.inputs])):
                g.constants[t] = np.ascontiguousarray(v, np.float32)
            g.nodes.remove(n)


def _single_reader(g: Graph, t: str, reader: Node) -> bool:
    return t not in g.outputs and all(n is reader for n in g.nodes if t in n.inputs)


def fold_batchnorm(g: Graph) -> None:
    prods = g.producers()
    for bn in [n for n in g.nodes if n.op == "batchnorm"]:
        conv = prods.get(bn.inputs[0])
        if (conv is None or conv.op != "conv" or conv.attrs.get("activation")
                or not _single_reader(g, bn.inputs[0], bn)
                or not all(t in g.constants for t in conv.inputs[1:] + bn.inputs[1:])):
            continue
        gamma, beta, mean, var = (g.constants[t].astype(np.float64) for t in bn.inputs[1:])
        scale = gamma / np.sqrt(var + bn.attrs["epsilon"])
        w = g.constants[conv.inputs[1]].astype(np.float64)
        b = (g.constants[conv.inputs[2]].astype(np.float64) if len(conv.inputs) > 2
             else np.zeros(w.shape[0]))
        wk = g.add_constant(g.unique_name(f"{conv.name}.weight.folded"),
                            (w * scale[:, None, None, None]).astype(np.float32))
        bk = g.add_constant(g.unique_name(f"{conv.name}.bias.folded"),
                            ((b - mean) * scale + beta).astype(np.float32))
        old = conv.outputs[0]
        conv.inputs = [conv.inputs[0], wk, bk]
        conv.outputs = list(bn.outputs)
        g.nodes.remove(bn)
        _drop_tensor(g, old)
        prods = g.producers()


def batchnorm_to_scale_shift(g: Graph) -> None:
    for n in [n for n in g.nodes if n.op == "batchnorm"]:
        if not all(t in g.constants for t in n.inputs[1:]):
            continue                    # statistics computed at run time: the CPU's
        gamma, beta, mean, var = (g.constants[t].astype(np.float64) for t in n.inputs[1:])
        scale = gamma / np.sqrt(var + n.attrs["epsilon"])
        s = g.add_constant(g.unique_name(f"{n.name}.scale"), scale.astype(np.float32))
        t = g.add_constant(g.unique_name(f"{n.name}.shift"),
                           (beta - mean * scale).astype(np.float32))
        n.op, n.inputs, n.attrs = "scale_shift", [n.inputs[0], s, t], {
            k: v for k, v in n.attrs.items() if k == "activation"}


def fuse_activations(g: Graph) -> None:
    prods = g.producers()
    for act in [n for n in g.nodes if n.op == "act"]:
        p = prods.get(act.inputs[0])
        spec = execute.act_spec(act.attrs)
        if (p is None or p.op not in FUSES_ACTIVATION or spec is None or "int8" in act.attrs
                or "int8" in p.attrs
                or p.attrs.get("activation") is not None
                or not _single_reader(g, act.inputs[0], act)):
            continue
        old = p.outputs[0]
        p.attrs["activation"] = spec
        p.outputs = list(act.outputs)
        g.nodes.remove(act)
        _drop_tensor(g, old)
        prods = g.producers()


# --- views -------------------------------------------------------------------------------

@dataclass(frozen=True)
class ViewOf:
    """A tensor stored inside another: channel j of it is channel
    c_start + j * c_step of parent (same n, h, w); reshape: the same elements
    as the packed parent, another shape."""

    parent: str
    c_start: int = 0
    c_step: int = 1
    reshape: bool = False


@dataclass(frozen=True)
class Location:
    """Where a tensor's elements are: in root's storage, from element offset,
    with element strides (n, c, h, w)."""

    root: str
    offset: int
    strides: tuple


def locate(g: Graph, views: dict, t: str) -> Location:
    v = views.get(t)
    if v is None:
        return Location(t, 0, packed_strides(g.shape(t)))
    p = locate(g, views, v.parent)
    if v.reshape:
        return Location(p.root, p.offset, packed_strides(g.shape(t)))
    sn, sc, sh, sw = p.strides
    return Location(p.root, p.offset + v.c_start * sc, (sn, sc * v.c_step, sh, sw))


def is_packed(g: Graph, loc: Location, t: str) -> bool:
    shape = tuple(g.shape(t)) + (1,) * (4 - len(g.shape(t)))
    want = packed_strides(shape)
    return all(d == 1 or s == w for d, s, w in zip(shape, loc.strides, want))


def _insert_copy(g: Graph, t: str, before: Node) -> str:
    name = g.unique_name(f"{t}.copy")
    node = Node("copy", [t], [name], {}, name)
    info = g.tensors[t]
    g._new_tensor(name, infer(g, node)[0], info.dtype, info.quant)
    if info.dtype == "s8":              # an int8 copy: the identity rescale, same zero point
        from ..quant import act_requant
        q = info.quant
        rq = g.add_constant(g.unique_name(f"{name}.requant"), act_requant(q.scale, q.scale))
        node.attrs["int8"] = dict(requant=rq, lut=None, zp_in0=q.zero_point,
                                  zp_out=q.zero_point, act_min=-128, act_max=127, act=None)
    g.nodes.insert(g.nodes.index(before), node)
    return name


def make_views(g: Graph) -> tuple[dict, set]:
    """Turn the view ops into ViewOf entries; returns (views, virtual): the
    tensors no one stores (a concat read only by a channel shuffle)."""
    while True:
        views, virtual, again = _views_once(g)
        if not again:
            return views, virtual


def _views_once(g: Graph) -> tuple[dict, set, bool]:
    prods = g.producers()
    views: dict = {}
    virtual: set = set()

    def writable(t: str, node: Node) -> bool:
        p = prods.get(t)
        return (p is not None and p.op not in VIEW_OPS and t not in views
                and node.inputs.count(t) == 1)

    readers = g.consumers()
    aliased: list = []                  # concats whose inputs are stored in them
    for a in reversed([n for n in g.nodes if n.op == "concat"]):
        out = a.outputs[0]
        chans = [g.shape(t)[1] for t in a.inputs]
        offs = list(np.cumsum([0] + chans[:-1]))
        # 1. a run of a later concat's inputs: a channel slice of it
        host = next(((b, i) for b in aliased for i in range(len(b.inputs) - len(a.inputs) + 1)
                     if b.inputs[i:i + len(a.inputs)] == a.inputs), None)
        if host is not None:
            b, i = host
            views[out] = ViewOf(b.outputs[0], int(sum(g.shape(t)[1] for t in b.inputs[:i])))
            continue
        # 2. read only by a channel shuffle whose groups hold whole inputs
        rd = readers.get(out, [])
        shuffle = rd[0] if len(rd) == 1 and rd[0].op == "channel_shuffle" else None
        if shuffle is not None and out not in g.outputs:
            grp = shuffle.attrs["groups"]
            k = sum(chans) // grp
            if all(o // k == (o + c - 1) // k for o, c in zip(offs, chans)):
                shuffle.attrs["mode"] = "view"
                virtual.add(out)
                for i, (t, o) in enumerate(zip(list(a.inputs), offs)):
                    if not writable(t, a):
                        t = a.inputs[i] = _insert_copy(g, t, a)
                    views[t] = ViewOf(shuffle.outputs[0], int(o % k * grp + o // k), grp)
                continue
        # 3. every input written into the concat's channels
        for i, (t, o) in enumerate(zip(list(a.inputs), offs)):
            if not writable(t, a):
                t = a.inputs[i] = _insert_copy(g, t, a)
                prods = g.producers()
            views[t] = ViewOf(out, int(o))
        aliased.append(a)
    for n in g.nodes:
        if n.op == "channel_shuffle" and n.attrs.get("mode") != "view":
            n.attrs["mode"] = "copy"     # g copies of one group each (device ACT layers)
        elif n.op == "split":
            for t, o in zip(n.outputs, np.cumsum([0] + n.attrs["split"][:-1])):
                views[t] = ViewOf(n.inputs[0], int(o))
        elif n.op == "slice":
            views[n.outputs[0]] = ViewOf(n.inputs[0], n.attrs["start"])
        elif n.op in ("flatten", "reshape"):
            views[n.outputs[0]] = ViewOf(n.inputs[0], reshape=True)
    for n in list(g.nodes):             # a reshape needs its input packed: else copy it
        if n.op in ("flatten", "reshape") and n.inputs[0] not in g.inputs:
            x = n.inputs[0]
            if x in virtual or not is_packed(g, locate(g, views, x), x):
                n.inputs[0] = _insert_copy(g, x, n)
                return views, virtual, True
    return views, virtual, False


def remove_dead(g: Graph) -> None:
    """Drop nodes nothing reads (to the graph's outputs), then unused constants."""
    while True:
        read = set(g.outputs) | {t for n in g.nodes for t in n.inputs}
        dead = [n for n in g.nodes if not any(t in read for t in n.outputs)]
        if not dead:
            break
        for n in dead:
            g.nodes.remove(n)
            for t in n.outputs:
                _drop_tensor(g, t)
    read = {t for n in g.nodes for t in n.inputs + int8_tables(n)} | set(g.outputs)
    for t in [t for t in g.constants if t not in read]:
        _drop_tensor(g, t)


def optimize(g: Graph) -> tuple[dict, set]:
    """All passes in order, in place; returns make_views's (views, virtual)."""
    remove_identities(g)
    fold_constants(g)
    fold_batchnorm(g)
    batchnorm_to_scale_shift(g)
    fuse_activations(g)
    remove_dead(g)
    g.check()
    return make_views(g)
