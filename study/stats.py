"""Means with 95% intervals over seeds, and the verdict rule (numpy only).

`interval(values)`: the mean and the two-sided 95% Student-t interval of
the mean (n - 1 degrees of freedom; n = 1 gives an infinite interval).
`compare(a, b)`: "higher" / "lower" when the two intervals do not overlap,
else "overlap": the study gives a verdict only where intervals separate.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

# two-sided 95% quantiles of Student's t, by degrees of freedom
T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306,
       9: 2.262, 10: 2.228}


@dataclass(frozen=True)
class Interval:
    mean: float
    lo: float
    hi: float
    n: int

    @property
    def half(self) -> float:
        return (self.hi - self.lo) / 2

    def to_dict(self) -> dict:
        return dict(mean=self.mean, lo=self.lo, hi=self.hi, n=self.n)

    def pct(self, digits: int = 2) -> str:
        """"89.12 ± 0.31" in percent (values are fractions)."""
        if self.n < 2:
            return f"{100 * self.mean:.{digits}f} (n=1)"
        return f"{100 * self.mean:.{digits}f} ± {100 * self.half:.{digits}f}"


def interval(values: Sequence[float]) -> Interval:
    v = [float(x) for x in values]
    if not v:
        raise ValueError("interval of no values")
    n = len(v)
    mean = sum(v) / n
    if n == 1:
        return Interval(mean, -math.inf, math.inf, 1)
    sd = math.sqrt(sum((x - mean) ** 2 for x in v) / (n - 1))
    h = T95.get(n - 1, 1.96) * sd / math.sqrt(n)
    return Interval(mean, mean - h, mean + h, n)


def compare(a: Interval, b: Interval) -> str:
    """"higher" if a's interval lies wholly above b's, "lower" if below, else "overlap"."""
    if a.lo > b.hi:
        return "higher"
    if a.hi < b.lo:
        return "lower"
    return "overlap"
