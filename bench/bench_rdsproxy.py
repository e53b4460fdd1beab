"""Benchmark: is the RDS Proxy stand-in fast and frugal enough not to distort the experiment?

Runs workloads against a private MariaDB (max_connections 65 unless more are needed), each through a fresh stand-in
in its own process, as the data plane runs it, and prints statements/s, latency, the proxy's CPU per statement (from
/proc, so client-side GIL contention does not hide it), and the proxy's view of its DB connections and borrows.

Workloads (``--workloads``, comma-separated), pure-Python mysql-connector client threads:
  persistent   --threads connections kept, alternating SELECT of a row / INSERT (direct and through the proxy)
  per-request  connect, 3 statements (SELECT, INSERT, COMMIT), close -- the old Lambda pattern (both paths)
  short        --users connections kept, each calling a one-statement autocommitted procedure (INSERT + SELECT)
               for --seconds, at full speed or with --think-ms between calls (200 ms gives the reference
               experiment's ~500 requests/s): 65 DB slots, pool cap 45; prints peak and time-weighted mean DB
               connections and borrow wait/hold p50/p95/max
  stalled      50 clients send a 64 MB SELECT and stop reading; then one more client connects and runs SELECT 1:
               how long it waits, how many backends the stalled ones hold, and the proxy's RSS before, at its peak
               and after the stalled clients left

    .venv/bin/python bench/bench_rdsproxy.py [--workloads short,stalled] [--users 100] [--seconds 10]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import statistics
import struct
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import mysql.connector

from local.data_plane.mariadb import MariaDBConfig, MariaDBServer
from local.data_plane.rdsproxy import ProxyConfig, ProxyProcess, StaticAccount
from local.data_plane.rdsproxy.constants import Capability

USER, PASSWORD = "bench", ""  # no password: the stalled clients log in with a hand-made packet
WORKLOADS = ("persistent", "per-request", "short", "stalled")
BIG_SELECT = (
    "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 64) SELECT n, REPEAT('x', 1000000) FROM r"
)


def make_config(db, **fields) -> ProxyConfig:
    """The stand-in in front of ``db`` with the bench user's account: cap 70 % of max_connections as deployed."""
    base = dict(backend_host=db.host, backend_port=db.port, accounts=(StaticAccount(USER, PASSWORD),))
    base.update(db_max_connections=db.config.max_connections, max_connections_percent=70, stats_port=0)
    base.update(fields)
    return ProxyConfig(**base)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def connector(host: str, port: int, database: str, **options):
    return lambda: mysql.connector.connect(
        host=host, port=port, user=USER, password=PASSWORD, database=database, use_pure=True, **options
    )


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


# -- persistent and per-request: direct vs proxy --------------------------------------------------------------
def classic(db, args) -> None:
    def persistent_job(opened):
        local = threading.local()

        def job(connect):
            if not hasattr(local, "conn"):
                local.conn = connect()
                opened.append(local.conn)
            cur = local.conn.cursor()
            out = []
            for i in range(args.statements):
                sql, params = (
                    ("INSERT INTO hits (who) VALUES ('p')", ())
                    if i % 2
                    else ("SELECT id, name, price FROM menus WHERE id = %s", (i % 9 + 1,))
                )
                out.append(timed(cur, sql, params))
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

    with ProxyProcess(make_config(db, max_idle_connections_percent=70)) as proxy:
        print(f"proxy pid {proxy.pid}, {args.threads} client threads, event loop {proxy.stats()['event_loop']}")
        opened: list = []
        for name, jobs, job, autocommit in (
            ("persistent", args.threads, persistent_job(opened), True),
            ("per-request", args.requests, per_request_job, False),
        ):
            if name not in args.workloads:
                continue
            rates = {}
            for path, host, port in (("direct", db.host, db.port), ("proxy", proxy.host, proxy.port)):
                before = cpu_seconds(proxy.pid)
                wall, latencies = run(
                    connector(host, port, db.database, autocommit=autocommit), args.threads, jobs, job
                )
                while opened:
                    opened.pop().close()
                cpu = cpu_seconds(proxy.pid) - before if path == "proxy" else None
                rates[path] = report(name, path, wall, latencies, cpu)
            print(f"{name:11s} proxy/direct throughput: {rates['proxy'] / rates['direct']:.0%}", flush=True)


# -- short: the reference experiment's picture -----------------------------------------------------------------
def short(db, args) -> None:
    """--users kept connections calling a one-statement procedure at full speed through a cap-45 pool."""
    with ProxyProcess(make_config(db)) as proxy:
        connect = connector(proxy.host, proxy.port, db.database, autocommit=True)
        clients = [connect() for _ in range(args.users)]  # all logged in before the clock starts
        stop = time.monotonic() + args.seconds
        start = threading.Barrier(args.users + 1)
        latencies: list[list[float]] = [[] for _ in clients]
        think = args.think_ms / 1000
        samples: list[int] = []

        def user(index: int) -> None:
            cur = clients[index].cursor()
            start.wait()
            while time.monotonic() < stop:
                began = time.perf_counter()
                cur.execute("CALL hit(%s)", ("s",))
                cur.fetchall()
                while cur.nextset():
                    pass
                latencies[index].append(time.perf_counter() - began)
                if think:
                    time.sleep(think)

        threads = [threading.Thread(target=user, args=(i,)) for i in range(args.users)]
        for thread in threads:
            thread.start()
        reset = getattr(proxy, "reset_stats", None)
        if reset:
            reset()  # logins are not part of the window
        cpu_before, began = cpu_seconds(proxy.pid), time.perf_counter()
        start.wait()
        while time.monotonic() < stop:  # sampled too, for stand-ins that report no mean of their own
            samples.append(proxy.stats()["backend_connections"])
            time.sleep(0.02)
        for thread in threads:
            thread.join()
        wall, cpu, stats = time.perf_counter() - began, cpu_seconds(proxy.pid) - cpu_before, proxy.stats()
        for conn in clients:
            conn.close()
    done = sorted(x for per_user in latencies for x in per_user)
    n = len(done)
    print(
        f"short       {args.users} users, think {args.think_ms:g} ms: {n:6d} calls {wall:6.2f} s"
        f" {n / wall:7.0f} calls/s"
        f"  latency p50 {done[n // 2] * 1e3:5.2f} ms p95 {done[int(n * 0.95)] * 1e3:5.2f} ms"
        f"  proxy CPU {cpu / n * 1e6:4.0f} us/call"
    )
    mean = stats.get("backend_connections_mean", f"~{statistics.fmean(samples):.2f} (sampled)")
    print(
        f"short       DB connections: peak {stats['backend_connections_peak']} (cap {stats['pool_cap']}), "
        f"time-weighted mean {mean}, opened {stats['backend_connections_opened']}, borrow timeouts "
        f"{stats['borrow_timeouts']}, client peak {stats['client_connections_peak']}"
    )
    for key in ("borrow_wait_ms", "borrow_hold_ms"):
        if key in stats:
            figures = stats[key]
            print(
                f"short       {key}: p50 {figures['p50']} p95 {figures['p95']} max {figures['max']} "
                f"({figures['count']} borrows)"
            )


# -- stalled: 50 clients that stop reading ---------------------------------------------------------------------
def stalled_client(host: str, port: int, database: str, sql: str) -> socket.socket:
    """Log in (empty password, no TLS), send ``sql`` and never read the reply."""
    sock = socket.create_connection((host, port), timeout=30)
    sock.recv(65536)  # the greeting
    flags = int(
        Capability.PROTOCOL_41
        | Capability.SECURE_CONNECTION
        | Capability.CONNECT_WITH_DB
        | Capability.PLUGIN_AUTH
        | Capability.DEPRECATE_EOF
        | Capability.MULTI_RESULTS
    )
    body = struct.pack("<IIB", flags, 1 << 24, 45) + bytes(23) + USER.encode() + b"\x00\x00"
    body += database.encode() + b"\x00mysql_native_password\x00"
    sock.sendall(len(body).to_bytes(3, "little") + b"\x01" + body)
    reply = sock.recv(65536)
    if reply[4:5] != b"\x00":
        raise RuntimeError(f"login refused: {reply!r}")
    query = b"\x03" + sql.encode()
    sock.sendall(len(query).to_bytes(3, "little") + b"\x00" + query)
    return sock


def stalled(db, args) -> None:
    with ProxyProcess(make_config(db)) as proxy:
        baseline = rss_mb(proxy.pid)
        peak = [baseline]
        sampling = threading.Event()

        def sample_rss():
            while not sampling.is_set():
                peak.append(rss_mb(proxy.pid))
                time.sleep(0.05)

        sampler = threading.Thread(target=sample_rss)
        sampler.start()
        began = time.perf_counter()
        with ThreadPoolExecutor(50) as pool:
            socks = list(pool.map(lambda _: stalled_client(proxy.host, proxy.port, db.database, BIG_SELECT), range(50)))
        time.sleep(1.0)  # the stalled replies are under way
        sent = time.perf_counter() - began
        stats = proxy.stats()
        held = stats["backend_connections"] - stats["idle_backends"]
        waited_from = time.perf_counter()
        with contextlib.closing(connector(proxy.host, proxy.port, db.database)()) as conn:
            cur = conn.cursor()
            cur.execute("SELECT 1")
            cur.fetchall()
        waited = time.perf_counter() - waited_from
        for sock in socks:
            sock.close()
        time.sleep(3)  # let the stand-in notice and free what the stalled clients had
        sampling.set()
        sampler.join()
        after = rss_mb(proxy.pid)
        final = proxy.stats()
    print(
        f"stalled     50 clients stopped reading 64 MB replies ({sent:.1f} s); one more client served in "
        f"{waited:.2f} s; backends held by the stalled clients 1 s after they stopped: {held} (cap {stats['pool_cap']})"
    )
    print(
        f"stalled     proxy RSS: {baseline:.0f} MB before, {max(peak):.0f} MB peak, {after:.0f} MB 3 s after the "
        f"stalled clients left; held backends at the end: {final['backend_connections'] - final['idle_backends']}"
    )


def prepare(db) -> None:
    with contextlib.closing(db.admin_connect()) as admin:
        cur = admin.cursor()
        cur.execute("CREATE USER IF NOT EXISTS %s@'%%' IDENTIFIED BY %s", (USER, PASSWORD))
        cur.execute(f"GRANT ALL PRIVILEGES ON `{db.database}`.* TO %s@'%%'", (USER,))
    with contextlib.closing(db.app_connect()) as conn:
        cur = conn.cursor()
        cur.execute("CREATE TABLE menus (id INT PRIMARY KEY, name VARCHAR(50), price INT) DEFAULT CHARSET=utf8mb4")
        cur.executemany(
            "INSERT INTO menus VALUES (%s, %s, %s)", [(i, f"menu {i} 定食", 300 + 50 * i) for i in range(1, 10)]
        )
        cur.execute("CREATE TABLE hits (id INT AUTO_INCREMENT PRIMARY KEY, who CHAR(1))")
        cur.execute(  # one autocommitted statement that writes and reads, like the handler's GET
            "CREATE PROCEDURE hit(IN who CHAR(1)) BEGIN INSERT INTO hits (who) VALUES (who); "
            "SELECT LAST_INSERT_ID(), (SELECT COUNT(*) FROM hits WHERE id > CAST(LAST_INSERT_ID() AS SIGNED) - 10); END"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workloads", default=",".join(WORKLOADS), help=f"comma-separated: {', '.join(WORKLOADS)}")
    parser.add_argument("--threads", type=int, default=50, help="client threads of persistent and per-request")
    parser.add_argument("--statements", type=int, default=100, help="per thread, persistent workload")
    parser.add_argument("--requests", type=int, default=1000, help="per-request workload, total")
    parser.add_argument("--users", type=int, default=100, help="short workload: kept client connections")
    parser.add_argument("--seconds", type=float, default=10.0, help="short workload: duration")
    parser.add_argument("--think-ms", type=float, default=0.0, help="short workload: pause of each user between calls")
    args = parser.parse_args()
    args.workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    unknown = sorted(set(args.workloads) - set(WORKLOADS))
    if unknown:
        parser.error(f"--workloads: unknown {unknown}; allowed: {', '.join(WORKLOADS)}")
    if not (1 <= args.threads <= 200 and 1 <= args.users <= 500 and 1 <= args.statements <= 10000):
        parser.error("--threads 1..200, --users 1..500, --statements 1..10000")
    if not (1 <= args.requests <= 100000 and 1 <= args.seconds <= 600 and 0 <= args.think_ms <= 10000):
        parser.error("--requests 1..100000, --seconds 1..600, --think-ms 0..10000")
    # 65 DB slots as the reference run; more when the direct path of the classic workloads needs them
    classic_needs = 2 * args.threads + 40 if {"persistent", "per-request"} & set(args.workloads) else 65
    with MariaDBServer(MariaDBConfig(max_connections=max(65, classic_needs))) as db:
        prepare(db)
        if {"persistent", "per-request"} & set(args.workloads):
            classic(db, args)
    with MariaDBServer(MariaDBConfig(max_connections=65)) as db:  # the reference run's DB for the pool's picture
        prepare(db)
        for name, workload in (("short", short), ("stalled", stalled)):
            if name in args.workloads:
                workload(db, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
