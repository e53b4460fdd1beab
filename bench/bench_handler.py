"""Handler numbers: cold import time (fresh interpreter each run), deployment zip size, warm request latency.

Run: .venv/bin/python bench/bench_handler.py [--runs 7] [--requests 200]

"cold import (zip)" extracts the deployment zip and imports ``handler.app`` (and ``handler.migrator``) from it with
``-B`` and without site-packages, i.e. no cached bytecode, like Lambda's read-only /var/task (target < 300 ms).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from handler.app_db import Deadline  # noqa: E402
from handler.app_settings import MigratorSettings, Settings  # noqa: E402
from handler.migrator import AppCredentials, run  # noqa: E402
from modules.packaging import build_handler_zip  # noqa: E402

SECRET_ARN = "arn:aws:secretsmanager:ap-northeast-1:123456789012:secret:bench-app-user-AbCdEf"

PASSWORD_ENV = {"DB_HOST": "127.0.0.1", "DB_NAME": "app", "DB_USER": "app", "DB_AUTH": "password", "DB_PASSWORD": "x"}
IMPORT_PROBE = "import time; t = time.perf_counter(); import {module}; print((time.perf_counter() - t) * 1000)"


def cold_import_ms(module: str, cwd: Path, runs: int, isolated: bool) -> list[float]:
    env = {**os.environ, **PASSWORD_ENV}
    flags = ["-I", "-S", "-B"] if isolated else []
    code = IMPORT_PROBE.format(module=module)
    if isolated:  # -I drops the cwd from sys.path; add the task root explicitly
        code = f"import sys; sys.path.insert(0, {str(cwd)!r}); " + code
    samples = []
    for _ in range(runs):
        command = [sys.executable, *flags, "-c", code]
        result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=60, check=True)
        samples.append(float(result.stdout.strip()))
    return samples


def warm_latency_ms(requests: int) -> list[float] | None:
    from local.data_plane.mariadb import MariaDBServer, mariadbd_available

    if not mariadbd_available():
        return None
    with MariaDBServer() as db:
        # The deploy's migrator, as the server's schema owner (ALL on the schema), creating the application user.
        master = Settings(
            host=db.host,
            port=db.port,
            database=db.database,
            user=db.app_user,
            auth="password",
            password=db.app_password,
        )
        with db.admin_connect() as admin:  # managing users needs what RDS's master has: CREATE USER, SELECT on mysql
            admin.cursor().execute(f"GRANT CREATE USER, SELECT ON *.* TO '{db.app_user}'@'%' WITH GRANT OPTION")
        secret = AppCredentials("bench_app", "bench-app-password")
        run(MigratorSettings(master, "bench_app", SECRET_ARN), Deadline.none(), secret_reader=lambda _arn: secret)
        os.environ.update(
            DB_HOST=db.host,
            DB_PORT=str(db.port),
            DB_NAME=db.database,
            DB_USER=secret.username,
            DB_PASSWORD=secret.password,
            DB_AUTH="password",
            LOG_LEVEL="WARNING",
        )
        from handler import app

        event = {"rawPath": "/", "requestContext": {"http": {"method": "GET"}}}
        app.lambda_handler(event, None)  # cold: connect + the schema version check
        samples = []
        for _ in range(requests):
            started = time.perf_counter()
            response = app.lambda_handler(event, None)
            samples.append((time.perf_counter() - started) * 1000)
            assert response["statusCode"] == 200, response
        app.STORE.close()
    return samples


def mariadb_start_stop_ms(starts: int) -> list[tuple[float, float]] | None:
    """(start, stop) times; the first start runs mariadb-install-db, later ones copy its template."""
    from local.data_plane.mariadb import MariaDBServer, mariadbd_available

    if not mariadbd_available():
        return None
    timings = []
    for _ in range(starts):
        server = MariaDBServer()
        started = time.perf_counter()
        server.start()
        ready = time.perf_counter()
        server.stop()
        timings.append(((ready - started) * 1000, (time.perf_counter() - ready) * 1000))
    return timings


def describe(samples: list[float]) -> str:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
    median = statistics.median(samples)
    return f"median {median:7.1f} ms  min {ordered[0]:7.1f} ms  p95 {p95:7.1f} ms  (n={len(samples)})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        info = build_handler_zip(REPO_ROOT / "handler", Path(tmp) / "handler.zip")
        build_ms = (time.perf_counter() - started) * 1000
        task_root = Path(tmp) / "task"
        with zipfile.ZipFile(info.path) as archive:
            archive.extractall(task_root)
            unzipped = sum(entry.file_size for entry in archive.infolist())
        print(
            f"zip: {info.size_bytes / 1024:.0f} KiB ({unzipped / 1024:.0f} KiB unzipped), "
            f"{info.file_count} files, built in {build_ms:.0f} ms, sha256 {info.sha256_base64}"
        )
        probes = [
            ("cold import handler.app (repo, venv bytecode)     ", "handler.app", REPO_ROOT, False),
            ("cold import handler.app (extracted zip, no bytecode)", "handler.app", task_root, True),
            ("cold import handler.migrator (zip, no bytecode)     ", "handler.migrator", task_root, True),
            ("cold import mysql.connector alone (zip)             ", "mysql.connector", task_root, True),
        ]
        for label, module, cwd, isolated in probes:
            print(f"{label}: {describe(cold_import_ms(module, cwd, args.runs, isolated))}")

    starts = mariadb_start_stop_ms(4)
    if starts:
        first, *later = starts
        print(
            f"MariaDB start: first {first[0]:.0f} ms (install-db), later median "
            f"{statistics.median(t[0] for t in later):.0f} ms (template copy); "
            f"stop median {statistics.median(t[1] for t in starts):.0f} ms"
        )
    latency = warm_latency_ms(args.requests)
    if latency is None:
        print("warm GET latency: skipped (mariadbd not installed)")
    else:
        print(f"warm GET latency vs private MariaDB (one autocommitted CALL): {describe(latency)}")
    print(json.dumps({"zip_bytes": info.size_bytes, "zip_files": info.file_count}))


if __name__ == "__main__":
    main()
