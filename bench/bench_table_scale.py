"""Per-request latency of the handler at 0, 1,000,000 and 10,000,000 stored rows (private MariaDB, loopback).

Run: .venv/bin/python bench/bench_table_scale.py [--sizes 0,1000000,10000000] [--requests 200] [--route /]
                                                 [--against CHECKOUT]

The migrator creates the tables and the application user (as a deploy does); the request function runs as that
user, each "container" in a process of its own that imports ``handler.app`` and keeps its connection. Each size is
reached by filling the table SQL-side (MariaDB's sequence engine, ``seq_1_to_N``, in chunks of 1,000,000 rows,
each chunk in one transaction with its counter increment, so the count stays exact). Then ``--requests`` GETs of
``--route`` are timed in the container on the filled table, interleaved in rounds of 5 with a container whose
table stays empty (for ``GET /times``, which stores nothing, both tables start with a full answer's 100 rows), so
that load from other processes on a shared machine slows both alike; the median and p95 of each and the ratio of
the medians are printed.

``--against CHECKOUT`` adds a third container running another release's handler (e.g. a ``git worktree add`` of
the previous release) on its own table filled the same way, in the same rounds, on the same server: a before/after
comparison that the machine's load cannot skew. Releases before the migrator ran as the schema owner and migrated
on first use, so that container logs in as the server's schema owner. Filling 10M rows takes minutes on two cores.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from handler.app_contract import RESPONSE_LIMIT_DEFAULT, ROUTES  # noqa: E402
from handler.app_db import Deadline  # noqa: E402
from handler.app_settings import MigratorSettings, Settings  # noqa: E402
from handler.migrator import AppCredentials  # noqa: E402
from handler.migrator import run as run_migrator  # noqa: E402
from local.data_plane.mariadb import MariaDBConfig, MariaDBServer, mariadbd_available  # noqa: E402

CHUNK = 1_000_000
PER_ROUND = 5
SECRET_ARN = "arn:aws:secretsmanager:ap-northeast-1:123456789012:secret:bench-app-user-AbCdEf"
# One container: imports handler.app once, then times each batch of GETs it is asked for (wall ms per request).
CONTAINER = r"""
import json, sys, time, uuid, importlib
app = importlib.import_module("handler.app")
class Context:
    def __init__(self):
        self.aws_request_id = str(uuid.uuid4())
        self._end = time.monotonic() + 10.0
    def get_remaining_time_in_millis(self):
        return int((self._end - time.monotonic()) * 1000)
event = {"version": "2.0", "rawPath": sys.argv[1], "requestContext": {"http": {"method": "GET", "path": sys.argv[1]}}}
for line in sys.stdin:
    samples = []
    for _ in range(int(line)):
        started = time.perf_counter()
        response = app.lambda_handler(event, Context())
        samples.append((time.perf_counter() - started) * 1000)
        if response["statusCode"] != 200:
            raise SystemExit(f"GET {sys.argv[1]} answered {response}")
    print(json.dumps(samples), flush=True)
"""


class Container:
    """A warm execution environment of one handler release, in a process of its own."""

    def __init__(self, checkout: Path, env: dict[str, str], route: str) -> None:
        python = checkout / ".venv" / "bin" / "python"
        self._process = subprocess.Popen(
            [str(python if python.exists() else sys.executable), "-c", CONTAINER, route],
            cwd=checkout,
            env={**os.environ, **env, "PYTHONPATH": str(checkout), "LOG_LEVEL": "WARNING"},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def get(self, requests: int) -> list[float]:
        assert self._process.stdin is not None and self._process.stdout is not None
        self._process.stdin.write(f"{requests}\n")
        self._process.stdin.flush()
        line = self._process.stdout.readline()
        if not line:
            raise SystemExit(f"a container exited (code {self._process.wait()})")
        return json.loads(line)

    def close(self) -> None:
        if self._process.stdin is not None:
            self._process.stdin.close()
        self._process.wait(10)


def create_master(db: MariaDBServer, password: str) -> None:
    """A schema owner with RDS's master privileges that matter here (no SUPER), as the migrator logs in."""
    with db.admin_connect() as admin:
        cursor = admin.cursor()
        cursor.execute("CREATE USER 'bench_master'@'%' IDENTIFIED BY %s", (password,))
        cursor.execute(
            "GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, INDEX, ALTER, EXECUTE, CREATE ROUTINE, ALTER ROUTINE, "
            "CREATE USER, RELOAD, PROCESS ON *.* TO 'bench_master'@'%' WITH GRANT OPTION"
        )


def migrate(db: MariaDBServer, table: str, master_password: str, app_password: str) -> str:
    """The deploy's migrator, creating the table's application user (one per table, as one per stack: the migrator
    revokes whatever its user has beyond its own table); returns the user's name."""
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


def fill(db: MariaDBServer, table: str, rows: int) -> float:
    """Add ``rows`` rows SQL-side, each chunk with its counter increment in the same transaction."""
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
            cursor.execute("START TRANSACTION")
            cursor.execute(
                f"INSERT INTO `{table}` (created_at, request_id) "
                f"SELECT TIMESTAMP'2020-01-01 00:00:00' + INTERVAL (seq + {base}) SECOND, "
                f"CONCAT('fill-', LPAD(seq + {base}, 10, '0')) FROM seq_1_to_{size}"
            )
            cursor.execute(f"UPDATE `{table}_count` SET n = n + %s WHERE shard = 0", (size,))
            cursor.execute("COMMIT")
            done += size
    return time.perf_counter() - started


def row_count(db: MariaDBServer, table: str) -> tuple[int, int]:
    with db.admin_connect(database=db.database) as admin:
        cursor = admin.cursor()
        cursor.execute(f"SELECT (SELECT COUNT(*) FROM `{table}`), (SELECT COALESCE(SUM(n), 0) FROM `{table}_count`)")
        rows, counted = cursor.fetchone()
    return int(rows), int(counted)


def describe(samples: list[float]) -> str:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
    return f"median {statistics.median(samples):5.2f} ms  p95 {p95:6.2f} ms  (n={len(samples)})"


def run(args: argparse.Namespace) -> None:
    sizes = sorted({int(size) for size in args.sizes.split(",")})
    config = MariaDBConfig(
        max_connections=20,
        extra_args=("--innodb-buffer-pool-size=1G", "--innodb-log-file-size=512M"),
        startup_timeout=120,
    )
    with MariaDBServer(config) as db:
        master_password, app_password = secrets.token_hex(12), secrets.token_hex(12)
        create_master(db, master_password)
        base = {"DB_HOST": db.host, "DB_PORT": str(db.port), "DB_NAME": db.database, "DB_AUTH": "password"}
        containers: dict[str, tuple[Container, str | None]] = {}  # label -> (container, the table that grows)
        for label, table in (("empty", "access_times_empty"), ("this", "access_times")):
            user = migrate(db, table, master_password, app_password)
            if args.route == "/times":  # it stores nothing: give both a full answer, so only the table size differs
                fill(db, table, RESPONSE_LIMIT_DEFAULT)
            env = {**base, "DB_USER": user, "DB_PASSWORD": app_password, "DB_TABLE": table}
            containers[label] = (Container(REPO_ROOT, env, args.route), None if label == "empty" else table)
        if args.against:
            owner = {"DB_USER": db.app_user, "DB_PASSWORD": db.app_password, "DB_TABLE": "access_times_against"}
            containers["against"] = (Container(Path(args.against), {**base, **owner}, "/"), "access_times_against")
        try:
            for container, _ in containers.values():
                container.get(20)  # warm: connection, schema check (an older release creates its tables here)
            print(f"GET {args.route}: {args.requests} requests per container, in interleaved rounds of {PER_ROUND}")
            for size in sizes:
                for label, (_, table) in containers.items():
                    present = row_count(db, table)[0] if table else 0
                    if table and size > present:
                        seconds = fill(db, table, size - present)
                        print(f"[{label}] filled {size - present:,} rows in {seconds:.0f} s", flush=True)
                samples = measure_rounds([container for container, _ in containers.values()], args.requests)
                report(db, size, dict(zip(containers, samples, strict=True)), containers)
        finally:
            for container, _ in containers.values():
                container.close()


def measure_rounds(containers: list[Container], requests: int) -> list[list[float]]:
    """Every container in turn, a few requests each, the order rotating each round."""
    samples: list[list[float]] = [[] for _ in containers]
    for round_index in range(max(1, requests // PER_ROUND)):
        order = list(range(len(containers)))
        shift = round_index % len(order)
        for index in order[shift:] + order[:shift]:
            samples[index] += containers[index].get(PER_ROUND)
    return samples


def report(db: MariaDBServer, size: int, samples: dict[str, list[float]], containers: dict) -> None:
    empty = statistics.median(samples["empty"])
    for label, values in samples.items():
        table = containers[label][1]
        rows, counted = row_count(db, table) if table else (0, 0)
        exact = "" if not table else f"  table {rows:,} rows, counter {'exact' if counted == rows else 'OFF'}"
        ratio = statistics.median(values) / empty
        print(f"{size:>10,} rows  {label:7}: {describe(values)}  vs empty {ratio:4.2f}x{exact}", flush=True)
    if "against" in samples:
        ratio = statistics.median(samples["this"]) / statistics.median(samples["against"])
        print(f"{size:>10,} rows  this / against median: {ratio:.2f}x", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="0,1000000,10000000")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--route", default="/", choices=sorted(ROUTES), help="the route this release's handler serves")
    parser.add_argument("--against", help="a checkout of another release to compare with, in the same rounds (GET /)")
    args = parser.parse_args()
    if not mariadbd_available():
        print("skipped: mariadbd not installed")
        return
    run(args)


if __name__ == "__main__":
    main()
