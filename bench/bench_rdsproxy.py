"""Benchmark: is the RDS Proxy stand-in fast enough not to be the experiment's bottleneck?

Runs the same workload directly against a private MariaDB and through the proxy (in its own
process, as the data plane runs it) and prints statements/s, per-statement latency and the
proxy's CPU time per statement (from /proc, so client-side GIL contention does not hide it).

Workloads, each with --threads client threads (pure-Python mysql-connector):
  persistent  one connection per thread, alternating SELECT of a row / INSERT
  per-request connect, 3 statements (SELECT, INSERT, COMMIT), close -- the Lambda pattern
  auth        connect + SELECT + close through the proxy in password mode (mysql_native_password, no TLS)
              and as deployed (TLS with certificate and host-name verification, a fresh boto3-signed IAM token
              per connection sent with mysql_clear_password): p50/p95 of connect+query, connections/s and the
              proxy's CPU per connection (--auth-requests per mode; 0 skips it)

    .venv/bin/python bench/bench_rdsproxy.py [--threads 50] [--statements 100] [--requests 1000] [--auth-requests 1000]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import mysql.connector

from local.data_plane.mariadb import MariaDBConfig, MariaDBServer
from local.data_plane.rdsproxy import ProxyConfig, ProxyProcess

CLIENT_USER, CLIENT_PASSWORD = "bench", "bench-pw"


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(connect, threads: int, jobs: int, job) -> tuple[float, list[float]]:
    """Run ``jobs`` calls of job(connect) on ``threads`` threads; (wall seconds, latencies)."""
    latencies: list[float] = []
    lock = threading.Lock()
    counter = iter(range(jobs))

    def worker():
        mine = []
        while True:
            with lock:
                if next(counter, None) is None:
                    break
            mine.extend(job(connect))
        with lock:
            latencies.extend(mine)

    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        for future in [pool.submit(worker) for _ in range(threads)]:
            future.result()
    return time.perf_counter() - started, latencies


def timed(cursor, sql, params=()):
    started = time.perf_counter()
    cursor.execute(sql, params)
    if cursor.with_rows:
        cursor.fetchall()
    return time.perf_counter() - started


def persistent_job(statements: int, opened: list):
    local = threading.local()

    def job(connect):
        if not hasattr(local, "conn"):
            local.conn = connect()
            opened.append(local.conn)
        cur = local.conn.cursor()
        out = []
        for i in range(statements):
            if i % 2:
                out.append(timed(cur, "INSERT INTO hits (who) VALUES ('p')"))
            else:
                out.append(timed(cur, "SELECT id, name, price FROM menus WHERE id = %s", (i % 9 + 1,)))
        cur.close()
        return out

    return job


def per_request_job(connect):
    with contextlib.closing(connect()) as conn:
        cur = conn.cursor()
        return [
            timed(cur, "SELECT * FROM menus"),
            timed(cur, "INSERT INTO hits (who) VALUES ('r')"),
            timed(cur, "COMMIT"),
        ]


def report(name, path, wall, latencies, cpu=None):
    latencies.sort()
    n = len(latencies)
    line = (
        f"{name:11s} {path:6s} {n:6d} stmts {wall:6.2f} s {n / wall:8.0f} stmt/s  latency "
        f"mean {statistics.fmean(latencies) * 1e3:6.2f} ms  p50 {latencies[n // 2] * 1e3:6.2f}  "
        f"p99 {latencies[int(n * 0.99)] * 1e3:6.2f}"
    )
    if cpu is not None:
        line += f"  proxy CPU {cpu / n * 1e6:5.0f} us/stmt"
    print(line, flush=True)
    return n / wall


def run_auth_modes(db, base: ProxyConfig, threads: int, requests: int) -> None:
    """Connect-per-request (connect, SELECT 1, close) in password mode and with TLS + IAM, through the proxy."""
    from local.data_plane.auth.authenticator import IamAuthenticator, IamAuthSettings, RuntimeCredentials
    from local.data_plane.auth.credentials import IssuerSettings
    from local.data_plane.auth.local_ca import LocalCaSettings
    from local.data_plane.auth.resolver_shim import AddressOverride, install
    from tests.auth_support import DB_USER, ENDPOINT, REGION, ROLE_ARN, state

    with tempfile.TemporaryDirectory(prefix="bench-auth-") as tmp:
        state_file = Path(tmp, "terraform.tfstate")
        state_file.write_text(json.dumps(state()))
        ca, key = Path(tmp, "ca"), Path(tmp, "issuer.key")
        auth = IamAuthenticator(
            IamAuthSettings.from_state(state(), ca=LocalCaSettings(directory=ca), issuer=IssuerSettings(key_path=key))
        )
        os.environ.update(RuntimeCredentials(auth.issuer, ROLE_ARN, "sms-local-api").environment())
        import boto3

        signer = boto3.client("rds", region_name=REGION)
        iam_config = dataclasses.replace(
            base, require_tls=True, iam_state_file=str(state_file), ca_dir=str(ca), issuer_key_path=str(key)
        )
        with ProxyProcess(base) as plain, ProxyProcess(iam_config) as secured:
            install([AddressOverride(ENDPOINT, 3306, secured.port)])  # the deployed name, as in a container

            def password_connect():
                return mysql.connector.connect(
                    host=plain.host,
                    port=plain.port,
                    user=CLIENT_USER,
                    password=CLIENT_PASSWORD,
                    database=db.database,
                    use_pure=True,
                    connection_timeout=30,
                )

            def iam_connect():  # what the handler does for each new connection
                return mysql.connector.connect(
                    host=ENDPOINT,
                    port=3306,
                    user=DB_USER,
                    password=signer.generate_db_auth_token(ENDPOINT, 3306, DB_USER, REGION),
                    database=db.database,
                    use_pure=True,
                    connection_timeout=30,
                    auth_plugin="mysql_clear_password",
                    ssl_ca=str(auth.ca_bundle_path),
                    ssl_verify_cert=True,
                    ssl_verify_identity=True,
                )

            def job(connect):
                started = time.perf_counter()
                with contextlib.closing(connect()) as conn:
                    cur = conn.cursor()
                    cur.execute("SELECT 1")
                    cur.fetchall()
                return [time.perf_counter() - started]

            rates = {}
            for name, proxy, connect in (("password", plain, password_connect), ("tls+iam", secured, iam_connect)):
                run(connect, threads, min(threads, 20), job)  # warm-up: CA certs loaded, boto3 signer built
                before = cpu_seconds(proxy.pid)
                wall, latencies = run(connect, threads, requests, job)
                cpu = cpu_seconds(proxy.pid) - before
                latencies.sort()
                n = len(latencies)
                rates[name] = n / wall
                print(
                    f"auth {name:9s} {n:6d} connect+query {wall:6.2f} s {n / wall:7.0f} conn/s  latency "
                    f"p50 {latencies[n // 2] * 1e3:6.2f} ms  p95 {latencies[int(n * 0.95)] * 1e3:6.2f} ms  "
                    f"proxy CPU {cpu / n * 1e6:5.0f} us/conn",
                    flush=True,
                )
            stats = secured.stats()
            print(
                f"auth tls+iam/password throughput: {rates['tls+iam'] / rates['password']:.0%}; "
                f"tls clients {stats['tls_clients']}, auth failures {stats['auth_failures']}",
                flush=True,
            )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=50)
    parser.add_argument("--statements", type=int, default=100, help="per thread, persistent workload")
    parser.add_argument("--requests", type=int, default=1000, help="per-request workload, total")
    parser.add_argument("--auth-requests", type=int, default=1000, help="per auth mode (0 skips the auth workload)")
    parser.add_argument("--event-loop", default="auto", choices=("auto", "asyncio", "uvloop"))
    args = parser.parse_args()
    if not (1 <= args.threads <= 200 and 1 <= args.statements <= 10000 and 1 <= args.requests <= 100000):
        parser.error("threads 1..200, statements 1..10000, requests 1..100000")
    if not 0 <= args.auth_requests <= 20000:
        parser.error("auth-requests 0..20000")

    # room for the direct clients plus the proxy's pool (it keeps idle backends open)
    with MariaDBServer(MariaDBConfig(max_connections=2 * args.threads + 40)) as db:
        with contextlib.closing(db.app_connect()) as conn:
            cur = conn.cursor()
            cur.execute("CREATE TABLE menus (id INT PRIMARY KEY, name VARCHAR(50), price INT) DEFAULT CHARSET=utf8mb4")
            cur.executemany(
                "INSERT INTO menus VALUES (%s, %s, %s)", [(i, f"menu {i} 定食", 300 + 50 * i) for i in range(1, 10)]
            )
            cur.execute("CREATE TABLE hits (id INT AUTO_INCREMENT PRIMARY KEY, who CHAR(1))")
        config = ProxyConfig(
            backend_host=db.host,
            backend_port=db.port,
            backend_user=db.app_user,
            backend_password=db.app_password,
            client_user=CLIENT_USER,
            client_password=CLIENT_PASSWORD,
            db_max_connections=args.threads + 20,
            max_connections_percent=70,
            max_idle_connections_percent=70,
            event_loop=args.event_loop,
            stats_port=0,
        )
        with ProxyProcess(config) as proxy:
            print(
                f"proxy pid {proxy.pid}, pool cap {config.pool_cap}, {args.threads} client threads, "
                f"event loop {proxy.stats()['event_loop']}",
                flush=True,
            )

            def direct(autocommit):
                return lambda: db.app_connect(autocommit=autocommit)

            def proxied(autocommit):
                return lambda: mysql.connector.connect(
                    host=proxy.host,
                    port=proxy.port,
                    user=CLIENT_USER,
                    password=CLIENT_PASSWORD,
                    database=db.database,
                    use_pure=True,
                    connection_timeout=30,
                    autocommit=autocommit,
                )

            # persistent connections autocommit (else each would hold a backend in a transaction);
            # per-request ones commit explicitly, like the handler
            opened: list = []
            for name, jobs, job, autocommit in (
                ("persistent", args.threads, persistent_job(args.statements, opened), True),
                ("per-request", args.requests, per_request_job, False),
            ):
                rates = {}
                for path, connect in (("direct", direct(autocommit)), ("proxy", proxied(autocommit))):
                    before = cpu_seconds(proxy.pid)
                    wall, latencies = run(connect, args.threads, jobs, job)
                    while opened:
                        opened.pop().close()
                    cpu = cpu_seconds(proxy.pid) - before if path == "proxy" else None
                    rates[path] = report(name, path, wall, latencies, cpu)
                print(f"{name:11s} proxy/direct throughput: {rates['proxy'] / rates['direct']:.0%}", flush=True)
            stats = proxy.stats()
            print(
                f"proxy stats: backend peak {stats['backend_connections_peak']} (cap {stats['pool_cap']}), "
                f"client peak {stats['client_connections_peak']}, statements {stats['statements']}, "
                f"borrow waits {stats['borrow_waits']}, pinned {stats['pinned_sessions_total']}"
            )
        if args.auth_requests:
            run_auth_modes(db, config, args.threads, args.auth_requests)
    return 0


if __name__ == "__main__":
    sys.exit(main())
