"""How the load experiment shows its results: a table on stdout and a PNG of connections and errors over time."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def format_table(results: dict[str, dict[str, Any]]) -> str:
    rows = [
        ("requests", "requests"),
        ("failed", "failed"),
        ("failures by cause", "failures_by_cause"),
        ("throughput req/s", "throughput_rps"),
        ("successful req/s", "successful_rps"),
        ("latency p50 ms", ("latency_ms", "p50")),
        ("latency p95 ms", ("latency_ms", "p95")),
        ("latency p99 ms", ("latency_ms", "p99")),
        ("peak DB conns (sampled)", "peak_db_connections_sampled"),
        ("mean DB conns (sampled)", "mean_db_connections_sampled"),
        ("DB Max_used_connections*", "db_max_used_connections"),
        ("pool cap", "pool_cap"),
        ("peak DB conns (stand-in)", "peak_proxy_backend_connections"),
        ("mean DB conns (stand-in)", "mean_proxy_backend_connections"),
        ("peak proxy client conns", "peak_proxy_client_connections"),
        ("borrow wait ms p50/p95/max", "borrow_wait_ms"),
        ("borrow hold ms p50/p95/max", "borrow_hold_ms"),
        ("first 200 after s", "first_200_after_s"),
        ("all containers warm after s", "all_containers_warm_after_s"),
        ("containers", "containers_created"),
        ("duration s", "duration_s"),
    ]
    paths = list(results)

    def cell(result: dict[str, Any], key: Any) -> str:
        value = result[key[0]][key[1]] if isinstance(key, tuple) else result.get(key)
        if isinstance(value, float):
            return f"{value:.1f}" if abs(value) >= 10 else f"{value:.2f}"
        if isinstance(value, dict) and {"p50", "p95", "max"} <= set(value):
            return "/".join("-" if value[k] is None else f"{value[k]:.1f}" for k in ("p50", "p95", "max"))
        if isinstance(value, dict):
            return ", ".join(f"{k}: {v}" for k, v in value.items()) or "-"
        return "-" if value is None else str(value)

    table = [["", *paths]] + [[label, *(cell(results[p], key) for p in paths)] for label, key in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in table]
    lines.append("* the server's own high-water mark: includes our monitoring connections on the extra port and")
    lines.append("  sessions still closing while new ones open; the sampled count is Threads_connected.")
    lines.append("Means are time-weighted over the load (first request to last response); the stand-in's figures")
    lines.append("are its own /stats, its windows restarted right before the load.")
    return "\n".join(lines)


def plot(results: dict[str, dict[str, Any]], path: Path) -> None:
    """DB connections (top) and errors vs successes per second (bottom), one column per path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = list(results)
    fig, axes = plt.subplots(2, len(paths), figsize=(6.5 * len(paths), 7), sharex="col", sharey="row", squeeze=False)
    for column, name in enumerate(paths):
        result = results[name]
        series = result["timeseries"]
        top, bottom = axes[0][column], axes[1][column]
        if series["db_connections"]:
            xs, ys = zip(*series["db_connections"], strict=True)
            top.plot(xs, ys, label="DB connections (server)", color="tab:blue")
        if series["proxy_clients_backends"]:
            xs = [row[0] for row in series["proxy_clients_backends"]]
            top.plot(
                xs,
                [row[1] for row in series["proxy_clients_backends"]],
                label="proxy client connections",
                color="tab:green",
                linestyle="--",
            )
        top.axhline(result["db_max_connections"], color="tab:red", linestyle=":", label="max_connections")
        if result.get("pool_cap"):
            top.axhline(
                result["pool_cap"], color="tab:orange", linestyle="-.", label=f"pool cap ({result['pool_cap']})"
            )
        mean = result.get("mean_db_connections_sampled")
        top.set_title(
            f"{name}: {result['failed']} of {result['requests']} failed, {result['successful_rps']:.0f} ok req/s"
            + (f", mean {mean:.1f} DB conns" if mean is not None else "")
        )
        top.set_ylabel("connections")
        top.legend(loc="lower right", fontsize=8)
        bins = range(len(series["ok_per_bin"]))
        xs = [i * series["bin_s"] for i in bins]
        bottom.bar(xs, series["ok_per_bin"], width=series["bin_s"], align="edge", color="tab:green", label="ok")
        bottom.bar(
            xs,
            series["errors_per_bin"],
            width=series["bin_s"],
            align="edge",
            bottom=series["ok_per_bin"],
            color="tab:red",
            label="errors (1040 etc.)",
        )
        for key, label, style in (
            ("first_200_after_s", "first 200", ":"),
            ("all_containers_warm_after_s", "all containers warm", "--"),
        ):
            if result.get(key) is not None:
                bottom.axvline(result[key], color="tab:gray", linestyle=style, label=f"{label} ({result[key]:.1f} s)")
        bottom.set_xlabel("seconds since first request")
        bottom.set_ylabel(f"requests per {series['bin_s']:g} s")
        bottom.legend(loc="upper right", fontsize=8)
    fig.suptitle("Lambda -> MySQL: direct vs through the RDS Proxy stand-in")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
