"""A compiled graph on a device: the arena and the weights buffer (uploaded
once), one job per device segment, CPU nodes in between (pyaccel.reference
over views of the arena), the input copied in and the outputs out, and
per-layer statistics of every inference."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, Optional

import numpy as np

from ..errors import ShapeError
from ..jobs import JobResult, encode
from . import execute
from .encode import Encoder
from .ir import NUMPY_DTYPES, Graph, Node, as4, node_macs

if TYPE_CHECKING:
    from .api import Prepared


@dataclass(frozen=True)
class LayerStats:
    """One node of an inference: where it ran and what it cost."""

    name: str
    op: str
    where: str                  # "device" or "cpu"
    macs: int
    device_ns: int              # device compute (cpu: the CPU's wall time)
    cycles: int                 # the cost model's cycles (cpu: 0)
    bytes: int
    job: Optional[int]          # index of the job (device segment), None on the CPU
    precision: str = "f32"      # "int8", "f32", or "f32->int8" / "int8->f32" (conversions)


@dataclass(frozen=True)
class Row:
    """What a statistics row of a program step knows before it runs."""

    name: str
    op: str
    macs: int
    precision: str
    merge: bool = False         # a device layer that adds to the row before (a shuffle's copies)


@dataclass(frozen=True)
class Inference:
    output: np.ndarray          # the first graph output, (N, ...)
    outputs: dict
    jobs: list                  # JobResult of each device segment
    wall_ns: int
    model_clock_mhz: int
    # per program step: ("device", rows, job index) or ("cpu", rows, CPU ns of each node)
    steps: list = field(default_factory=list, repr=False)

    @cached_property
    def layers(self) -> list[LayerStats]:
        """Each node's statistics (made on first access, not on every call)."""
        stats: list[LayerStats] = []
        for kind, rows, what in self.steps:
            if kind == "cpu":
                stats += [LayerStats(r.name, r.op, "cpu", r.macs, ns, 0, 0, None, r.precision)
                          for r, ns in zip(rows, what)]
                continue
            for r, cost in zip(rows, self.jobs[what].layers):
                if r.merge:
                    s = stats[-1]
                    stats[-1] = LayerStats(s.name, s.op, "device", s.macs,
                                           s.device_ns + cost.device_ns, s.cycles + cost.cycles,
                                           s.bytes + cost.bytes, s.job, s.precision)
                else:
                    stats.append(LayerStats(r.name, r.op, "device", r.macs, cost.device_ns,
                                            cost.cycles, cost.bytes, what, r.precision))
        return stats

    @property
    def device_ns(self) -> int:
        return sum(j.device_ns for j in self.jobs)

    @property
    def cycles(self) -> int:
        return sum(j.cycles for j in self.jobs)

    @property
    def macs(self) -> int:
        return sum(s.macs for s in self.layers)

    @property
    def modelled_ms(self) -> float:
        return self.cycles / (self.model_clock_mhz * 1e3) if self.model_clock_mhz else 0.0

    @property
    def job(self) -> JobResult:
        """The jobs' totals as one JobResult (the single job of a one-segment graph)."""
        if len(self.jobs) == 1:
            return self.jobs[0]
        f = lambda k: sum(getattr(j, k) for j in self.jobs)  # noqa: E731
        return JobResult("ok", "none", None, f("layers_done"), f("macs"), f("bytes_read"),
                         f("bytes_written"), f("device_ns"), f("cycles"), f("latency_ns"),
                         tuple(c for j in self.jobs for c in j.layers))

    def where(self) -> str:
        dev = [s for s in self.layers if s.where == "device"]
        cpu = [s for s in self.layers if s.where == "cpu"]
        return (f"{len(dev)} nodes on the device in {len(self.jobs)} job(s) "
                f"({sum(s.macs for s in dev):,} MACs), {len(cpu)} on the CPU"
                + (f" ({', '.join(f'{s.name} [{s.op}]' for s in cpu)})" if cpu else ""))

    def table(self) -> str:
        mhz = self.model_clock_mhz or 1
        rows = [f"{'node':<34} {'op':<15} {'where':<7} {'precision':<10} {'device ms':>10} "
                f"{'model ms':>9} {'MACs':>14}"]
        for s in self.layers:
            rows.append(f"{s.name[:34]:<34} {s.op:<15} {s.where:<7} {s.precision:<10} "
                        f"{s.device_ns / 1e6:>10.3f} {s.cycles / mhz / 1e3:>9.4f} {s.macs:>14,}")
        rows.append(f"{'total':<34} {'':<15} {'':<7} {'':<10} {self.device_ns / 1e6:>10.3f} "
                    f"{self.modelled_ms:>9.4f} {self.macs:>14,}")
        rows.append(self.where() + f"; wall {self.wall_ns / 1e6:.2f} ms")
        return "\n".join(rows)


class CompiledGraph:
    """Call with the input array (or {name: array}); returns an Inference."""

    def __init__(self, prepared: "Prepared", device: Any) -> None:
        self.prepared, self.device = prepared, device
        g, p = prepared.graph, prepared.plan
        self.graph, self.plan = g, p
        self.batch = g.shape(g.inputs[0])[0]
        self._views: dict[str, np.ndarray] = {}
        self._arena = device.buffer(p.arena_bytes)
        self._weights = device.buffer(max(p.weights_bytes, 64))
        try:
            for t, off in p.weight_offsets.items():
                a = g.constants[t]
                self._weights.array(a.shape, a.dtype, off)[...] = a
            self._flat = self._arena.array(p.arena_bytes, np.uint8)
            enc = Encoder(g, p, self._arena.handle, self._weights.handle)
            self.program: list = []
            for kind, nodes in prepared.segments:
                if kind == "device":
                    layers, owner = enc.segment(nodes)
                    arr = layers if getattr(device, "simulated", False) else encode(layers)
                    rows = tuple(Row(n.name, n.op, node_macs(g, n), precision(g, n),
                                     merge=bool(i) and owner[i - 1] is n)
                                 for i, n in enumerate(owner))
                    self.program.append(("device", layers, arr, rows))
                else:
                    rows = tuple(Row(n.name, n.op, node_macs(g, n), precision(g, n))
                                 for n in nodes)
                    self.program.append(("cpu", nodes, rows))
            self.inputs = {t: self.tensor(t) for t in g.inputs}
        except BaseException:
            self.close()
            raise
        self.input = self.inputs[g.inputs[0]]

    @property
    def jobs_per_inference(self) -> int:
        return sum(1 for s in self.program if s[0] == "device")

    def tensor(self, t: str) -> np.ndarray:
        """A numpy view of tensor t in the arena (strided as the plan places it;
        made once: the arena never moves)."""
        view = self._views.get(t)
        if view is None:
            view = self._views[t] = self._make_view(t)
        return view

    def _make_view(self, t: str) -> np.ndarray:
        g, loc = self.graph, self.plan.locations[t]
        shape = g.shape(t)
        dtype = np.dtype(NUMPY_DTYPES[g.tensors[t].dtype])
        strides = loc.strides[:len(shape)] if len(shape) == 4 else loc.strides[:2]
        start = self.plan.offsets[loc.root] + loc.offset * dtype.itemsize
        return np.lib.stride_tricks.as_strided(self._flat[start:].view(dtype), shape,
                                               tuple(dtype.itemsize * s for s in strides))

    def _value(self, t: str) -> np.ndarray:
        return self.graph.constants[t] if t in self.graph.constants else self.tensor(t)

    def __call__(self, x, timeout: Optional[float] = 60) -> Inference:
        g = self.graph
        feeds = x if isinstance(x, dict) else {g.inputs[0]: x}
        t0 = time.monotonic_ns()
        for name, v in feeds.items():
            v = np.asarray(v, np.float32)
            if v.ndim == len(g.shape(name)) - 1:
                v = v[None]
            if v.shape != g.shape(name):
                raise ShapeError(f"input {name!r} shape {v.shape}: this graph was compiled for "
                                 f"{g.shape(name)}")
            self.inputs[name][...] = v
        steps, jobs = [], []
        for step in self.program:
            if step[0] == "device":
                _, _, arr, rows = step
                steps.append(("device", rows, len(jobs)))
                jobs.append(self.device.submit(arr).wait(timeout))
            else:
                _, nodes, rows = step
                times = []
                for node in nodes:
                    c0 = time.monotonic_ns()
                    outs = execute.evaluate(g, node, [self._value(t) for t in node.inputs])
                    for t, v in zip(node.outputs, outs):
                        self.tensor(t)[...] = v.reshape(g.shape(t))
                    times.append(time.monotonic_ns() - c0)
                steps.append(("cpu", rows, times))
        outputs = {t: np.array(self.tensor(t)) for t in g.outputs}
        wall = time.monotonic_ns() - t0
        mhz = getattr(getattr(self.device, "info", None), "model_clock_mhz", 0)
        return Inference(outputs[g.outputs[0]], outputs, jobs, wall, mhz, steps)

    def report(self) -> str:
        return self.prepared.report()

    def close(self) -> None:
        self._views.clear()
        for b in ("_arena", "_weights"):
            buf = getattr(self, b, None)
            if buf is not None:
                buf.destroy()
                setattr(self, b, None)

    def __enter__(self) -> "CompiledGraph":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def precision(g: Graph, node: Node) -> str:
    """A node's arithmetic: "int8", "f32", or a conversion "f32->int8" / "int8->f32"."""
    name = {"s8": "int8", "f32": "f32", "s32": "int32"}
    a = name[g.tensors[node.inputs[0]].dtype] if node.inputs else "f32"
    b = name[g.tensors[node.outputs[0]].dtype]
    return a if a == b else f"{a}->{b}"


def as_nchw(shape) -> tuple:
    return as4(shape)


__all__ = ["CompiledGraph", "Inference", "LayerStats", "Graph"]
