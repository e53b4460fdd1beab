"""The experiment's figures, from the per-request records and the connection samples of one path.

Connections are reported as the peak and the time-weighted mean over the load (first request to last response):
a pool that holds 45 connections for a second and 3 the rest of the run is not the same as one that holds 45
throughout, and the mean tells them apart.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from typing import Any

BIN_S = 1.0  # width of the time bins in the plot and the JSON time series


def percentile(values: Sequence[float], pct: int) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[pct - 1]


def time_weighted_mean(series: Sequence[tuple[float, float]], start: float, end: float) -> float | None:
    """Mean of a step function (each sample holds until the next) over [start, end]; None without samples there.

    The value before the first sample in the window is the last sample before it, when there is one.
    """
    if end <= start:
        return None
    points = sorted(series)
    before = [value for t, value in points if t <= start]
    inside = [(t, value) for t, value in points if start < t < end]
    if not before and not inside:
        return None
    steps = ([(start, before[-1])] if before else []) + inside
    total = 0.0
    for (t, value), (t_next, _) in zip(steps, [*steps[1:], (end, 0.0)], strict=True):
        total += value * (t_next - t)
    return total / (end - steps[0][0])


def summarize(
    path: str, records: list[dict[str, Any]], samples: list[dict[str, Any]], plane_info: dict[str, Any]
) -> dict[str, Any]:
    """Turn raw records and samples into the numbers the experiment reports."""
    starts = [r["t"] for r in records]
    ends = [r["t"] + r["latency_ms"] / 1000 for r in records]
    t0 = min(starts) if starts else time.time()
    t_end = max(ends) if ends else t0
    duration = t_end - t0
    ok = [r for r in records if r["ok"]]
    causes: dict[str, int] = {}
    for r in records:
        if not r["ok"]:
            causes[r["cause"]] = causes.get(r["cause"], 0) + 1
    latencies = sorted(r["latency_ms"] for r in records)
    n_bins = int(duration // BIN_S) + 1 if records else 0
    ok_bins, err_bins = [0] * n_bins, [0] * n_bins
    for r in records:
        index = min(n_bins - 1, int((r["t"] + r["latency_ms"] / 1000 - t0) // BIN_S))
        (ok_bins if r["ok"] else err_bins)[index] += 1
    db_points = [(s["t"], s["db_connections"]) for s in samples]
    proxy_series = [
        [round(s["t"] - t0, 3), s.get("proxy_clients"), s.get("proxy_backends")]
        for s in samples
        if "proxy_clients" in s
    ]
    in_load = [value for t, value in db_points if t0 <= t <= t_end]
    first_ok = min((r["t"] + r["latency_ms"] / 1000 for r in ok), default=None)
    warm_at = plane_info.pop("last_cold_start_done_at", None)
    mean = time_weighted_mean(db_points, t0, t_end)
    return {
        "path": path,
        "requests": len(records),
        "succeeded": len(ok),
        "failed": len(records) - len(ok),
        "failures_by_cause": dict(sorted(causes.items(), key=lambda kv: -kv[1])),
        "duration_s": round(duration, 3),
        "throughput_rps": round(len(records) / duration, 1) if duration else 0.0,
        "successful_rps": round(len(ok) / duration, 1) if duration else 0.0,
        "latency_ms": {f"p{p}": percentile(latencies, p) for p in (50, 95, 99)},
        "peak_db_connections_sampled": max((value for _, value in db_points), default=None),
        "peak_db_connections_sampled_in_load": max(in_load, default=None),
        "mean_db_connections_sampled": round(mean, 2) if mean is not None else None,
        "first_200_after_s": round(first_ok - t0, 3) if first_ok is not None else None,
        "all_containers_warm_after_s": round(warm_at - t0, 3) if warm_at is not None and records else None,
        "samples": len(samples),
        **plane_info,
        "timeseries": {
            "bin_s": BIN_S,
            "ok_per_bin": ok_bins,
            "errors_per_bin": err_bins,
            "db_connections": [[round(t - t0, 3), value] for t, value in db_points],
            "proxy_clients_backends": proxy_series,
        },
    }


def proxy_figures(stats: dict[str, Any], window_reset: bool) -> dict[str, Any]:
    """The stand-in's own figures: peak/mean backend connections and borrow wait/hold percentiles."""
    return {
        "proxy_stats": stats,
        "proxy_stats_window": "the load" if window_reset else "the stand-in's life (it cannot reset its windows)",
        "peak_proxy_client_connections": stats.get("client_connections_peak"),
        "peak_proxy_backend_connections": stats.get("backend_connections_peak"),
        "mean_proxy_backend_connections": stats.get("backend_connections_mean"),
        "borrow_wait_ms": stats.get("borrow_wait_ms"),
        "borrow_hold_ms": stats.get("borrow_hold_ms"),
    }
