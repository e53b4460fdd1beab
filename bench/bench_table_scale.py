"""Per-request latency of the handler at 0, 1,000,000 and 10,000,000 stored rows (private MariaDB, loopback).

Run: .venv/bin/python bench/bench_table_scale.py [--sizes 0,1000000,10000000] [--requests 200] [--route /]

The migrator creates the tables and the application user (as a deploy does); the request function runs as that
user. Each size is reached by filling the table SQL-side (MariaDB's sequence engine, ``seq_1_to_N``, in chunks of
1,000,000 rows, each chunk in one transaction with its counter increment, so the count stays exact), then
``--requests`` GETs of ``--route`` go through the entry point ``handler.app.lambda_handler`` on one warm
container, interleaved in rounds with as many on a second container whose table stays empty (other processes on a
shared machine then slow both alike), and the median and p95 of both and the ratio of the medians are printed.
For before/after figures, run the previous release's copy of this script from a worktree of that release,
alternating with this one on the same machine. Filling 10M rows takes a minute or two on two cores.
"""

from __future__ import annotations

import argparse
import importlib
import os
import secrets
import statistics
import sys
import time
import uuid
from pathlib import Path
from types import ModuleType

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from handler.app_contract import ROUTES  # noqa: E402
from handler.app_db import Deadline  # noqa: E402
from handler.app_settings import MigratorSettings, Settings  # noqa: E402
from handler.migrator import AppCredentials  # noqa: E402
from handler.migrator import run as run_migrator  # noqa: E402
from local.data_plane.mariadb import MariaDBConfig, MariaDBServer, mariadbd_available  # noqa: E402

CHUNK = 1_000_000
SECRET_ARN = "arn:aws:secretsmanager:ap-northeast-1:123456789012:secret:bench-app-user-AbCdEf"
EVENT = {"version": "2.0", "rawPath": "/", "requestContext": {"http": {"method": "GET", "path": "/"}}}


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


def measure(app: ModuleType, requests: int, warm: int = 20, route: str = "/") -> list[float]:
    event = {**EVENT, "rawPath": route}
    for _ in range(warm):  # warm: connection, schema check, buffer pool
        response = app.lambda_handler(event, Context())
        assert response["statusCode"] == 200, response
    samples = []
    for _ in range(requests):
        context = Context()
        started = time.perf_counter()
        response = app.lambda_handler(event, context)
        samples.append((time.perf_counter() - started) * 1000)
        assert response["statusCode"] == 200, response
    return samples


def migrate(db: MariaDBServer, table: str, master_password: str, app_password: str) -> str:
    """The deploy's migrator, logged in as a schema owner, creating the table's application user (one per table, as
    one per stack: the migrator revokes whatever its user has beyond its own table)."""
    master = Settings(
        host=db.host,
        port=db.port,
        database=db.database,
        user="bench_master",
        auth="password",
        password=master_password,
        table=table,
    )
    app_user = f"{table}_user"
    secret = AppCredentials(app_user, app_password)
    run_migrator(MigratorSettings(master, app_user, SECRET_ARN), Deadline.none(), secret_reader=lambda _arn: secret)
    return app_user


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


def measure_pair(baseline: ModuleType, filled: ModuleType, requests: int, route: str) -> tuple[list, list]:
    """Interleave the empty-table baseline and the filled table in rounds, so that load from other processes
    on the machine hits both alike; returns (baseline samples, filled samples)."""
    per_round = 5
    rounds = max(1, requests // per_round)
    base: list[float] = []
    full: list[float] = []
    for app in (baseline, filled):
        measure(app, 0, route=route)  # warm-up requests only
    for _ in range(rounds):
        base += measure(baseline, per_round, warm=0, route=route)
        full += measure(filled, per_round, warm=0, route=route)
    return base, full


def create_master(db: MariaDBServer, password: str) -> None:
    """A schema owner with RDS's master privileges (no SUPER), as the migrator logs in in the cloud."""
    with db.admin_connect() as admin:
        cursor = admin.cursor()
        cursor.execute("CREATE USER 'bench_master'@'%' IDENTIFIED BY %s", (password,))
        cursor.execute(
            "GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, INDEX, ALTER, EXECUTE, CREATE ROUTINE, ALTER ROUTINE, "
            "CREATE USER, RELOAD, PROCESS ON *.* TO 'bench_master'@'%' WITH GRANT OPTION"
        )


def run(args: argparse.Namespace) -> None:
    sizes = sorted({int(size) for size in args.sizes.split(",")})
    if args.route not in ROUTES:
        raise SystemExit(f"--route {args.route!r}: allowed one of {sorted(ROUTES)}")
    config = MariaDBConfig(
        max_connections=20,
        extra_args=("--innodb-buffer-pool-size=1G", "--innodb-log-file-size=512M"),
        startup_timeout=120,
    )
    with MariaDBServer(config) as db:
        master_password, app_password = secrets.token_hex(12), secrets.token_hex(12)
        create_master(db, master_password)
        env = {
            "DB_HOST": db.host,
            "DB_PORT": str(db.port),
            "DB_NAME": db.database,
            "DB_PASSWORD": app_password,
            "DB_AUTH": "password",
            "LOG_LEVEL": "WARNING",
        }
        baseline, filled = (
            load_app(
                {**env, "DB_TABLE": table, "DB_USER": migrate(db, table, master_password, app_password)}, "handler.app"
            )
            for table in ("access_times_empty", "access_times")
        )
        print(f"each line: GET {args.route}, the filled table vs an empty one, {args.requests} each, interleaved")
        for size in sizes:
            present, _ = row_count(db, "access_times")
            if size > present:
                seconds = fill(db, "access_times", size - present, counted=True)
                print(f"filled {size - present:,} rows in {seconds:.1f} s", flush=True)
            base, full = measure_pair(baseline, filled, args.requests, args.route)
            rows, counted = row_count(db, "access_times")
            ratio = statistics.median(full) / statistics.median(base)
            print(
                f"{size:>10,} rows: {describe(full)}  | empty: {describe(base)}  | median ratio {ratio:.2f}x  "
                f"(table {rows:,} rows, counter {'exact' if counted == rows else 'OFF'})",
                flush=True,
            )
        baseline.STORE.close()
        filled.STORE.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="0,1000000,10000000")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--route", default="/", help=f"the route to measure, one of {sorted(ROUTES)}")
    args = parser.parse_args()
    if not mariadbd_available():
        print("skipped: mariadbd not installed")
        return
    run(args)


if __name__ == "__main__":
    main()
