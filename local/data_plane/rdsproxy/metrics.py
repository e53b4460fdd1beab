"""Measurements the stats report, in constant memory and without I/O: latency percentiles and a time-weighted gauge.

A proxy under load records every borrow; keeping each sample would grow without bound in a long ``serve``, and
sorting them per ``/stats`` call would cost the event loop. A log-bucketed histogram keeps p50/p95
within 1.6 % of the exact nearest-rank value (max exact) in at most a couple of thousand counters. The gauge
integrates the number of open backend connections over time, which is what "connections held" means (the reference
run's "8 DB connections").
"""

from __future__ import annotations

import math

#: Buckets per power of two: a value m x 2**e (0.5 <= m < 1) falls in bucket e*64 + floor((m - 0.5) * 128), which
#: ``math.frexp`` finds without a logarithm (~0.3 us). A bucket is at most 1/64 of its lower bound wide.
_PER_OCTAVE = 64
#: Relative width of a histogram bucket: a reported percentile is at most this much above the exact one.
RELATIVE_ERROR = 1 / _PER_OCTAVE
#: Durations below this are counted as this (1 µs: below the event loop's resolution).
SMALLEST_S = 1e-6


class LatencyHistogram:
    """Durations in buckets ``RELATIVE_ERROR`` wide; ``quantile`` is never below the exact nearest-rank value."""

    __slots__ = ("_buckets", "count", "max")

    def __init__(self) -> None:
        self._buckets: dict[int, int] = {}
        self.count = 0
        self.max = 0.0

    def add(self, seconds: float) -> None:
        value = max(seconds, SMALLEST_S)
        mantissa, exponent = math.frexp(value)
        index = exponent * _PER_OCTAVE + int((mantissa - 0.5) * 2 * _PER_OCTAVE)
        self._buckets[index] = self._buckets.get(index, 0) + 1
        self.count += 1
        if value > self.max:
            self.max = value

    def quantile(self, fraction: float) -> float:
        """Upper bound of the nearest-rank ``fraction`` quantile (0 when empty), never above ``max``."""
        if not 0 < fraction <= 1:
            raise ValueError(f"fraction={fraction}: must be in (0, 1]")
        if not self.count:
            return 0.0
        rank = max(1, math.ceil(fraction * self.count))
        seen = 0
        for index in sorted(self._buckets):
            seen += self._buckets[index]
            if seen >= rank:
                return min(_upper(index), self.max)
        return self.max  # pragma: no cover - the counts add up to count

    def summary_ms(self) -> dict[str, float]:
        """``{"count", "p50", "p95", "max"}``, durations in milliseconds (3 decimals)."""
        return {
            "count": self.count,
            "p50": round(self.quantile(0.50) * 1e3, 3),
            "p95": round(self.quantile(0.95) * 1e3, 3),
            "max": round(self.max * 1e3, 3),
        }


def _upper(index: int) -> float:
    """The bucket's upper bound (exclusive): every value counted in it is below this."""
    exponent, sub = divmod(index, _PER_OCTAVE)
    return math.ldexp(0.5 + (sub + 1) / (2 * _PER_OCTAVE), exponent)


class TimeWeightedGauge:
    """A level that changes over time (open connections): its peak, and its integral and mean over a window."""

    __slots__ = ("value", "peak", "_since", "_changed", "_area")

    def __init__(self, now: float, value: int = 0) -> None:
        self.value = value
        self.peak = value
        self._since = now
        self._changed = now
        self._area = 0.0

    def set(self, value: int, now: float) -> None:
        """The level is ``value`` from ``now`` on (``now`` never goes back)."""
        self._area += self.value * max(0.0, now - self._changed)
        self._changed = max(now, self._changed)
        self.value = value
        if value > self.peak:
            self.peak = value

    def area(self, now: float) -> float:
        """Level x seconds since the window began (connection-seconds)."""
        return self._area + self.value * max(0.0, now - self._changed)

    def window(self, now: float) -> float:
        return max(0.0, now - self._since)

    def mean(self, now: float) -> float:
        """Time-weighted mean level since the window began (the current level for an empty window)."""
        span = self.window(now)
        return self.area(now) / span if span > 0 else float(self.value)

    def reset(self, now: float) -> None:
        """Start a new window at ``now``: the peak restarts from the current level."""
        self._since = self._changed = max(now, self._changed)
        self._area = 0.0
        self.peak = self.value
