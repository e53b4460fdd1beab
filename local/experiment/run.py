"""The load experiment, locally: N requests from U locust users, direct to the DB vs through the proxy.

The reference run is a db.t2.micro with max_connections 65, 100 users and 10,000 requests.

Each path gets a fresh data plane (fresh MariaDB, cold containers, fresh proxy), so neither run
inherits connections or warm containers from the other. Its MariaDB is a throw-away one of its own, never the
stack's persistent local DB instance, so the numbers do not depend on what a user stored there. While locust
runs (headless, in its own process), a sampler reads the server's connection count over MariaDB's extra
port (outside the `max_connections` slots it measures) and the proxy's /stats (`sampler`); `metrics` turns records
and samples into the figures. Results: a table on stdout, `<out>/experiment.json` and `<out>/experiment.png`.

The API's throttling is set by the run itself (API Gateway's account quota), high enough never to throttle it: the
experiment measures the pool behind the API, not the edge; the table prints the limits used and the deployed ones.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from local.data_plane import deployed
from local.data_plane.deployed import ThrottleSettings
from local.data_plane.plane import DataPlaneConfig, LocalDataPlane
from local.data_plane.serve import add_settings_arguments
from local.experiment.metrics import proxy_figures, summarize
from local.experiment.report import format_table, plot
from local.experiment.sampler import Sampler, read_proxy_stats, reset_proxy_stats
from modules.project import REPO_ROOT

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
PATHS = ("direct", "proxy")
PROXY_DB_CONNECTIONS_TARGET = 10
"""The reference run on real RDS Proxy held 8 DB connections for 100 users."""
EXPERIMENT_THROTTLING = ThrottleSettings()
"""API Gateway's account quota (10,000 req/s, burst 5,000): the load never reaches it."""


@dataclass(frozen=True)
class ExperimentConfig:
    requests: int = 10_000
    users: int = 100
    spawn_rate: float = 1000.0
    db_max_connections: int = 65
    max_concurrency: int | None = None
    out_dir: str = str(REPO_ROOT / "results")
    run_timeout_s: float = 300.0
    paths: tuple[str, ...] = PATHS

    def __post_init__(self) -> None:
        if not 1 <= self.requests <= 1_000_000:
            raise ValueError(f"requests={self.requests}: must be in 1..1000000")
        if not 1 <= self.users <= 1000:
            raise ValueError(f"users={self.users}: must be in 1..1000")
        if not 0 < self.spawn_rate <= 100_000:
            raise ValueError(f"spawn_rate={self.spawn_rate}: must be in (0, 100000]")
        if not 10 <= self.db_max_connections <= 100_000:
            raise ValueError(f"db_max_connections={self.db_max_connections}: must be in 10..100000")
        if not 1 <= self.run_timeout_s <= 3600:
            raise ValueError(f"run_timeout_s={self.run_timeout_s}: must be in 1..3600")
        unknown = set(self.paths) - set(PATHS)
        if not self.paths or unknown:
            raise ValueError(f"paths={self.paths}: must be a non-empty subset of {PATHS}")


def run_locust(url: str, config: ExperimentConfig, workdir: Path) -> dict[str, Any]:
    """Run locust headless as a subprocess and return the per-request records its locustfile wrote."""
    results_file = workdir / "locust-records.json"
    command = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(LOCUSTFILE),
        "--headless",
        "-u",
        str(config.users),
        "-r",
        str(config.spawn_rate),
        "--host",
        url,
        "--requests",
        str(config.requests),
        "--results-file",
        str(results_file),
        "--run-time",
        f"{int(config.run_timeout_s)}s",
        "--stop-timeout",
        "10",
        "--only-summary",
        "--loglevel",
        "WARNING",
    ]
    with open(workdir / "locust.log", "wb") as log:
        completed = subprocess.run(
            command, stdout=log, stderr=subprocess.STDOUT, cwd=str(REPO_ROOT), timeout=config.run_timeout_s + 60
        )
    if not results_file.is_file():
        tail = (workdir / "locust.log").read_text(errors="replace")[-3000:]
        raise RuntimeError(f"locust exited with {completed.returncode} and wrote no results:\n{tail}")
    return json.loads(results_file.read_text())


def _max_used_connections(plane: LocalDataPlane) -> int:
    """The server's own high-water mark of simultaneous connections (no sampling gaps)."""
    assert plane.db is not None
    conn = plane.db.admin_connect()
    try:
        cursor = conn.cursor()
        cursor.execute("SHOW GLOBAL STATUS LIKE 'Max_used_connections'")
        return int(cursor.fetchall()[0][1])
    finally:
        conn.close()


def run_path(
    path: str, stack: deployed.DeployedStack, config: ExperimentConfig, workdir: Path, log=print
) -> dict[str, Any]:
    plane_config = DataPlaneConfig(
        via_proxy=(path == "proxy"),
        db_max_connections=config.db_max_connections,
        max_concurrency=config.max_concurrency,
        function_log=str(Path(config.out_dir) / f"function-{path}.log"),
        throttling=EXPERIMENT_THROTTLING,
    )
    Path(plane_config.function_log).unlink(missing_ok=True)
    with LocalDataPlane(stack, plane_config) as plane:
        log(f"[{path}] " + plane.describe().replace("\n", f"\n[{path}] "))
        log(f"[{path}] migrated before the load, as a deploy does: {json.dumps(plane.migration, sort_keys=True)}")
        assert plane.db is not None and plane.runtime is not None and plane.api is not None
        baseline = plane.db.threads_connected()
        stats_url = f"http://{plane.proxy.host}:{plane.proxy.stats_port}/stats" if plane.proxy is not None else None
        window_reset = reset_proxy_stats(stats_url) if stats_url else False
        with Sampler(plane.db.threads_connected, stats_url) as sampler:
            started = time.perf_counter()
            data = run_locust(plane.url, config, workdir)
            wall = time.perf_counter() - started
        runtime_stats = plane.runtime.stats()
        info: dict[str, Any] = {
            "wall_s": round(wall, 2),
            "db_max_connections": config.db_max_connections,
            "db_baseline_connections": baseline,
            "db_max_used_connections": _max_used_connections(plane),
            "pool_cap": plane.pool_cap if plane.proxy else None,
            "containers_created": runtime_stats.containers_created,
            "peak_concurrency": runtime_stats.peak_concurrency,
            "http_status_counts": {str(k): v for k, v in sorted(plane.api.status_counts.items())},
            "local_overrides": plane.overrides,
            "sampler_errors": sampler.errors,
            "last_cold_start_done_at": runtime_stats.last_cold_start_done_at,
        }
        if stats_url is not None:
            info.update(proxy_figures(read_proxy_stats(stats_url), window_reset))
        else:
            info["peak_proxy_client_connections"] = None
    return summarize(path, data["records"], sampler.samples, info)


def evaluate(results: dict[str, dict[str, Any]], total_s: float) -> dict[str, bool]:
    """The experiment's targets (no failure through the proxy, DB connections within the pool cap, ...).

    Booleans in the JSON; the printed table shows them too.
    """
    checks: dict[str, bool] = {}
    direct, proxy = results.get("direct"), results.get("proxy")
    if direct:
        checks["direct_reproduces_1040"] = direct["failures_by_cause"].get("mysql-1040", 0) > 0
    if proxy:
        checks["proxy_zero_failures"] = proxy["failed"] == 0
        peak = max(proxy["peak_db_connections_sampled"] or 0, proxy.get("peak_proxy_backend_connections") or 0)
        checks["proxy_db_connections_within_pool_cap"] = peak <= proxy["pool_cap"]
        in_load = max(
            proxy["peak_db_connections_sampled_in_load"] or 0, proxy.get("peak_proxy_backend_connections") or 0
        )
        checks["proxy_db_connections_at_most_10"] = in_load <= PROXY_DB_CONNECTIONS_TARGET
    if direct and proxy and direct["successful_rps"]:
        checks["proxy_throughput_at_least_80pct_of_direct_successful"] = (
            proxy["successful_rps"] >= 0.8 * direct["successful_rps"]
        )
        checks["proxy_throughput_at_least_110pct_of_direct"] = proxy["successful_rps"] >= 1.1 * direct["successful_rps"]
    checks["whole_comparison_under_2_minutes"] = total_s < 120
    return checks


def run(stack: deployed.DeployedStack, config: ExperimentConfig, log=print) -> dict[str, Any]:
    """Run every configured path and write the JSON and PNG; returns the JSON document."""
    out_dir = Path(config.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="experiment-") as tmp:
        for path in config.paths:
            workdir = Path(tmp) / path
            workdir.mkdir()
            log(f"[{path}] {config.requests} requests from {config.users} users ...")
            results[path] = run_path(path, stack, config, workdir, log)
    total = time.perf_counter() - started
    document = {
        "config": {
            "requests": config.requests,
            "users": config.users,
            "db_max_connections": config.db_max_connections,
            "settings_source": stack.source,
            "pool": {
                "max_connections_percent": stack.pool.max_connections_percent,
                "max_idle_connections_percent": stack.pool.max_idle_connections_percent,
                "connection_borrow_timeout": stack.pool.connection_borrow_timeout,
            },
            "throttling": {
                "used": {"burst": EXPERIMENT_THROTTLING.burst_limit, "rate": EXPERIMENT_THROTTLING.rate_limit},
                "deployed": {
                    "burst": stack.throttling.burst_limit,
                    "rate": stack.throttling.rate_limit,
                    "set_by_stage": stack.throttling.from_stage,
                },
            },
        },
        "total_s": round(total, 1),
        "results": results,
        "checks": evaluate(results, total),
    }
    (out_dir / "experiment.json").write_text(json.dumps(document, indent=1))
    plot(results, out_dir / "experiment.png")
    return document


def configure(parser: argparse.ArgumentParser) -> None:
    """Options of `python -m local experiment`."""
    add_settings_arguments(parser)
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--out", default=str(REPO_ROOT / "results"), help="output directory (default: results/)")
    parser.add_argument("--only", choices=PATHS, help="run only one path")


def run_cli(args: argparse.Namespace) -> int:
    """`python -m local experiment`: both paths, the table, the checks; exit 1 if a check fails."""
    try:
        stack = deployed.load(args.stack, settings_from_synth=args.settings_from_synth)
        config = ExperimentConfig(
            requests=args.requests,
            users=args.users,
            db_max_connections=args.max_connections,
            max_concurrency=args.max_concurrency,
            out_dir=args.out,
            paths=(args.only,) if args.only else PATHS,
        )
    except (deployed.DeployedStateError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    deployed_limits = stack.throttling
    print(
        f"API throttling for this run: burst {EXPERIMENT_THROTTLING.burst_limit}, rate "
        f"{EXPERIMENT_THROTTLING.rate_limit:g}/s (deployed $default stage: burst {deployed_limits.burst_limit}, "
        f"rate {deployed_limits.rate_limit:g}/s{'' if deployed_limits.from_stage else ', none set: account quota'})",
        flush=True,
    )
    document = run(stack, config, log=lambda line: print(line, flush=True))
    print()
    print(format_table(document["results"]))
    print()
    for name, passed in document["checks"].items():
        print(f"{'PASS' if passed else 'FAIL'}  {name}")
    print(f"total {document['total_s']} s; wrote {Path(args.out) / 'experiment.json'} and experiment.png")
    return 0 if all(document["checks"].values()) else 1
