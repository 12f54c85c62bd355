"""The compiler's intermediate representation: a DAG of nodes over named tensors.

Frontends (the zoo builder, graph.Model, the ONNX importer) build a Graph;
the passes (passes.py), the memory plan (plan.py), the partitioner
(partition.py), the encoder (encode.py) and the runtime (runtime.py) read it.
Everything here needs only numpy.

Graph
-----
``Graph(name)`` holds

- ``inputs``: names of the graph's input tensors (in order);
- ``outputs``: names of its output tensors (in order);
- ``nodes``: a list of Node, in a topological order (``add_node`` checks that
  every input exists already; ``toposort()`` restores the order after edits);
- ``tensors``: name -> TensorInfo (shape, dtype, quant) of every tensor:
  inputs, constants and node outputs;
- ``constants``: name -> numpy array (initializers: weights, biases, batch-norm
  statistics, constant operands). A constant is also a tensor in ``tensors``.

Building: ``g.add_input(name, shape, dtype="f32")``,
``g.add_constant(name, array)``, ``g.add_node(op, inputs, outputs=None,
name=None, **attrs)`` (outputs: names, or None for ``<node name>:0`` ...;
infers the output shapes at once and returns the Node),
``g.mark_output(name)``. ``g.check()`` re-infers every shape and checks the DAG.

Tensors: activations are (N, C, H, W); ``flatten`` and ``fc`` outputs are
(N, F); constants have any shape. dtype is "f32", "s8" or "s32". ``quant``
(TensorInfo.quant) is an optional Quant(scale, zero_point) for int8 (scale a
float or a per-channel array), carried for the int8 flow; float32 ignores it.

Node
----
``Node(op, inputs, outputs, attrs, name)``; inputs and outputs are tensor
names. The ops, their inputs (``?`` optional) and attributes (defaults):

==================  ==========================  ==========================================
op                  inputs                      attrs
==================  ==========================  ==========================================
conv                x, weight, bias?            stride (1, 1), pads (0, 0, 0, 0) as
                                                (top, bottom, left, right) [ONNX's order
                                                is (top, left, bottom, right): convert],
                                                dilation (1, 1), groups 1; weight
                                                (C_out, C_in / groups, KH, KW)
maxpool, avgpool    x                           kernel (kh, kw), stride (default kernel),
                                                pads (t, b, l, r), count_include_pad True
                                                (avgpool; False is CPU-only when padded)
global_avgpool,     x                           -
global_maxpool
add                 a, b                        - (same shapes)
mul                 a, b                        - (b same shape or (N, C, 1, 1))
scale_shift         x, scale, shift             - (per channel: x * scale[c] + shift[c])
batchnorm           x, gamma, beta, mean, var   epsilon 1e-5
fc                  x, weight, bias?            - x (N, F) or (N, F, 1, 1), weight
                                                (C_out, F) (PyTorch's layout; ONNX Gemm
                                                with transB=0: transpose it); out (N, C_out)
act                 x                           kind: relu, relu6, leaky_relu (alpha 0.01),
                                                sigmoid, hard_sigmoid (alpha 1/6, beta 0.5),
                                                hard_swish, clip (min, max: None = open);
                                                alpha, beta, min, max
concat              x0, x1, ...                 axis 1 (channels only)
split               x                           split: channel counts (outputs one each),
                                                axis 1
slice               x                           start, end (channels), axis 1
channel_shuffle     x                           groups
flatten             x                           axis 1: (N, C, H, W) -> (N, C*H*W)
reshape             x                           shape: the target shape (constant; one -1
                                                allowed; 0 keeps that dimension)
softmax             x                           axis 1
identity, dropout   x                           - (removed by the passes)
copy                x                           - (inserted by the passes: a device copy)
quantize            x (f32)                     - -> s8 (int8 flow: attrs["int8"] below)
dequantize          x (s8)                      - -> f32
==================  ==========================  ==========================================

int8 nodes (pyaccel.quantize makes them) read and write "s8" tensors whose
``quant`` holds the per-tensor (scale, zero point); their constants are int8
weights (per-channel Quant) and int32 biases, and ``attrs["int8"]`` holds the
device descriptor's int8 fields: ``requant`` / ``lut`` (names of constants:
the (k, 2) int32 rescale records, the 256-entry int8 table, or None),
``zp_in0``, ``zp_in1``, ``zp_out``, ``act_min``, ``act_max`` and ``qscale``
(only those the op uses: a dequantize has zp_in0 and qscale), and ``act``
(the float activation it stands for, informative). ``zp_out`` is the
layer's own output: with a table that is the pre-activation tensor. Their
``attrs["activation"]`` is None (int8 layers apply the clamp and the table).

The passes add ``attrs["activation"]`` (a pyaccel.reference.Activation, or
None) to a node that fuses the activation after it. int8 nodes will carry
quantization parameters in their tensors' ``quant`` (and, where an op needs
more, in attrs): the float32 flow ignores them.

Counts: ``node_macs(g, node)`` (conv: N*C_out*H_out*W_out*C_in/groups*KH*KW;
fc: N*C_out*F; other ops 0) and ``node_params(g, node)`` (the sizes of the
node's constant inputs other than x: conv/fc weight and bias, batchnorm's
gamma and beta (the running statistics are buffers, as in PyTorch),
scale_shift's two vectors); ``g.macs`` and ``g.params`` are their sums
(``g.macs`` over the graph's batch: build with N = 1 for per-image counts).

Errors are IRError (a pyaccel.AccelError and ValueError) naming the node.
"""
from __future__ import annotations

import copy as _copy
from dataclasses import dataclass, field
from typing import Any, Iterable, Optional, Sequence

import numpy as np

from ..errors import ShapeError

DTYPES = ("f32", "s8", "s32")
NUMPY_DTYPES = {"f32": np.float32, "s8": np.int8, "s32": np.int32}

OPS = ("conv", "maxpool", "avgpool", "global_avgpool", "global_maxpool", "add", "mul",
       "scale_shift", "batchnorm", "fc", "act", "concat", "split", "slice",
       "channel_shuffle", "flatten", "reshape", "softmax", "identity", "dropout", "copy",
       "quantize", "dequantize")
ACT_KINDS = ("relu", "relu6", "leaky_relu", "sigmoid", "hard_sigmoid", "hard_swish", "clip")
VIEW_OPS = ("concat", "split", "slice", "channel_shuffle", "flatten", "reshape")


class IRError(ShapeError):
    """A graph that is not well formed: the message names the node and why."""


@dataclass(frozen=True)
class Quant:
    """int8 quantization of a tensor: real = scale * (q - zero_point)."""

    scale: Any = 1.0            # float, or per-channel numpy array (weights)
    zero_point: int = 0


@dataclass
class TensorInfo:
    """A tensor's name, shape, data type and (int8) quantization."""

    name: str
    shape: tuple
    dtype: str = "f32"
    quant: Optional[Quant] = None

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def nbytes(self) -> int:
        return self.size * np.dtype(NUMPY_DTYPES[self.dtype]).itemsize


@dataclass
class Node:
    """One operation: op (see the module docstring), tensor names, attributes."""

    op: str
    inputs: list
    outputs: list
    attrs: dict = field(default_factory=dict)
    name: str = ""

    def __repr__(self) -> str:
        return f"Node({self.name}: {self.op} {self.inputs} -> {self.outputs})"


def _pair(v: Any, what: str, node: str) -> tuple:
    t = (int(v), int(v)) if np.isscalar(v) else tuple(int(x) for x in v)
    if len(t) != 2 or min(t) < 1:
        raise IRError(f"{node}: {what} must be a positive int or pair, got {v!r}")
    return t


def _pads(v: Any, node: str) -> tuple:
    if np.isscalar(v):
        t = (int(v),) * 4
    else:
        t = tuple(int(x) for x in v)
        t = (t[0], t[0], t[1], t[1]) if len(t) == 2 else t
    if len(t) != 4 or min(t) < 0:
        raise IRError(f"{node}: pads must be (top, bottom, left, right) >= 0, got {v!r}")
    return t


def _window_out(size: int, k: int, s: int, p0: int, p1: int, d: int, node: str) -> int:
    span = d * (k - 1) + 1
    if size + p0 + p1 < span:
        raise IRError(f"{node}: a kernel spanning {span} does not fit in the padded size "
                      f"{size + p0 + p1}")
    return (size + p0 + p1 - span) // s + 1


def normalize_attrs(node: Node) -> None:
    """Fill in defaults and canonical forms (pairs, 4-tuples) of node.attrs."""
    a, n = node.attrs, node.name
    if node.op == "conv":
        a["stride"] = _pair(a.get("stride", 1), "stride", n)
        a["dilation"] = _pair(a.get("dilation", 1), "dilation", n)
        a["pads"] = _pads(a.get("pads", 0), n)
        a["groups"] = int(a.get("groups", 1))
    elif node.op in ("maxpool", "avgpool"):
        if "kernel" not in a:
            raise IRError(f"{n}: {node.op} needs a kernel")
        a["kernel"] = _pair(a["kernel"], "kernel", n)
        a["stride"] = _pair(a.get("stride") or a["kernel"], "stride", n)
        a["pads"] = _pads(a.get("pads", 0), n)
        a.setdefault("count_include_pad", True)
    elif node.op == "batchnorm":
        a.setdefault("epsilon", 1e-5)
    elif node.op == "act":
        kind = a.get("kind")
        if kind not in ACT_KINDS:
            raise IRError(f"{n}: act kind must be one of {ACT_KINDS}, got {kind!r}")
        if kind == "leaky_relu":
            a.setdefault("alpha", 0.01)
        if kind in ("hard_sigmoid", "hard_swish"):
            a.setdefault("alpha", 1 / 6)
            a.setdefault("beta", 0.5)
        if kind == "clip":
            a.setdefault("min", None)
            a.setdefault("max", None)
    elif node.op in ("concat", "split", "slice", "flatten", "softmax"):
        a.setdefault("axis", 1)
        if node.op != "softmax" and a["axis"] != 1:
            raise IRError(f"{n}: {node.op} works on axis 1 (channels) only, got {a['axis']}")


class Graph:
    """A network: inputs, outputs, nodes, tensors and constants (module docstring)."""

    def __init__(self, name: str = "graph") -> None:
        self.name = name
        self.inputs: list[str] = []
        self.outputs: list[str] = []
        self.nodes: list[Node] = []
        self.tensors: dict[str, TensorInfo] = {}
        self.constants: dict[str, np.ndarray] = {}

    # --- building ------------------------------------------------------------------

    def _new_tensor(self, name: str, shape: Sequence[int], dtype: str,
                    quant: Optional[Quant] = None) -> str:
        if name in self.tensors:
            raise IRError(f"tensor {name!r} is defined twice")
        if dtype not in DTYPES:
            raise IRError(f"tensor {name!r}: dtype must be one of {DTYPES}, got {dtype!r}")
        self.tensors[name] = TensorInfo(name, tuple(int(v) for v in shape), dtype, quant)
        return name

    def add_input(self, name: str, shape: Sequence[int], dtype: str = "f32",
                  quant: Optional[Quant] = None) -> str:
        self._new_tensor(name, shape, dtype, quant)
        self.inputs.append(name)
        return name

    def add_constant(self, name: str, array: np.ndarray, quant: Optional[Quant] = None) -> str:
        a = np.asarray(array)
        dtype = {"f": "f32", "i": "s32" if a.dtype.itemsize > 1 else "s8",
                 "u": "s32", "b": "s32"}[a.dtype.kind]
        a = np.ascontiguousarray(a, NUMPY_DTYPES[dtype])
        self._new_tensor(name, a.shape, dtype, quant)
        self.constants[name] = a
        return name

    def mark_output(self, name: str) -> None:
        if name not in self.tensors:
            raise IRError(f"output {name!r} is no tensor of the graph")
        self.outputs.append(name)

    def unique_name(self, base: str) -> str:
        if base not in self.tensors and all(n.name != base for n in self.nodes):
            return base
        i = 1
        while f"{base}_{i}" in self.tensors or any(n.name == f"{base}_{i}" for n in self.nodes):
            i += 1
        return f"{base}_{i}"

    def add_node(self, op: str, inputs: Sequence[str], outputs: Optional[Sequence[str]] = None,
                 name: Optional[str] = None, **attrs: Any) -> Node:
        """Append a node (its inputs must exist); infer its outputs' shapes."""
        if op not in OPS:
            raise IRError(f"{name or op}: unknown op {op!r} (one of {', '.join(OPS)})")
        name = name or self.unique_name(f"{op}{len(self.nodes)}")
        for t in inputs:
            if t not in self.tensors:
                raise IRError(f"{name}: input {t!r} is no tensor of the graph (yet)")
        node = Node(op, list(inputs), [], dict(attrs), name)
        normalize_attrs(node)
        shapes = infer(self, node)
        if outputs is None:
            outputs = [name if len(shapes) == 1 else f"{name}:{i}" for i in range(len(shapes))]
        if len(outputs) != len(shapes):
            raise IRError(f"{name}: {op} makes {len(shapes)} outputs, {len(outputs)} named")
        dtype = ({"quantize": "s8", "dequantize": "f32"}.get(op)
                 or (self.tensors[inputs[0]].dtype if inputs else "f32"))
        for t, s in zip(outputs, shapes):
            self._new_tensor(t, s, dtype)
        node.outputs = list(outputs)
        self.nodes.append(node)
        return node

    # --- queries ---------------------------------------------------------------------

    def shape(self, t: str) -> tuple:
        return self.tensors[t].shape

    def producer(self, t: str) -> Optional[Node]:
        for n in self.nodes:
            if t in n.outputs:
                return n
        return None

    def producers(self) -> dict[str, Node]:
        return {t: n for n in self.nodes for t in n.outputs}

    def consumers(self) -> dict[str, list]:
        out: dict[str, list] = {t: [] for t in self.tensors}
        for n in self.nodes:
            for t in n.inputs:
                if n not in out[t]:
                    out[t].append(n)
        return out

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(f"no node named {name!r}")

    def is_constant(self, t: str) -> bool:
        return t in self.constants

    def activations(self) -> list[str]:
        """Every tensor that is not a constant: inputs and node outputs."""
        return [t for t in self.tensors if t not in self.constants]

    @property
    def macs(self) -> int:
        return sum(node_macs(self, n) for n in self.nodes)

    @property
    def params(self) -> int:
        return sum(node_params(self, n) for n in self.nodes)

    # --- maintenance -------------------------------------------------------------------

    def toposort(self) -> None:
        """Order the nodes so that every tensor is made before it is read."""
        ready = set(self.inputs) | set(self.constants)
        todo, order = list(self.nodes), []
        while todo:
            for i, n in enumerate(todo):
                if all(t in ready for t in n.inputs):
                    order.append(todo.pop(i))
                    ready.update(n.outputs)
                    break
            else:
                raise IRError(f"the graph has a cycle or an undefined input at "
                              f"{', '.join(n.name for n in todo[:3])}")
        self.nodes = order

    def check(self) -> None:
        """Every tensor made once before it is read, shapes consistent, outputs exist."""
        made = set(self.inputs) | set(self.constants)
        for n in self.nodes:
            for t in n.inputs:
                if t not in made:
                    raise IRError(f"{n.name}: reads {t!r} before it is made")
            normalize_attrs(n)
            shapes = infer(self, n)
            for t, s in zip(n.outputs, shapes):
                if t in made:
                    raise IRError(f"{n.name}: {t!r} is made twice")
                if tuple(self.tensors[t].shape) != tuple(s):
                    raise IRError(f"{n.name}: {t!r} has shape {self.tensors[t].shape}, "
                                  f"the op makes {s}")
                made.add(t)
        for t in self.outputs:
            if t not in made:
                raise IRError(f"graph output {t!r} is never made")

    def copy(self) -> "Graph":
        """A deep copy of the structure; constant arrays are shared (never mutated)."""
        g = Graph(self.name)
        g.inputs, g.outputs = list(self.inputs), list(self.outputs)
        g.nodes = [Node(n.op, list(n.inputs), list(n.outputs), _copy.copy(n.attrs), n.name)
                   for n in self.nodes]
        g.tensors = {k: _copy.copy(v) for k, v in self.tensors.items()}
        g.constants = dict(self.constants)
        return g

    def summary(self) -> str:
        rows = [f"{self.name}: inputs {[self.shape(t) for t in self.inputs]}, "
                f"{self.params:,} params, {self.macs:,} MACs, {len(self.nodes)} nodes"]
        for n in self.nodes:
            outs = ", ".join(str(self.shape(t)) for t in n.outputs)
            rows.append(f"  {n.name:<28} {n.op:<15} -> {outs:<22} {node_macs(self, n):>14,}")
        return "\n".join(rows)


# --- shape inference -------------------------------------------------------------------

def _need(cond: bool, node: Node, message: str) -> None:
    if not cond:
        raise IRError(f"{node.name} ({node.op}): {message}")


def _arity(node: Node, lo: int, hi: int) -> None:
    _need(lo <= len(node.inputs) <= hi, node,
          f"takes {lo}{'' if lo == hi else f'..{hi}'} inputs, got {len(node.inputs)}")


def _nchw(g: Graph, node: Node, t: str) -> tuple:
    s = g.shape(t)
    _need(len(s) == 4, node, f"{t!r} must be (N, C, H, W), got {s}")
    return s


def infer(g: Graph, node: Node) -> list[tuple]:
    """The output shapes of node over the graph's tensors (checked)."""
    op, a = node.op, node.attrs
    ins = node.inputs
    if op == "conv":
        _arity(node, 2, 3)
        n, c, h, w = _nchw(g, node, ins[0])
        ws = g.shape(ins[1])
        _need(len(ws) == 4, node, f"weight must be (C_out, C_in/groups, KH, KW), got {ws}")
        groups = a["groups"]
        _need(groups >= 1 and c % groups == 0 and ws[0] % groups == 0, node,
              f"groups={groups} must divide C_in={c} and C_out={ws[0]}")
        _need(ws[1] * groups == c, node,
              f"weight {ws} expects {ws[1] * groups} input channels, the input has {c}")
        if len(ins) == 3:
            _need(g.shape(ins[2]) == (ws[0],), node, f"bias must be ({ws[0]},)")
        (sh, sw), (dh, dw), (pt, pb, pl, pr) = a["stride"], a["dilation"], a["pads"]
        return [(n, ws[0], _window_out(h, ws[2], sh, pt, pb, dh, node.name),
                 _window_out(w, ws[3], sw, pl, pr, dw, node.name))]
    if op in ("maxpool", "avgpool"):
        _arity(node, 1, 1)
        n, c, h, w = _nchw(g, node, ins[0])
        (kh, kw), (sh, sw), (pt, pb, pl, pr) = a["kernel"], a["stride"], a["pads"]
        return [(n, c, _window_out(h, kh, sh, pt, pb, 1, node.name),
                 _window_out(w, kw, sw, pl, pr, 1, node.name))]
    if op in ("global_avgpool", "global_maxpool"):
        _arity(node, 1, 1)
        n, c, _, _ = _nchw(g, node, ins[0])
        return [(n, c, 1, 1)]
    if op in ("add", "mul"):
        _arity(node, 2, 2)
        s0, s1 = g.shape(ins[0]), g.shape(ins[1])
        ok = s0 == s1 or (op == "mul" and len(s0) == 4 and s1 == s0[:2] + (1, 1))
        _need(ok, node, f"shapes {s0} and {s1} differ"
              + (" (mul broadcasts only an (N, C, 1, 1) operand)" if op == "mul" else ""))
        return [s0]
    if op in ("scale_shift", "batchnorm"):
        _arity(node, 3 if op == "scale_shift" else 5, 3 if op == "scale_shift" else 5)
        s = _nchw(g, node, ins[0])
        for t in ins[1:]:
            _need(g.shape(t) == (s[1],), node, f"{t!r} must be ({s[1]},), got {g.shape(t)}")
        return [s]
    if op == "fc":
        _arity(node, 2, 3)
        s = g.shape(ins[0])
        _need(len(s) == 2 or (len(s) == 4 and s[2:] == (1, 1)), node,
              f"input must be (N, F) or (N, F, 1, 1), got {s} (flatten it first)")
        ws = g.shape(ins[1])
        _need(len(ws) == 2 and ws[1] == s[1], node,
              f"weight must be (C_out, {s[1]}), got {ws}")
        if len(ins) == 3:
            _need(g.shape(ins[2]) == (ws[0],), node, f"bias must be ({ws[0]},)")
        return [(s[0], ws[0])]
    if op in ("act", "identity", "dropout", "copy", "softmax", "quantize", "dequantize"):
        _arity(node, 1, 1)
        return [g.shape(ins[0])]
    if op == "concat":
        _need(len(ins) >= 1, node, "needs at least one input")
        shapes = [g.shape(t) for t in ins]
        s0 = shapes[0]
        _need(all(len(s) == 4 and (s[0],) + s[2:] == (s0[0],) + s0[2:] for s in shapes), node,
              f"inputs must agree but in channels: {shapes}")
        return [(s0[0], sum(s[1] for s in shapes)) + s0[2:]]
    if op == "split":
        _arity(node, 1, 1)
        s = _nchw(g, node, ins[0])
        parts = [int(v) for v in a.get("split", ())]
        _need(parts and all(p > 0 for p in parts) and sum(parts) == s[1], node,
              f"split {parts} must be positive channel counts adding up to {s[1]}")
        return [(s[0], p) + s[2:] for p in parts]
    if op == "slice":
        _arity(node, 1, 1)
        s = _nchw(g, node, ins[0])
        start, end = int(a.get("start", 0)), int(a.get("end", s[1]))
        end = min(end, s[1])
        a["start"], a["end"] = start, end
        _need(0 <= start < end, node, f"channels {start}:{end} of {s[1]} are empty")
        return [(s[0], end - start) + s[2:]]
    if op == "channel_shuffle":
        _arity(node, 1, 1)
        s = _nchw(g, node, ins[0])
        grp = int(a.get("groups", 0))
        _need(grp >= 1 and s[1] % grp == 0, node, f"groups={grp} must divide {s[1]} channels")
        return [s]
    if op == "flatten":
        _arity(node, 1, 1)
        s = g.shape(ins[0])
        return [(s[0], int(np.prod(s[1:], dtype=np.int64)))]
    if op == "reshape":
        _arity(node, 1, 1)
        s = g.shape(ins[0])
        target = [s[i] if v == 0 else int(v) for i, v in enumerate(a.get("shape", ()))]
        size = int(np.prod(s, dtype=np.int64))
        if target.count(-1) == 1:
            known = int(np.prod([v for v in target if v != -1], dtype=np.int64))
            _need(known > 0 and size % known == 0, node, f"cannot reshape {s} to {target}")
            target[target.index(-1)] = size // known
        _need(bool(target) and int(np.prod(target, dtype=np.int64)) == size, node,
              f"cannot reshape {s} to {a.get('shape')}")
        return [tuple(target)]
    raise IRError(f"{node.name}: no shape inference for op {op!r}")


# --- counts ----------------------------------------------------------------------------

def node_macs(g: Graph, node: Node) -> int:
    """Multiply-accumulates of a conv or fc node (0 for other ops)."""
    if node.op == "conv":
        ws = g.shape(node.inputs[1])
        n, c, h, w = g.shape(node.outputs[0])
        return n * c * h * w * ws[1] * ws[2] * ws[3]
    if node.op == "fc":
        n, f = g.shape(node.inputs[0])[:2]
        return n * f * g.shape(node.inputs[1])[0]
    return 0


_PARAM_INPUTS = {"conv": slice(1, 3), "fc": slice(1, 3), "scale_shift": slice(1, 3),
                 "batchnorm": slice(1, 3)}


def node_params(g: Graph, node: Node) -> int:
    """Learned parameters of a node (PyTorch's count; batch-norm statistics excluded)."""
    sl = _PARAM_INPUTS.get(node.op)
    if sl is None:
        return 0
    return sum(g.tensors[t].size for t in node.inputs[sl] if t in g.constants)


def packed_strides(shape: Sequence[int]) -> tuple:
    """Element strides of a packed tensor of shape, as four (n, c, h, w) strides
    (a 2-D (N, F) tensor is (N, F, 1, 1))."""
    s = tuple(shape) + (1,) * (4 - len(shape))
    n, c, h, w = s[:4]
    return (c * h * w, h * w, w, 1)


def as4(shape: Sequence[int]) -> tuple:
    """A tensor shape as (N, C, H, W): (N, F) is (N, F, 1, 1)."""
    s = tuple(shape)
    return s + (1,) * (4 - len(s)) if len(s) <= 4 else s


def int8_tables(node: Node) -> list:
    """The constants an int8 node reads besides its inputs (rescale records, table)."""
    q = node.attrs.get("int8") or {}
    return [q[k] for k in ("requant", "lut") if q.get(k)]


def node_constants(g: Graph, node: Node) -> list:
    """Every constant the node reads: its constant inputs and its int8 tables."""
    return [t for t in node.inputs if t in g.constants] + int8_tables(node)


def iter_consumers(g: Graph, t: str) -> Iterable[Node]:
    return (n for n in g.nodes if t in n.inputs)
