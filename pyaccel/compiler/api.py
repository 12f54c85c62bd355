"""The compiler's entry points: prepare (passes, partition, plan: no device),
compile (prepare + upload + encode on a device), check_report (what would run
where, and the memory plan)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from . import partition as part
from . import passes
from . import plan as planner
from .ir import Graph, node_constants


@dataclass
class Prepared:
    """A graph after the passes, with its placements, segments and memory plan."""

    source: Graph
    graph: Graph
    views: dict
    virtual: set
    placements: list
    segments: list
    plan: planner.MemoryPlan
    info: Any

    def report(self) -> str:
        g = self.graph
        rows = [f"{self.source.name}: {self.source.params:,} params, {self.source.macs:,} MACs "
                f"(batch {g.shape(g.inputs[0])[0]}); {len(self.source.nodes)} nodes, "
                f"{len(g.nodes)} after the passes; device: convaccel "
                f"{getattr(self.info, 'version', '?')}",
                f"{'node':<34} {'op':<15} {'where':<8} {'maps to / why':<}"]
        for p in self.placements:
            what = p.device_op if p.where == "device" else ""
            note = f"{what} {p.reason}".strip()
            rows.append(f"{p.node[:34]:<34} {p.op:<15} {p.where:<8} {note}")
        dev = [p for p in self.placements if p.where == "device"]
        cpu = [p for p in self.placements if p.where == "cpu"]
        views = [p for p in self.placements if p.where == "view"]
        copies = sum(1 for n in g.nodes if n.op == "copy")
        jobs = sum(1 for s in self.segments if s[0] == "device")
        rows.append(f"support: {len(dev)} nodes on the device in {jobs} job(s), {len(cpu)} on "
                    f"the CPU, {len(views)} views (no copy), {copies} copies inserted")
        for p in cpu:
            rows.append(f"  CPU: {p.node} ({p.op}): {p.reason}")
        rows.append(self.plan.report())
        return "\n".join(rows)


def _device_constants(g: Graph, placements: list) -> list:
    names = {p.node for p in placements if p.where == "device"}
    seen: dict = {}
    for n in g.nodes:
        if n.name in names:
            for t in node_constants(g, n):
                seen[t] = None
    return list(seen)


def prepare(graph: Graph, info: Any = None) -> Prepared:
    """Run the passes on a copy of graph, place every node, plan the memory."""
    g = graph.copy()
    views, virtual = passes.optimize(g)
    passes.remove_dead(g)
    info = info or part.DEFAULT_INFO
    placements = part.place(g, info)
    segs = part.segments(g, placements, getattr(info, "max_layers", 1024) or 1024)
    mem = planner.plan(g, views, virtual, _device_constants(g, placements))
    return Prepared(graph, g, views, virtual, placements, segs, mem, info)


def compile(graph: Graph, device: Any):  # noqa: A001 - the compiler's verb
    """Compile graph for device (a pyaccel.Device, or simulate.HostDevice):
    a runtime.CompiledGraph, called with the input array."""
    from .runtime import CompiledGraph

    return CompiledGraph(prepare(graph, device.info), device)


def check_report(graph: Graph, info: Optional[Any] = None) -> str:
    """The support report (each node: device, CPU or view, and why) and the
    memory plan (arena size vs the sum of the activations), for a device's
    INFO (None: a full convaccel 2.0)."""
    return prepare(graph, info).report()
