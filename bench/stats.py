"""Summaries of repeated timings (numpy 1.24 or newer)."""
from __future__ import annotations

import os
import time
from typing import Callable, Sequence

import numpy as np


def summary(samples_ns: Sequence[float]) -> dict:
    """Median, spread (p10/p90, p99, min, max) and count of samples in ns, as ms."""
    a = np.asarray(samples_ns, np.float64) / 1e6
    p10, p50, p90, p99 = np.percentile(a, [10, 50, 90, 99])
    return dict(median_ms=float(p50), p10_ms=float(p10), p90_ms=float(p90),
                p99_ms=float(p99), min_ms=float(a.min()), max_ms=float(a.max()), n=len(a))


def repeat(fn: Callable[[], object], repeats: int, warmup: int = 2) -> list[int]:
    """Wall times (ns) of `repeats` calls of fn after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter_ns()
        fn()
        times.append(time.perf_counter_ns() - t0)
    return times


def machine() -> dict:
    """Core count and load averages (1, 5, 15 min) of the machine we run on."""
    return dict(cores=os.cpu_count(), loadavg=[round(v, 2) for v in os.getloadavg()])
