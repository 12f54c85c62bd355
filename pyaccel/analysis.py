"""Where int8 accuracy goes: the float graph and the int8 graph side by side,
layer by layer (as rknn-toolkit2's accuracy_analysis).

For every compute node of a QuantizedModel, on the same images:

- **cumulative** ("everything up to it quantized"): the int8 network runs
  (on a device: the compiled graph with every layer's output kept; without
  one: the golden model, pyaccel.compiler.golden, which equals the device bit
  for bit) and the layer's dequantized output is compared with the float
  network's tensor;
- **alone** ("only this layer quantized"): the layer's inputs are the float
  network's tensors, quantized; only this layer runs in int8 (golden model);

each as the cosine similarity, the max and mean absolute error divided by
the float tensor's range (max - min), and for the cumulative run the share
of saturated outputs (-128 or 127, unless that is the zero point). Layers whose alone error is largest are
the ones to keep in float32 (``worst_layers``; ``quantize(auto_float=N)``).
``plot`` writes a PNG where matplotlib imports.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Optional

import numpy as np

from . import reference_int8 as ri8
from .compiler import execute, golden
from .compiler.builder import rebatch
from .compiler.ir import Graph, Node
from .errors import AccelError

COMPUTE_OPS = ("conv", "fc", "add", "mul", "avgpool", "global_avgpool", "maxpool",
               "global_maxpool", "scale_shift", "act", "copy", "channel_shuffle", "softmax")


class AnalysisError(AccelError):
    """The analysis cannot run: the message says why."""


@dataclass(frozen=True)
class LayerError:
    name: str
    op: str
    precision: str              # "int8" or "f32" (kept float)
    cosine: float               # cumulative
    max_err: float              # max |int8 - float| / range of float
    mean_err: float
    saturated: float            # share of outputs at -128 or 127 (int8 layers)
    alone_cosine: float
    alone_max_err: float
    alone_mean_err: float


@dataclass
class Analysis:
    model: str
    images: int
    backend: str                # "device" or "golden model"
    layers: list
    output_cosine: float
    top1_agreement: float
    flagged: list

    def table(self) -> str:
        rows = [f"{self.model}: {self.images} image(s), int8 side on the {self.backend}; "
                f"output cosine {self.output_cosine:.5f}, top-1 agreement "
                f"{self.top1_agreement:.0%}",
                f"{'layer':<30} {'op':<14} {'prec':<5} {'cos':>8} {'max err':>8} "
                f"{'mean err':>8} {'sat %':>6} | {'alone cos':>9} {'max err':>8} "
                f"{'mean err':>8}"]
        for e in self.layers:
            flag = "  <- keep float" if e.name in self.flagged else ""
            alone = (f"{e.alone_cosine:>9.5f} {e.alone_max_err:>8.4f} {e.alone_mean_err:>8.5f}"
                     if np.isfinite(e.alone_cosine) else f"{'- (float32)':>27}")
            rows.append(f"{e.name[:30]:<30} {e.op:<14} {e.precision:<5} {e.cosine:>8.5f} "
                        f"{e.max_err:>8.4f} {e.mean_err:>8.5f} {100 * e.saturated:>6.2f} | "
                        f"{alone}{flag}")
        rows.append(f"flagged to keep in float32 (largest error alone): "
                    f"{', '.join(self.flagged) or 'none'}")
        return "\n".join(rows)


def _all_values(g: Graph, x: np.ndarray) -> dict:
    """Every tensor of g on input x (numpy; int8 nodes by the golden model)."""
    h = rebatch(g, len(x))
    values = {h.inputs[0]: np.asarray(x, np.float32), **h.constants}
    for n in h.nodes:
        for t, v in zip(n.outputs, execute.evaluate(h, n, [values[t] for t in n.inputs])):
            values[t] = v
    return values


def _device_values(qg: Graph, x: np.ndarray, device: Any, names: list) -> dict:
    h = rebatch(qg, len(x))
    for t in names:
        if t not in h.outputs:
            h.mark_output(t)
    from .compiler.api import compile as compile_graph

    with compile_graph(h, device) as net:
        return dict(net(x).outputs)


def _compare(got: np.ndarray, want: np.ndarray) -> tuple:
    a = np.asarray(got, np.float64).ravel()
    b = np.asarray(want, np.float64).ravel()
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    cos = float(a @ b / (na * nb)) if na > 0 and nb > 0 else float(na == nb)
    span = float(b.max() - b.min()) if b.size else 0.0
    span = span if span > 0 else 1.0
    d = np.abs(a - b)
    return cos, float(d.max()) / span, float(d.mean()) / span


def _dequant(g: Graph, t: str, v: np.ndarray) -> np.ndarray:
    q = g.tensors[t].quant
    return ri8.dequantize(np.asarray(v, np.int8), q.scale, q.zero_point) \
        if g.tensors[t].dtype == "s8" else np.asarray(v, np.float32)


def _q_from_float(g: Graph, t: str, fvals: dict, cache: dict) -> np.ndarray:
    """The s8 tensor t of the int8 graph made from the float network's values."""
    if t in cache:
        return cache[t]
    if t in g.constants:
        return g.constants[t]
    info = g.tensors[t]
    if info.dtype != "s8":
        v = fvals[t]
    elif t in fvals:
        v = ri8.quantize(fvals[t], info.quant.scale, info.quant.zero_point)
    else:
        p = g.producer(t)
        if p is None:
            raise AnalysisError(f"{t}: no float counterpart and no producer")
        v = execute.evaluate(g, p, [_q_from_float(g, s, fvals, cache) for s in p.inputs])[
            p.outputs.index(t)]
    cache[t] = v
    return v


def saturation(q: np.ndarray, zp: int) -> float:
    """The share of int8 values at -128 or 127 that are not the zero point (a
    ReLU output's zeros sit at zp = -128: exact, not saturated)."""
    q = np.asarray(q)
    hit = (q == 127) if zp == -128 else ((q == -128) | (q == 127)) if zp != 127 else (q == -128)
    return float(np.mean(hit)) if q.size else 0.0


def _compute_nodes(qg: Graph, fg: Graph) -> list:
    return [n for n in qg.nodes if n.op in COMPUTE_OPS and n.outputs[0] in fg.tensors]


def alone_errors(fg: Graph, qg: Graph, x: np.ndarray, fvals: Optional[dict] = None) -> dict:
    """{node: (cos, max err, mean err)} of each int8 node run alone on the
    float network's (quantized) inputs."""
    fvals = fvals if fvals is not None else _all_values(fg, x)
    h = rebatch(qg, len(x))
    cache: dict = {}
    out = {}
    for n in _compute_nodes(h, fg):
        if "int8" not in n.attrs:
            continue
        args = [_q_from_float(h, t, fvals, cache) for t in n.inputs]
        y = execute.evaluate(h, n, args)[0]
        t = n.outputs[0]
        out[n.name] = _compare(_dequant(h, t, y), fvals[t])
    return out


def worst_layers(fg: Graph, qg: Graph, x: np.ndarray, count: int,
                 exclude: Iterable[str] = ()) -> list:
    """The `count` int8 nodes with the largest error alone (1 - cosine, then
    the mean error), weighted layers (conv, fc) only."""
    ex = set(exclude)
    weighted = {n.name for n in qg.nodes if n.op in ("conv", "fc", "scale_shift")}
    errs = alone_errors(fg, qg, x)
    ranked = sorted((k for k in errs if k in weighted and k not in ex),
                    key=lambda k: (-(1 - errs[k][0]), -errs[k][2]))
    return ranked[:count]


def analyze(qm, data: np.ndarray, device: Any = None, flag: int = 1) -> Analysis:
    """The per-layer comparison of quantized model qm (a QuantizedModel with
    its float graph) on images data; device None: the golden model."""
    fg, qg = qm.float_graph, qm.graph
    if fg is None:
        raise AnalysisError(f"{qm.name}: the quantized model carries no float graph "
                            "(quantize it again, or save it with one)")
    x = np.asarray(data, np.float32)
    fvals = _all_values(fg, x)
    nodes = _compute_nodes(qg, fg)
    if device is not None:
        names = [n.outputs[0] for n in nodes]
        qvals = _device_values(qg, x, device, names)
        backend = "device"
    else:
        qvals = _all_values(qg, x)
        backend = "golden model"
    alone = alone_errors(fg, qg, x, fvals)
    rows = []
    for n in nodes:
        t = n.outputs[0]
        v = qvals[t]
        cos, mx, mean = _compare(_dequant(qg, t, v), fvals[t])
        sat = saturation(v, qg.tensors[t].quant.zero_point) if qg.tensors[t].dtype == "s8" \
            else 0.0
        a = alone.get(n.name, (float("nan"),) * 3)
        prec = "int8" if qg.tensors[t].dtype == "s8" else "f32"
        rows.append(LayerError(n.name, n.op, prec, cos, mx,
                               mean, sat, *a))
    out_q = qvals[qg.outputs[0]] if qg.outputs[0] in qvals else execute.run(qg, x)[qg.outputs[0]]
    out_f = fvals[fg.outputs[0]]
    cos = _compare(out_q, out_f)[0]
    top1 = float(np.mean(out_q.reshape(len(x), -1).argmax(1) == out_f.reshape(len(x), -1)
                         .argmax(1)))
    weighted = [r for r in rows if r.op in ("conv", "fc", "scale_shift") and r.precision == "int8"]
    flagged = [r.name for r in sorted(weighted, key=lambda r: -(1 - r.alone_cosine))[:flag]]
    return Analysis(qm.name, len(x), backend, rows, cos, top1, flagged)


def plot(result: Analysis, path) -> Optional[str]:
    """A PNG of per-layer error (1 - cosine, cumulative and alone); returns
    None when written, else why not (no matplotlib)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        return f"no PNG: matplotlib does not import here ({e})"
    names = [r.name for r in result.layers]
    cum = [max(1 - r.cosine, 1e-9) for r in result.layers]
    alone = [max(1 - r.alone_cosine, 1e-9) if np.isfinite(r.alone_cosine) else np.nan
             for r in result.layers]
    fig, ax = plt.subplots(figsize=(max(8, len(names) * 0.22), 4.5))
    ax.semilogy(cum, "o-", label="cumulative (all layers up to it int8)")
    ax.semilogy(alone, "s--", label="alone (only this layer int8)")
    for i, r in enumerate(result.layers):
        if r.name in result.flagged:
            ax.axvline(i, color="red", alpha=0.3)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=90, fontsize=6)
    ax.set_ylabel("1 - cosine similarity")
    ax.set_title(f"{result.model}: int8 vs float per layer ({result.backend}, "
                 f"{result.images} images)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return None


def node_of(g: Graph, name: str) -> Node:
    return g.node(name)


__all__ = ["Analysis", "AnalysisError", "LayerError", "alone_errors", "analyze", "plot",
           "worst_layers", "golden"]
