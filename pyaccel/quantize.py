"""Post-training quantization of compiler graphs (numpy only): a float
GraphModel in, an int8 QuantizedModel out, whose graph the compiler lowers
to int8 Layer2 layers and pyaccel.compiler.golden runs bit for bit.

    qm = model.quantize(images)                     # = quantize(model, images)
    qm = model.quantize(images, method="percentile", percentile=99.99,
                        keep_float=("conv1",))
    qm.save("net-int8.npz"); qm = QuantizedModel.load("net-int8.npz")

What it does:

1. The float passes (identities out, constant folding, batch norms folded
   into their convs, activations fused): the graph the device would run.
2. Calibration: that graph runs in numpy (pyaccel.compiler.execute) on the
   calibration images, in chunks; for every tensor it records the range,
   and for every node with a fused activation also the pre-activation
   range. ``method="minmax"``: the observed min and max. ``"percentile"``:
   the ``100 - p`` and ``p`` percentiles of the values (p = ``percentile``,
   99.99 by default; from up to 2^18 values sampled per tensor and chunk):
   robust to the rare outliers that would stretch a min/max scale.
3. Structure: every node becomes int8 unless kept in float32 (``keep_float``
   names nodes; softmax, and ops without an int8 form, stay float on their
   own); QUANTIZE goes where a float tensor feeds an int8 node (the graph's
   input), DEQUANTIZE where an int8 tensor feeds a float node or a graph
   output. A concat input whose producer cannot write at the concat's scale
   (a view, a max pool, a tensor in two concats) gets an int8 copy (an ACT
   requantizing copy).
4. Scales: per tensor, asymmetric (``quant.qparams`` of the range). Tensors
   that share storage share one (scale, zero point): a concat's output and
   its inputs, views (split, slice, channel shuffle, flatten, reshape) and
   their source, a max pool's output and input; the group's range is the
   union of its members'. ADD and MUL get their own output scale (the spec
   rescales both inputs). Weights: symmetric int8 per output channel
   (``quant.quantize_weights``), biases int32 at ``s_in * s_w[c]``.
5. Activations: ReLU, ReLU6 (and clip) are the output clamp; LeakyReLU,
   sigmoid, hard-sigmoid and hard-swish a 256-entry table
   (``quant.activation_lut``) from the pre-activation scale to the output's.

Errors are QuantizeError (a pyaccel.AccelError and ValueError) naming what
was wrong.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping, Optional, Sequence

import numpy as np

from . import quant
from . import reference as ref
from . import reference_int8 as ri8
from .compiler import execute, passes
from .compiler.builder import GraphModel, rebatch
from .compiler.ir import Graph, Node, Quant
from .errors import ShapeError

METHODS = ("minmax", "percentile")
# int8 producers that rescale: they can write their output at any scale
FREE_PRODUCERS = ("conv", "fc", "add", "mul", "avgpool", "global_avgpool", "scale_shift", "act",
                  "copy", "quantize")
SHARED_VIEWS = ("concat", "split", "slice", "channel_shuffle", "flatten", "reshape")
INT8_OPS = ("conv", "fc", "add", "mul", "avgpool", "global_avgpool", "maxpool",
            "global_maxpool", "scale_shift", "act", "copy", "channel_shuffle", "concat",
            "split", "slice", "flatten", "reshape")
SAMPLES = 1 << 18


class QuantizeError(ShapeError):
    """Quantization cannot proceed: the message names the node or argument."""


# --- calibration -----------------------------------------------------------------------

def float_passes(graph: Graph) -> Graph:
    """A copy of graph after the compiler's float passes (all but the views)."""
    g = graph.copy()
    passes.remove_identities(g)
    passes.fold_constants(g)
    passes.fold_batchnorm(g)
    passes.batchnorm_to_scale_shift(g)
    passes.fuse_activations(g)
    passes.remove_dead(g)
    g.check()
    return g


class _Range:
    def __init__(self, method: str, p: float, rng: np.random.Generator) -> None:
        self.method, self.p, self.rng = method, p, rng
        self.lo, self.hi = np.inf, -np.inf
        self.samples: list = []

    def add(self, v: np.ndarray) -> None:
        v = np.asarray(v, np.float32).ravel()
        v = v[np.isfinite(v)]
        if not v.size:
            return
        self.lo, self.hi = min(self.lo, float(v.min())), max(self.hi, float(v.max()))
        if self.method == "percentile":
            self.samples.append(v if v.size <= SAMPLES else self.rng.choice(v, SAMPLES, False))

    def range(self) -> tuple:
        if self.lo > self.hi:
            return 0.0, 0.0
        if self.method == "minmax":
            return self.lo, self.hi
        s = np.concatenate(self.samples)
        return (float(np.percentile(s, 100 - self.p)), float(np.percentile(s, self.p)))


@dataclass
class Calibration:
    """Ranges of a float graph's tensors on calibration data: ``ranges[t]`` =
    (lo, hi) of every activation tensor, ``pre[t]`` the pre-activation range
    of a node output with a fused activation."""

    ranges: dict
    pre: dict
    method: str
    percentile: float
    images: int
    fixed: dict = field(default_factory=dict)       # tensor -> Quant (a QDQ model's)
    fixed_pre: dict = field(default_factory=dict)   # node output -> its pre-activation Quant


def _chunks(data: np.ndarray, size: int) -> Iterable[np.ndarray]:
    for i in range(0, len(data), size):
        yield data[i:i + size]


def calibration_array(data, input_shape: Sequence[int]) -> np.ndarray:
    """Calibration images as an (N, C, H, W) float32 array (an array, a list of
    images, or an .npz path/mapping: its first array or its "x"/"images")."""
    if isinstance(data, (str, bytes)) or hasattr(data, "__fspath__"):
        with np.load(data) as z:
            key = next((k for k in ("x", "images", "data") if k in z.files), z.files[0])
            data = z[key]
    elif isinstance(data, Mapping):
        data = next(iter(data.values()))
    x = np.asarray(data, np.float32)
    if x.ndim == len(input_shape):
        x = x[None]
    if x.ndim != len(input_shape) + 1 or tuple(x.shape[1:]) != tuple(input_shape):
        raise QuantizeError(f"calibration data must be (N, {', '.join(map(str, input_shape))}), "
                            f"got shape {x.shape}")
    if not len(x):
        raise QuantizeError("calibration data holds no images")
    return x


def calibrate(g: Graph, data: np.ndarray, method: str = "minmax", percentile: float = 99.99,
              chunk: int = 8, seed: int = 0) -> Calibration:
    """Run float graph g (after float_passes) on data, recording ranges."""
    if method not in METHODS:
        raise QuantizeError(f"method must be one of {METHODS}, got {method!r}")
    if not 50 < percentile <= 100:
        raise QuantizeError(f"percentile must be in (50, 100], got {percentile!r}")
    rng = np.random.default_rng(seed)
    post: dict = {}
    pre: dict = {}
    new = lambda: _Range(method, percentile, rng)  # noqa: E731
    graphs: dict = {}
    for x in _chunks(data, chunk):
        h = graphs.get(len(x)) or graphs.setdefault(len(x), rebatch(g, len(x)))
        values = {h.inputs[0]: x, **h.constants}
        post.setdefault(h.inputs[0], new()).add(x)
        last = {t: i for i, n in enumerate(h.nodes) for t in n.inputs}
        for i, n in enumerate(h.nodes):
            args = [values[t] for t in n.inputs]
            act = n.attrs.get("activation")
            if act is not None and act.name is not None:
                bare = Node(n.op, n.inputs, n.outputs, {**n.attrs, "activation": None}, n.name)
                mid = execute.evaluate(h, bare, args)
                pre.setdefault(n.outputs[0], new()).add(mid[0])
                outs = [ref.act(mid[0], act)]
            else:
                outs = execute.evaluate(h, n, args)
            for t, v in zip(n.outputs, outs):
                values[t] = v
                post.setdefault(t, new()).add(v)
            for t in n.inputs:          # free what no later node reads
                if last.get(t) == i and t not in h.constants:
                    values.pop(t, None)
    return Calibration({t: r.range() for t, r in post.items()},
                       {t: r.range() for t, r in pre.items()}, method, percentile, len(data))


# --- structure: which nodes are int8, where the conversions go -------------------------

def int8_capable(g: Graph, n: Node) -> Optional[str]:
    """None if node n has an int8 form, else why not."""
    if n.op not in INT8_OPS:
        return f"{n.op} has no int8 form"
    if n.op in ("conv", "fc", "scale_shift") and not all(t in g.constants for t in n.inputs[1:]):
        return "its weights are computed at run time"
    if n.op in ("add", "mul") and any(t in g.constants for t in n.inputs):
        return "a constant operand"
    if n.op == "avgpool" and not n.attrs.get("count_include_pad", True) and any(n.attrs["pads"]):
        return "average pooling with count_include_pad=False over padding"
    if n.op == "act" and n.attrs["kind"] not in ("relu", "relu6", "clip") \
            and execute.act_spec(n.attrs) is None:
        return f"activation {n.attrs['kind']} has no int8 form"
    return None


class _Builder:
    """The quantized graph's structure, node by node, with lazy conversions."""

    def __init__(self, fg: Graph, fixed: Optional[Mapping] = None) -> None:
        self.fg = fg
        self.fixed = fixed or {}    # a QDQ model's scales: a concat input at another one
                                    # is rounded to it first, then copied at the concat's
        self.g = Graph(fg.name + "-int8")
        self.q: dict = {}           # float tensor -> its s8 tensor
        self.f: dict = {}           # float tensor -> its f32 tensor
        self.source: dict = {}      # s8 tensor -> the float tensor whose range it has
        self.requant: set = set()   # requantizing copies: their group's scale, not the source's
        self.rounded: dict = {}     # float tensor -> its QDQ-rounded float32 (read_f)
        self.in_concat: set = set()

    def const(self, t: str) -> str:
        if t not in self.g.tensors:
            self.g.add_constant(t, self.fg.constants[t], self.fg.tensors[t].quant)
        return t

    def as_q(self, t: str) -> str:
        if t in self.fg.constants:
            return self.const(t)
        if t not in self.q:
            node = self.g.add_node("quantize", [self.f[t]], [self.g.unique_name(f"{t}:q")],
                                   name=self.g.unique_name(f"{t}.quantize"))
            self.q[t] = node.outputs[0]
            self.source[node.outputs[0]] = t
        return self.q[t]

    def as_f(self, t: str) -> str:
        if t in self.fg.constants:
            return self.const(t)
        if t not in self.f:
            node = self.g.add_node("dequantize", [self.q[t]], [self.g.unique_name(f"{t}:f32")],
                                   name=self.g.unique_name(f"{t}.dequantize"))
            self.f[t] = node.outputs[0]
        return self.f[t]

    def read_f(self, t: str) -> str:
        """t as a float32 node (or a graph output) reads it: in a QDQ model a
        float tensor the file quantizes is rounded first (QUANTIZE, DEQUANTIZE:
        the file's Q/DQ pair), as its readers see it there."""
        if self.fixed.get(t) is None or self.f.get(t) != t:
            return self.as_f(t)
        if t not in self.rounded:
            node = self.g.add_node("dequantize", [self.as_q(t)], [self.g.unique_name(f"{t}:qdq")],
                                   name=self.g.unique_name(f"{t}.dequantize"))
            self.rounded[t] = node.outputs[0]
        return self.rounded[t]

    def concat_input(self, t: str, concat: Node) -> str:
        qt = self.as_q(t)
        p = self.g.producer(qt)
        if (p is None or p.op not in FREE_PRODUCERS or qt in self.in_concat
                or concat.inputs.count(t) > 1 or qt in self.g.inputs
                or self.fixed.get(t) != self.fixed.get(concat.outputs[0])):
            node = self.g.add_node("copy", [qt], [self.g.unique_name(f"{t}.requant")],
                                   name=self.g.unique_name(f"{t}.requant"))
            qt = node.outputs[0]
            self.source[qt] = t
            self.requant.add(qt)
        self.in_concat.add(qt)
        return qt

    def node(self, n: Node, int8: bool) -> None:
        g = self.g
        if int8:
            if n.op == "concat":
                ins = [self.concat_input(t, n) for t in n.inputs]
            else:
                ins = [self.as_q(t) for t in n.inputs]
        else:
            ins = [self.read_f(t) for t in n.inputs]
        attrs = {k: v for k, v in n.attrs.items()}
        new = g.add_node(n.op, ins, list(n.outputs), name=n.name, **attrs)
        for t in new.outputs:
            (self.q if int8 else self.f)[t] = t
            if int8:
                self.source[t] = t


def _union_groups(g: Graph, luts: set) -> dict:
    """s8 tensor -> its group's representative: tensors that share storage
    (views, concats) or must share a scale (max pools) share a group."""
    parent: dict = {t: t for t, i in g.tensors.items() if i.dtype == "s8"
                    and t not in g.constants}

    def find(t: str) -> str:
        while parent[t] != t:
            parent[t] = parent[parent[t]]
            t = parent[t]
        return t

    def union(a: str, b: str) -> None:
        parent[find(a)] = find(b)

    for n in g.nodes:
        x = n.inputs[0] if n.inputs else None
        if x not in parent:
            continue
        if n.op in SHARED_VIEWS:
            for t in n.inputs[1:] + n.outputs:
                union(x, t)
        elif n.op in ("maxpool", "global_maxpool") and n.name not in luts:
            union(x, n.outputs[0])
    return {t: find(t) for t in parent}


# --- parameters ----------------------------------------------------------------------

def _lut_act(g: Graph, n: Node) -> Optional[ref.Activation]:
    act = (execute.act_spec(n.attrs) if n.op == "act" else n.attrs.get("activation"))
    return act if act is not None and quant.lut_activation(act) else None


def _fill(g: Graph, n: Node, calib: Calibration) -> None:
    """Weights, bias, rescale records, clamp and table of int8 node n."""
    x, y = n.inputs[0], n.outputs[0]
    qx, qy = g.tensors[x].quant, g.tensors[y].quant
    s_in, zp_in, s_out, zp_out = qx.scale, qx.zero_point, qy.scale, qy.zero_point
    op, a = n.op, n.attrs
    if op in ("concat", "split", "slice", "flatten", "reshape"):
        return
    act = execute.act_spec(a) if op == "act" else a.get("activation")
    lut_act = _lut_act(g, n)
    s_mid, zp_mid = s_out, zp_out
    if lut_act is not None:
        if op in ("act", "maxpool", "global_maxpool"):
            s_mid, zp_mid = s_in, zp_in
        elif y in calib.fixed_pre:
            s_mid, zp_mid = calib.fixed_pre[y].scale, calib.fixed_pre[y].zero_point
        else:
            s_mid, zp_mid = quant.qparams(*calib.pre.get(y, calib.ranges.get(y, (0.0, 0.0))))
    q: dict = dict(zp_in0=zp_in, zp_out=zp_mid, act_min=-128, act_max=127,
                   act=None if act is None else act.name)
    if lut_act is not None:
        q["lut"] = g.add_constant(g.unique_name(f"{n.name}.lut"),
                                  quant.activation_lut(lut_act, s_mid, zp_mid, s_out, zp_out))
    elif op == "act" and a["kind"] == "clip":
        lo, hi = a.get("min"), a.get("max")
        q["act_min"] = -128 if lo is None else int(ri8.quantize(np.float32(lo), s_out, zp_out))
        q["act_max"] = 127 if hi is None else int(ri8.quantize(np.float32(hi), s_out, zp_out))
    else:
        q["act_min"], q["act_max"] = quant.activation_clamp(act, s_out, zp_out)
    rq = None
    if op in ("conv", "fc", "scale_shift"):
        w = g.constants[n.inputs[1]]
        wq, s_w = _weights(w, g.tensors[n.inputs[1]].quant)
        wt = g.add_constant(g.unique_name(f"{n.inputs[1]}.q"), wq, Quant(s_w, 0))
        ins = [x, wt]
        if len(n.inputs) > 2 or op == "scale_shift":
            b = g.constants[n.inputs[2]] if len(n.inputs) > 2 else np.zeros(len(s_w))
            ins.append(g.add_constant(g.unique_name(f"{n.name}.bias.q"),
                                      quant.quantize_bias(b, s_in, s_w)))
        n.inputs = ins
        rq = quant.conv_requant(s_in, s_w, s_mid)
    elif op in ("add", "mul"):
        q1 = g.tensors[n.inputs[1]].quant
        q["zp_in1"] = q1.zero_point
        rq = (quant.add_requant if op == "add" else quant.mul_requant)(s_in, q1.scale, s_mid)
    elif op == "avgpool":
        rq = quant.avgpool_requant(s_in, s_mid, *a["kernel"])
    elif op == "global_avgpool":
        rq = quant.avgpool_requant(s_in, s_mid, *g.shape(x)[2:])
    elif op in ("act", "copy", "channel_shuffle"):
        rq = quant.act_requant(s_in, s_mid)
    if rq is not None:
        q["requant"] = g.add_constant(g.unique_name(f"{n.name}.requant"), rq)
    a["int8"] = q
    a["activation"] = None


def _weights(w: np.ndarray, fixed: Optional[Quant]) -> tuple:
    """int8 weights and per-output-channel scales: a QDQ model's own (the
    dequantized weight divided back by its scales: exact), else symmetric
    max/127 per channel (quant.quantize_weights)."""
    if fixed is None:
        return quant.quantize_weights(w)
    s = np.broadcast_to(np.asarray(fixed.scale, np.float64).ravel(), (w.shape[0],)) \
        if np.size(fixed.scale) in (1, w.shape[0]) else None
    if s is None or fixed.zero_point != 0:
        raise ValueError(f"weights of shape {w.shape} with {np.size(fixed.scale)} scales and "
                         f"zero point {fixed.zero_point}: the device takes symmetric weights "
                         "with one scale per output channel or per tensor")
    per_c = (slice(None),) + (None,) * (w.ndim - 1)
    q = np.rint(np.asarray(w, np.float64) / s[per_c])
    return np.clip(q, -128, 127).astype(np.int8), s.copy()


def quantize_graph(graph: Graph, calib: Calibration, keep_float: Iterable[str] = ()) -> Graph:
    """The int8 graph of float graph `graph` (after float_passes) with the
    ranges of `calib`; nodes named in keep_float stay float32."""
    keep = set(keep_float)
    names = {n.name for n in graph.nodes}
    unknown = sorted(keep - names)
    if unknown:
        raise QuantizeError(f"keep_float names no node of {graph.name}: {unknown} "
                            f"(nodes: {', '.join(sorted(names)[:12])} ...)")
    b = _Builder(graph, calib.fixed)
    for t in graph.inputs:
        b.g.add_input(t, graph.shape(t))
        b.f[t] = t
    for n in graph.nodes:
        b.node(n, n.name not in keep and int8_capable(graph, n) is None)
    for t in graph.outputs:
        b.g.mark_output(b.read_f(t))
    g = b.g
    luts = {n.name for n in g.nodes if n.op in ("maxpool", "global_maxpool") and _lut_act(g, n)}
    groups = _union_groups(g, luts)
    members: dict = {}
    for t, r in groups.items():
        members.setdefault(r, []).append(t)
    for r, ts in members.items():
        if calib.fixed:
            scale, zp = _fixed_group(ts, b, calib)
        else:
            spans = [calib.ranges.get(b.source.get(t, t)) for t in ts]
            spans = [s for s in spans if s is not None]
            lo = min((s[0] for s in spans), default=0.0)
            hi = max((s[1] for s in spans), default=0.0)
            scale, zp = quant.qparams(lo, hi)
        for t in ts:
            g.tensors[t].quant = Quant(scale, zp)
    for n in list(g.nodes):
        try:
            if n.op == "quantize":
                qy = g.tensors[n.outputs[0]].quant
                n.attrs["int8"] = dict(zp_out=qy.zero_point, act_min=-128, act_max=127,
                                       qscale=float(np.float32(qy.scale)))
            elif n.op == "dequantize":
                qx = g.tensors[n.inputs[0]].quant
                n.attrs["int8"] = dict(zp_in0=qx.zero_point, qscale=float(np.float32(qx.scale)))
            elif g.tensors[n.outputs[0]].dtype == "s8":
                _fill(g, n, calib)
        except ValueError as e:
            raise QuantizeError(f"{n.name} ({n.op}): {e}") from None
    passes.remove_dead(g)
    g.check()
    return g


def _fixed_group(ts: list, b: "_Builder", calib: Calibration) -> tuple:
    """The one (scale, zero point) a QDQ model gives a group of tensors that
    share storage (a requantizing copy takes its group's, not its source's)."""
    found = {}
    for t in ts:
        src = None if t in b.requant else b.source.get(t, t)
        q = calib.fixed.get(src)
        if q is not None:
            found.setdefault((float(q.scale), int(q.zero_point)), []).append(src)
    if len(found) == 1:
        return next(iter(found))
    if not found:
        raise QuantizeError(f"the QDQ model gives no scale to {', '.join(sorted(ts)[:4])}")
    raise QuantizeError("tensors that share storage on the device (views, a concat and its "
                        "inputs, a max pool) have different scales in the QDQ model: " +
                        "; ".join(f"{', '.join(v[:3])}: scale {k[0]:g} zero point {k[1]}"
                                  for k, v in found.items()))


def qdq_precision(fg: Graph) -> dict:
    """Each node of float graph fg (after float_passes) of a QDQ model: None
    if it becomes an int8 layer, else why it stays float32."""
    out = {}
    for n in fg.nodes:
        why = int8_capable(fg, n)
        if why is None:
            ts = [t for t in n.inputs if t not in fg.constants] + list(n.outputs)
            bare = [t for t in ts if fg.tensors[t].quant is None]
            if bare:
                why = f"the QDQ model leaves {bare[0]} float (no QuantizeLinear)"
            elif n.op in ("conv", "fc", "scale_shift") and fg.tensors[n.inputs[1]].quant is None:
                why = "its weights are float in the QDQ model (no DequantizeLinear)"
            elif n.op == "avgpool":
                why = ("a QDQ average pool is a float mean, then QuantizeLinear: its ties "
                       "fall by float rounding, which the device's float pool follows "
                       "(int8 pooling differs by 1 on ~12% of 2x2 means, float on ~3%)")
        out[n.name] = why
    return out


def from_qdq(graph: Graph) -> "QuantizedModel":
    """The int8 model of a loaded QDQ graph (pyaccel.onnx.load of a model that
    onnxruntime.quantization.quantize_static wrote in QDQ format): every node
    whose inputs, outputs (and weights) the file quantizes becomes an int8
    layer with the file's activation scales and zero points; the others stay
    float32, with DEQUANTIZE/QUANTIZE at their edges (``float_reasons``).
    Weights are re-quantized symmetric per output channel from their
    dequantized values, which gives back the file's int8 weights and scales
    (the same max/127 rule); biases int32 at s_in * s_w."""
    pre = {a.outputs[0]: graph.tensors[a.inputs[0]].quant for a in graph.nodes
           if a.op == "act" and graph.tensors[a.inputs[0]].quant is not None}
    fg = float_passes(graph)
    fixed = {t: i.quant for t, i in fg.tensors.items()
             if i.quant is not None and t not in fg.constants}
    reasons = qdq_precision(fg)
    keep = tuple(n for n, why in reasons.items() if why is not None)
    calib = Calibration({}, {}, "qdq", 0.0, 0, fixed, pre)
    qg = quantize_graph(fg, calib, keep)
    for t, i in fg.tensors.items():                   # the float graph: no stray scales
        if t not in fg.constants:
            i.quant = None
    info = dict(method="qdq", float_reasons={n: w for n, w in reasons.items() if w})
    return QuantizedModel(qg, {}, fg, keep, info)


def precision_report(qm: "QuantizedModel") -> str:
    """Which nodes became int8 layers and which stay float32, and why."""
    prec = qm.precision
    why = dict(qm.calibration.get("float_reasons", {}))
    why.update({n: "kept float32 (keep_float)" for n in qm.keep_float if n not in why})
    floats = [n for n, p in prec.items() if p == "f32"]
    rows = [f"precision: {len(prec) - len(floats)} int8 nodes, {len(floats)} float32"
            + (" (QDQ model: the file's scales)" if qm.calibration.get("method") == "qdq"
               else "")]
    for n in floats:
        rows.append(f"  {n:<34} float32  {why.get(n, 'no int8 form')}")
    rows.append(qm.memory_line())
    return "\n".join(rows)


# --- the model --------------------------------------------------------------------------

@dataclass
class QuantizedModel(GraphModel):
    """A quantized network: ``graph`` is the int8 graph (QUANTIZE at the input,
    DEQUANTIZE at the outputs and around float32 nodes), ``float_graph`` the
    float graph it was made from (after the float passes; None after load
    unless saved with it). ``reference(x)`` is the golden model's output
    (dequantized), ``compile(device, batch)`` lowers it to int8 layers."""

    float_graph: Optional[Graph] = None
    keep_float: tuple = ()
    calibration: dict = field(default_factory=dict)

    @property
    def precision(self) -> dict:
        """Each compute node's precision: "int8" or "f32"."""
        g = self.graph
        return {n.name: ("int8" if g.tensors[n.outputs[0]].dtype == "s8" else "f32")
                for n in g.nodes if n.op not in ("quantize", "dequantize")}

    def weight_memory(self) -> dict:
        """Bytes of parameters: ``int8`` the quantized graph's constants (int8
        weights, int32 biases, rescale records, tables), ``float32`` the float
        graph's (None without one)."""
        size = lambda g: sum(np.asarray(a).nbytes for a in g.constants.values())  # noqa: E731
        return {"int8": size(self.graph),
                "float32": None if self.float_graph is None else size(self.float_graph)}

    def memory_line(self) -> str:
        m = self.weight_memory()
        if m["float32"] is None:
            return f"weights: {m['int8']:,} bytes int8"
        return (f"weights: {m['int8']:,} bytes int8 (weights, int32 biases, rescale records) "
                f"vs {m['float32']:,} bytes float32: {m['float32'] / max(m['int8'], 1):.2f}x "
                "smaller")

    def float_reference(self, x: np.ndarray) -> np.ndarray:
        if self.float_graph is None:
            raise QuantizeError("this quantized model carries no float graph")
        return GraphModel(self.float_graph).reference(x)

    def save(self, path) -> None:
        from .compiler import serialize

        graphs = {"graph": self.graph}
        if self.float_graph is not None:
            graphs["float_graph"] = self.float_graph
        serialize.save(path, graphs, dict(config=self.config, keep_float=list(self.keep_float),
                                          calibration=self.calibration))

    @classmethod
    def load(cls, path) -> "QuantizedModel":
        from .compiler import serialize

        graphs, meta = serialize.load(path)
        if "graph" not in graphs:
            raise QuantizeError(f"{path}: no quantized graph in the file")
        return cls(graphs["graph"], meta.get("config", {}), graphs.get("float_graph"),
                   tuple(meta.get("keep_float", ())), meta.get("calibration", {}))


def quantize(model, calibration_data, method: str = "minmax", percentile: float = 99.99,
             keep_float: Iterable[str] = (), chunk: int = 8, auto_float: int = 0,
             seed: int = 0) -> QuantizedModel:
    """Post-training quantization of a GraphModel (or an IR Graph, or a
    graph.Model through to_graph) on calibration_data (N images, see
    calibration_array). keep_float: node names kept float32; auto_float: also
    keep the N nodes whose error alone is largest (pyaccel.analysis)."""
    if isinstance(model, QuantizedModel):
        raise QuantizeError(f"{model.name} is quantized already")
    if isinstance(model, Graph):
        model = GraphModel(model)
    elif not isinstance(model, GraphModel) and hasattr(model, "to_graph"):
        model = GraphModel(model.to_graph(), dict(getattr(model, "config", {})))
    if not isinstance(model, GraphModel):
        raise QuantizeError(f"quantize takes a GraphModel, a Graph or a graph.Model, got "
                            f"{type(model).__name__}")
    if any(i.quant is not None for t, i in model.graph.tensors.items()
           if t not in model.graph.constants):
        raise QuantizeError(f"{model.name} is a QDQ model (quantized already, with its own "
                            "scales): pyaccel.onnx.load_model gives its int8 model")
    fg = float_passes(model.graph)
    data = calibration_array(calibration_data, model.input_shape)
    calib = calibrate(fg, data, method, percentile, chunk, seed)
    keep = tuple(keep_float)
    info = dict(method=method, percentile=percentile, images=len(data))
    if auto_float:
        from . import analysis

        qg = quantize_graph(fg, calib, keep)
        worst = analysis.worst_layers(fg, qg, data[:chunk], auto_float, exclude=keep)
        keep = keep + tuple(worst)
        info["auto_float"] = list(worst)
    qg = quantize_graph(fg, calib, keep)
    return QuantizedModel(qg, dict(model.config), fg, keep, info)
