"""The memory plan: every activation in ONE arena, placed by liveness.

A root tensor (one that is no view of another) owns a range of the arena
for its lifetime: from the first node that writes it or any view of it to
the last node that reads it or any view of it (graph inputs from the start,
graph outputs to the end). Roots never alive together may share memory:
they are placed greedily by size, largest first, each at the lowest offset
that fits between the roots already placed that overlap it in time (TFLite's
greedy-by-size arena planner). Weights and other constants go, once, into a
separate weights buffer.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

import numpy as np

from .ir import Graph, NUMPY_DTYPES
from .passes import Location, locate

ALIGN = 64


def aligned(n: int) -> int:
    return -(-int(n) // ALIGN) * ALIGN


@dataclass
class MemoryPlan:
    """Byte offsets in the arena (roots) and in the weights buffer (constants)."""

    arena_bytes: int
    offsets: dict                   # root tensor -> byte offset in the arena
    locations: dict                 # tensor -> Location (root, element offset, strides)
    lifetimes: dict                 # root -> (first step, last step)
    weights_bytes: int
    weight_offsets: dict            # constant -> byte offset in the weights buffer
    activations_bytes: int          # the sum of every root's size (no sharing)
    peak_live_bytes: int            # the most bytes alive at one step
    root_bytes: dict = field(default_factory=dict)

    def byte_offset(self, g: Graph, t: str) -> int:
        loc = self.locations[t]
        item = np.dtype(NUMPY_DTYPES[g.tensors[t].dtype]).itemsize
        return self.offsets[loc.root] + loc.offset * item

    def report(self) -> str:
        mib = 1 << 20
        return (f"memory plan: arena {self.arena_bytes:,} bytes ({self.arena_bytes / mib:.2f} MiB) "
                f"for {self.activations_bytes:,} bytes of activations "
                f"({self.activations_bytes / mib:.2f} MiB, {len(self.offsets)} tensors; "
                f"peak live {self.peak_live_bytes / mib:.2f} MiB); weights "
                f"{self.weights_bytes:,} bytes ({self.weights_bytes / mib:.2f} MiB, "
                f"{len(self.weight_offsets)} tensors)")


def _extent(g: Graph, t: str, loc: Location) -> int:
    """Elements from the root's start to past t's last element."""
    shape = tuple(g.shape(t)) + (1,) * (4 - len(g.shape(t)))
    return loc.offset + sum((d - 1) * s for d, s in zip(shape, loc.strides)) + 1


def place(sizes: dict, lifetimes: dict) -> tuple[dict, int]:
    """Greedy by size: {name: offset}, total bytes."""
    placed: list = []               # (offset, size, first, last)
    offsets: dict = {}
    for name in sorted(sizes, key=lambda k: (-sizes[k], lifetimes[k][0], k)):
        size, (first, last) = sizes[name], lifetimes[name]
        busy = sorted((o, s) for o, s, f, la in placed if f <= last and first <= la)
        best, best_gap, cursor = None, None, 0
        for o, s in busy:
            gap = o - cursor
            if gap >= size and (best_gap is None or gap < best_gap):
                best, best_gap = cursor, gap
            cursor = max(cursor, o + s)
        offset = best if best is not None else cursor
        offsets[name] = offset
        placed.append((offset, size, first, last))
    return offsets, max((o + s for o, s, _, _ in placed), default=0)


def plan(g: Graph, views: dict, virtual: Iterable[str] = (),
         constants: Iterable[str] | None = None) -> MemoryPlan:
    """The plan of graph g (after the passes) with its views; `constants`:
    those the device reads (default: all)."""
    virtual = set(virtual)
    steps = len(g.nodes)
    locations = {t: locate(g, views, t) for t in g.activations() if t not in virtual}
    first: dict = {}
    last: dict = {}
    for t in g.inputs:
        first[t], last[t] = -1, -1
    for i, n in enumerate(g.nodes):
        for t in n.outputs:
            first.setdefault(t, i)
            last[t] = max(last.get(t, i), i)
        for t in n.inputs:
            last[t] = i
    for t in g.outputs:
        last[t] = steps
    extents: dict = {}
    lifetimes: dict = {}
    for t, loc in locations.items():
        r = loc.root
        f, la = first.get(t, -1), last.get(t, first.get(t, -1))
        lf = lifetimes.get(r)
        lifetimes[r] = (f, la) if lf is None else (min(lf[0], f), max(lf[1], la))
        item = np.dtype(NUMPY_DTYPES[g.tensors[t].dtype]).itemsize
        extents[r] = max(extents.get(r, 0), _extent(g, t, loc) * item,
                         g.tensors[r].nbytes if r in g.tensors else 0)
    sizes = {r: aligned(e) for r, e in extents.items()}
    offsets, total = place(sizes, lifetimes)
    peak = max((sum(sizes[r] for r, (f, la) in lifetimes.items() if f <= s <= la)
                for s in range(-1, steps + 1)), default=0)
    w_offsets, w_size = {}, 0
    for t in (g.constants if constants is None else constants):
        w_offsets[t] = w_size
        w_size += aligned(g.constants[t].nbytes)
    return MemoryPlan(aligned(max(total, ALIGN)), offsets, locations, lifetimes, w_size,
                      w_offsets, sum(sizes.values()), peak, sizes)
