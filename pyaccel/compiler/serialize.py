"""Graphs to and from .npz files: the structure (nodes, attributes, tensors
with their quantization) as JSON under the key ``__graphs__``, every
constant as an array (keys ``<graph>/<index>``), plus a JSON ``__meta__``.
Float and quantized graphs save alike; numpy only."""
from __future__ import annotations

import json
from typing import Any, Mapping

import numpy as np

from .. import reference as ref
from ..errors import AccelError
from .ir import Graph, Node, Quant, TensorInfo

FORMAT = 1


class SerializeError(AccelError):
    """A file that is no saved graph (or of another format version)."""


def _enc(v: Any) -> Any:
    if isinstance(v, ref.Activation):
        return {"__act__": [v.name, v.alpha, v.beta]}
    if isinstance(v, (tuple, list)):
        return [_enc(x) for x in v]
    if isinstance(v, dict):
        return {k: _enc(x) for k, x in v.items()}
    if isinstance(v, np.ndarray):
        return {"__array__": v.tolist()}
    if isinstance(v, np.generic):
        return v.item()
    return v


def _dec(v: Any) -> Any:
    if isinstance(v, dict):
        if "__act__" in v:
            return ref.Activation(*v["__act__"])
        if "__array__" in v:
            return np.asarray(v["__array__"], np.float64)
        return {k: _dec(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_dec(x) for x in v]
    return v


def _quant(q: Quant | None) -> Any:
    return None if q is None else [_enc(np.asarray(q.scale) if np.ndim(q.scale) else
                                        float(q.scale)), int(q.zero_point)]


def graph_dict(g: Graph, key: str, arrays: dict) -> dict:
    consts = {}
    for i, (t, a) in enumerate(g.constants.items()):
        arrays[f"{key}/{i}"] = a
        consts[t] = f"{key}/{i}"
    return dict(name=g.name, inputs=g.inputs, outputs=g.outputs, constants=consts,
                tensors={t: [list(i.shape), i.dtype, _quant(i.quant)] for t, i in g.tensors.items()},
                nodes=[[n.op, n.inputs, n.outputs, n.name, _enc(n.attrs)] for n in g.nodes])


def graph_from(d: Mapping, arrays: Mapping) -> Graph:
    g = Graph(d["name"])
    g.inputs, g.outputs = list(d["inputs"]), list(d["outputs"])
    for t, (shape, dtype, q) in d["tensors"].items():
        quant = None if q is None else Quant(_dec(q[0]), int(q[1]))
        g.tensors[t] = TensorInfo(t, tuple(shape), dtype, quant)
    for t, k in d["constants"].items():
        g.constants[t] = np.asarray(arrays[k])
    for op, ins, outs, name, attrs in d["nodes"]:
        g.nodes.append(Node(op, list(ins), list(outs), _dec(attrs), name))
    g.check()
    return g


def save(path, graphs: Mapping[str, Graph], meta: Mapping | None = None) -> None:
    """Write graphs ({key: Graph}) and meta (JSON-able) to an .npz file."""
    arrays: dict = {}
    doc = {k: graph_dict(g, k, arrays) for k, g in graphs.items()}
    arrays["__graphs__"] = np.array(json.dumps(dict(format=FORMAT, graphs=doc)))
    arrays["__meta__"] = np.array(json.dumps(_enc(dict(meta or {}))))
    np.savez(path, **arrays)


def load(path) -> tuple[dict, dict]:
    """({key: Graph}, meta) from a file save wrote."""
    with np.load(path, allow_pickle=False) as z:
        if "__graphs__" not in z.files:
            raise SerializeError(f"{path}: no saved graph in this .npz (keys {z.files[:5]})")
        doc = json.loads(str(z["__graphs__"]))
        if doc.get("format") != FORMAT:
            raise SerializeError(f"{path}: graph format {doc.get('format')}, this pyaccel "
                                 f"reads {FORMAT}")
        arrays = {k: z[k] for k in z.files}
        meta = _dec(json.loads(str(z["__meta__"]))) if "__meta__" in z.files else {}
    return {k: graph_from(d, arrays) for k, d in doc["graphs"].items()}, meta
