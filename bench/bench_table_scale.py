"""Per-request latency of the handler at 0, 1,000,000 and 10,000,000 stored rows (private MariaDB, loopback).

Run: .venv/bin/python bench/bench_table_scale.py [--sizes 0,1000000,10000000] [--requests 200] [--old]

Each size is reached by filling the table SQL-side (MariaDB's sequence engine, ``seq_1_to_N``, in chunks of
1,000,000 rows, each chunk in one transaction with its counter increment, so the count stays exact), then
``--requests`` GETs go through the entry point ``handler.app.lambda_handler`` on one warm container, interleaved
in rounds with as many on a second container whose table stays empty (other processes on a shared machine then
slow both alike), and the median and p95 of both and the ratio of the medians are printed.
``--old`` measures the previous release's store (``git show <rev>:handler/...``,
total by ``SELECT COUNT(*)``) on its own v1 table filled the same way, for before/after. The run is bounded:
filling 10M rows takes a minute or two on two cores.
"""

from __future__ import annotations

import argparse
import importlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from types import ModuleType

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from local.data_plane.mariadb import MariaDBConfig, MariaDBServer, mariadbd_available  # noqa: E402

CHUNK = 1_000_000
OLD_REVISION = "ac2eb14"  # the last release whose store counted with SELECT COUNT(*)
HANDLER_MODULES = ("app", "app_contract", "app_iam", "app_logging", "app_settings", "app_store")
EVENT = {"version": "2.0", "requestContext": {"http": {"method": "GET", "path": "/"}}}


class Context:
    """The Lambda context the runtime passes: a fresh request id and a 10 s budget per invocation."""

    def __init__(self) -> None:
        self.aws_request_id = str(uuid.uuid4())
        self._end = time.monotonic() + 10.0

    def get_remaining_time_in_millis(self) -> int:
        return int((self._end - time.monotonic()) * 1000)


def load_app(env: dict[str, str], module: str) -> ModuleType:
    os.environ.update(env)
    sys.modules.pop(module, None)
    return importlib.import_module(module)


def measure(app: ModuleType, requests: int, warm: int = 20) -> list[float]:
    for _ in range(warm):  # warm: connection, schema check, buffer pool
        response = app.lambda_handler(EVENT, Context())
        assert response["statusCode"] == 200, response
    samples = []
    for _ in range(requests):
        context = Context()
        started = time.perf_counter()
        response = app.lambda_handler(EVENT, context)
        samples.append((time.perf_counter() - started) * 1000)
        assert response["statusCode"] == 200, response
    return samples


def fill(db: MariaDBServer, table: str, rows: int, counted: bool) -> float:
    """Add ``rows`` rows SQL-side; with ``counted`` each chunk bumps the counter in the same transaction."""
    started = time.perf_counter()
    with db.admin_connect(database=db.database) as admin:
        cursor = admin.cursor()
        cursor.execute(f"SELECT COALESCE(MAX(id), 0) FROM `{table}`")
        (offset,) = cursor.fetchone()
        done = 0
        while done < rows:
            size = min(CHUNK, rows - done)
            base = int(offset) + done
            # Old rows: one second apart, all before the requests the benchmark makes.
            columns, values = "created_at", f"TIMESTAMP'2020-01-01 00:00:00' + INTERVAL (seq + {base}) SECOND"
            if counted:
                columns += ", request_id"
                values += f", CONCAT('fill-', LPAD(seq + {base}, 10, '0'))"
            cursor.execute("START TRANSACTION")
            cursor.execute(f"INSERT INTO `{table}` ({columns}) SELECT {values} FROM seq_1_to_{size}")
            if counted:
                cursor.execute(f"UPDATE `{table}_count` SET n = n + %s WHERE shard = 0", (size,))
            cursor.execute("COMMIT")
            done += size
    return time.perf_counter() - started


def row_count(db: MariaDBServer, table: str) -> tuple[int, int | None]:
    with db.admin_connect(database=db.database) as admin:
        cursor = admin.cursor()
        cursor.execute(f"SELECT COUNT(*) FROM `{table}`")
        (rows,) = cursor.fetchone()
        try:
            cursor.execute(f"SELECT SUM(n) FROM `{table}_count`")
            (counted,) = cursor.fetchone()
        except Exception:  # noqa: BLE001 - the old schema has no counter
            counted = None
    return int(rows), None if counted is None else int(counted)


def describe(samples: list[float]) -> str:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
    return f"median {statistics.median(samples):7.2f} ms  p95 {p95:7.2f} ms  (n={len(samples)})"


def old_handler_dir(tmp: Path, revision: str) -> Path | None:
    """The previous release's handler modules (top-level, as in the zip), or None outside a git checkout."""
    target = tmp / "old_handler"
    target.mkdir()
    for name in HANDLER_MODULES:
        result = subprocess.run(
            ["git", "show", f"{revision}:handler/{name}.py"], cwd=REPO_ROOT, capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            return None
        (target / f"{name}.py").write_text(result.stdout)
    return target


def measure_pair(baseline: ModuleType, filled: ModuleType, requests: int) -> tuple[list, list]:
    """Interleave the empty-table baseline and the filled table in rounds, so that load from other processes
    on the machine hits both alike; returns (baseline samples, filled samples)."""
    per_round = 5
    rounds = max(1, requests // per_round)
    base: list[float] = []
    full: list[float] = []
    for app in (baseline, filled):
        measure(app, 0)  # warm-up requests only
    for _ in range(rounds):
        base += measure(baseline, per_round, warm=0)
        full += measure(filled, per_round, warm=0)
    return base, full


def run(args: argparse.Namespace) -> None:
    sizes = sorted({int(size) for size in args.sizes.split(",")})
    config = MariaDBConfig(
        max_connections=20,
        extra_args=("--innodb-buffer-pool-size=1G", "--innodb-log-file-size=512M"),
        startup_timeout=120,
    )
    with MariaDBServer(config) as db, tempfile.TemporaryDirectory() as tmp:
        env = {
            "DB_HOST": db.host,
            "DB_PORT": str(db.port),
            "DB_NAME": db.database,
            "DB_USER": db.app_user,
            "DB_PASSWORD": db.app_password,
            "DB_AUTH": "password",
            "LOG_LEVEL": "WARNING",
        }
        # label -> (module on the empty table, module on the table that grows, its table name)
        apps: dict[str, tuple[ModuleType, ModuleType, str]] = {
            "new": (
                load_app({**env, "DB_TABLE": "access_times_empty"}, "handler.app"),
                load_app({**env, "DB_TABLE": "access_times"}, "handler.app"),
                "access_times",
            )
        }
        old_dir = old_handler_dir(Path(tmp), args.old_revision) if args.old else None
        if old_dir is not None:
            sys.path.insert(0, str(old_dir))
            apps["old"] = (
                load_app({**env, "DB_TABLE": "access_times_v1_empty"}, "app"),
                load_app({**env, "DB_TABLE": "access_times_v1"}, "app"),
                "access_times_v1",
            )
        elif args.old:
            print("old code: skipped (no git checkout)")
        for baseline, filled, _ in apps.values():  # create each schema (old: CREATE TABLE; new: migrations)
            baseline.lambda_handler(EVENT, Context())
            filled.lambda_handler(EVENT, Context())
        print(f"each line: the filled table vs an empty one, {args.requests} requests each, interleaved")
        for size in sizes:
            for label, (baseline, filled, table) in apps.items():
                present, _ = row_count(db, table)
                if size > present:
                    seconds = fill(db, table, size - present, counted=label == "new")
                    print(f"[{label}] filled {size - present:,} rows in {seconds:.1f} s", flush=True)
                requests = args.requests if label == "new" else args.old_requests
                base, full = measure_pair(baseline, filled, requests)
                rows, counted = row_count(db, table)
                exact = "" if counted is None else f", counter {'exact' if counted == rows else 'OFF'}"
                ratio = statistics.median(full) / statistics.median(base)
                print(
                    f"[{label}] {size:>10,} rows: {describe(full)}  | empty: {describe(base)}  | "
                    f"median ratio {ratio:.2f}x  (table {rows:,} rows{exact})",
                    flush=True,
                )
        for baseline, filled, _ in apps.values():
            baseline.STORE.close()
            filled.STORE.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="0,1000000,10000000")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--old", action="store_true", help="also measure the previous release")
    parser.add_argument("--old-revision", default=OLD_REVISION)
    parser.add_argument("--old-requests", type=int, default=30)
    args = parser.parse_args()
    if not mariadbd_available():
        print("skipped: mariadbd not installed")
        return
    run(args)


if __name__ == "__main__":
    main()
