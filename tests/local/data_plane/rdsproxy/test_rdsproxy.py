"""The RDS Proxy stand-in against a real MariaDB, with mysql-connector-python and the mariadb CLI."""

from __future__ import annotations

import contextlib
import datetime
import decimal
import logging
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import mysql.connector
import pytest

from handler.app_db import Deadline
from handler.app_schema import TableNames, migrate
from handler.app_settings import Settings
from handler.app_store import AccessTimesStore
from local.data_plane.rdsproxy import EXCLUDE_VARIABLE_SETS, ProxyProcess, ProxyServer
from local.data_plane.rdsproxy.backend import BackendConnection
from tests.local.data_plane.rdsproxy.standin_support import (
    CLIENT_PASSWORD,
    CLIENT_USER,
    fetch,
    mariadb_cli,
    settled_stats,
)
from tests.local.data_plane.rdsproxy.standin_support import connect as via_proxy
from tests.local.data_plane.rdsproxy.standin_support import standin_config as proxy_config
from tests.sync_support import wait_until


@pytest.fixture(scope="module")
def db(mariadb_factory):
    server = mariadb_factory(max_connections=65)
    with contextlib.closing(server.app_connect()) as conn:
        cur = conn.cursor()
        cur.execute(
            "CREATE TABLE kinds (id INT PRIMARY KEY, small TINYINT, big BIGINT UNSIGNED, price DECIMAL(12,3),"
            " ratio DOUBLE, f FLOAT, at DATETIME(6), d DATE, t TIME(3), ts TIMESTAMP(2) NULL, label VARCHAR(64),"
            " note TEXT, raw BLOB, flag BIT(3), e ENUM('a','b'), j JSON, maybe INT NULL)"
            " DEFAULT CHARSET=utf8mb4"
        )
        cur.executemany(
            "INSERT INTO kinds VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)",
            [
                (
                    i,
                    -i % 128,
                    2**64 - 1 - i,
                    decimal.Decimal(f"{i}.125"),
                    i / 3,
                    1.5,
                    datetime.datetime(2024, 2, 29, 23, 59, 59, 123456 + i),
                    datetime.date(2022, 2, 24),
                    datetime.timedelta(hours=-1, seconds=i),
                    datetime.datetime(2022, 2, 24, 13, 59, 25, 280000),
                    f"目玉焼き定食 {i} 🍳",
                    "x" * (i * 37),
                    bytes(range(256)) * (i % 3) + b"\xfe\xff\x00",
                    i % 8,
                    "ab"[i % 2],
                    '{"k": [1, 2]}',
                    None if i % 2 else i,
                )
                for i in range(300)
            ],
        )
        cur.execute("CREATE TABLE counter (id INT AUTO_INCREMENT PRIMARY KEY, who VARCHAR(20)) ENGINE=InnoDB")
        conn.commit()
    return server


def connection_id(conn) -> int:
    return fetch(conn, "SELECT CONNECTION_ID()")[1][0][0]


QUERIES = [
    "SELECT * FROM kinds ORDER BY id",
    "SELECT id, price * 2, ratio + 1, CAST(at AS CHAR), NULL, '🍣' FROM kinds WHERE id < 5",
    "SELECT COUNT(*), SUM(price), MAX(at), GROUP_CONCAT(e ORDER BY id) FROM kinds",
    "SELECT 1 FROM kinds WHERE 1 = 0",
]


def test_results_and_types_are_identical_to_the_direct_path(db):
    with (
        ProxyServer(proxy_config(db)) as proxy,
        contextlib.closing(db.app_connect(autocommit=False)) as direct,
        contextlib.closing(via_proxy(proxy, db)) as proxied,
    ):
        for sql in QUERIES:
            for options in ({}, {"raw": True}):
                assert fetch(proxied, sql, **options) == fetch(direct, sql, **options), sql
        assert len(fetch(proxied, QUERIES[0])[1]) == 300


def test_prepared_statements_return_the_same_binary_results_and_pin(db):
    with ProxyServer(proxy_config(db)) as proxy:
        with (
            contextlib.closing(db.app_connect(autocommit=False)) as direct,
            contextlib.closing(via_proxy(proxy, db)) as proxied,
        ):
            sql = "SELECT * FROM kinds WHERE id >= %s ORDER BY id"
            assert fetch(proxied, sql, (250,), prepared=True) == fetch(direct, sql, (250,), prepared=True)
            first = connection_id(proxied)
            assert fetch(proxied, sql, (298,), prepared=True)[1][0][0] == 298
            assert connection_id(proxied) == first
        assert proxy.stats()["pinned_sessions_total"] == 1


@pytest.mark.parametrize(
    "sql, errno",
    [
        ("SELECT * FROM no_such_table", 1146),
        ("SELEKT 1", 1064),
        ("INSERT INTO kinds (id) VALUES (1)", 1062),
        ("SELECT no_such_column FROM kinds", 1054),
    ],
)
def test_errors_pass_through_with_errno_and_sqlstate(db, sql, errno):
    with ProxyServer(proxy_config(db)) as proxy:
        failures = []
        for connect in (lambda: db.app_connect(autocommit=False), lambda: via_proxy(proxy, db)):
            with contextlib.closing(connect()) as conn:
                with pytest.raises(mysql.connector.Error) as caught:
                    fetch(conn, sql)
                failures.append((caught.value.errno, caught.value.sqlstate, caught.value.msg))
                assert fetch(conn, "SELECT 42")[1] == [(42,)]  # connection still usable
        assert failures[0] == failures[1]
        assert failures[0][0] == errno


@pytest.mark.skipif(shutil.which("mariadb") is None, reason="mariadb client not installed")
def test_mariadb_command_line_client_works_through_the_proxy(db):
    sql = (
        "SELECT id, price, at, label, HEX(raw), maybe FROM kinds WHERE id < 4 ORDER BY id; "
        "USE app; SELECT DATABASE(); SELECT * FROM no_such_table"
    )
    with ProxyServer(proxy_config(db)) as proxy:
        direct = mariadb_cli(db.host, db.port, db.app_user, db.app_password, db.database, sql)
        proxied = mariadb_cli(proxy.host, proxy.port, CLIENT_USER, CLIENT_PASSWORD, db.database, sql)
        denied = mariadb_cli(proxy.host, proxy.port, CLIENT_USER, "wrong", db.database, "SELECT 1")
    assert proxied.stdout == direct.stdout
    assert "目玉焼き定食 3 🍳" in proxied.stdout and "DATABASE()\napp\n" in proxied.stdout
    assert "ERROR 1146 (42S02)" in proxied.stderr and direct.returncode == proxied.returncode == 1
    assert "ERROR 1045 (28000)" in denied.stderr


def test_authentication(db):
    with ProxyServer(proxy_config(db)) as proxy:
        with pytest.raises(mysql.connector.Error) as caught:
            via_proxy(proxy, db, password="wrong")
        assert caught.value.errno == 1045
        with pytest.raises(mysql.connector.Error):
            via_proxy(proxy, db, user=db.app_user, password=db.app_password)  # a DB user without an account
        # a client that starts with caching_sha2_password is switched to mysql_native_password; its database
        # session is its own account's user, as RDS Proxy logs in with the secret of the client's user
        with contextlib.closing(via_proxy(proxy, db, auth_plugin="caching_sha2_password")) as conn:
            assert fetch(conn, "SELECT CURRENT_USER()")[1][0][0].startswith(CLIENT_USER + "@")
        assert proxy.stats()["auth_failures"] == 2


def running(db, statement: str) -> bool:
    """The database is executing ``statement`` (seen from its admin port, outside max_connections)."""
    with contextlib.closing(db.admin_connect()) as admin:
        return (
            fetch(admin, "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO = %s", (statement,))[1][0][0]
            > 0
        )


def sample_threads_connected(db, stop: threading.Event, samples: list):
    while not stop.is_set():
        samples.append(db.threads_connected())
        time.sleep(0.005)


def test_many_clients_are_multiplexed_over_at_most_cap_backends(db):
    clients, cap = 100, 10
    config = proxy_config(db, max_connections_percent=16, max_idle_connections_percent=10)
    assert config.pool_cap == cap
    baseline = db.threads_connected()
    start = threading.Barrier(clients, timeout=30)

    def one_client(i):
        with contextlib.closing(via_proxy(proxy, db)) as conn:
            start.wait()
            fetch(conn, "INSERT INTO counter (who) VALUES (%s)", (f"c{i}",))
            conn.commit()
            rows = fetch(conn, "SELECT id, who, SLEEP(0.01) FROM counter WHERE who = %s", (f"c{i}",))[1]
            conn.commit()
            return rows[0][1]

    samples: list[int] = []
    stop = threading.Event()
    with ProxyServer(config) as proxy:
        sampler = threading.Thread(target=sample_threads_connected, args=(db, stop, samples))
        sampler.start()
        try:
            with ThreadPoolExecutor(clients) as pool:
                results = list(pool.map(one_client, range(clients)))
        finally:
            stop.set()
            sampler.join()
        stats = proxy.stats()
        wait_until(lambda: proxy.stats()["backend_connections"] <= config.max_idle)
        assert proxy.stats()["backend_connections"] <= config.max_idle  # idle ones above it were closed
    assert results == [f"c{i}" for i in range(clients)]
    assert stats["client_connections_peak"] == clients
    assert stats["backend_connections_peak"] <= cap
    assert 1 <= max(samples) - baseline <= cap
    assert stats["borrow_waits"] > 0 and stats["borrow_timeouts"] == 0
    assert stats["pinned_sessions_total"] == 0


def test_borrow_timeout_fails_the_waiting_client_with_9501_and_keeps_it_usable(db):
    config = proxy_config(
        db,
        db_max_connections=10,
        max_connections_percent=10,
        max_idle_connections_percent=10,
        connection_borrow_timeout=0.3,
    )
    with ProxyServer(config) as proxy:
        with contextlib.closing(via_proxy(proxy, db)) as busy, contextlib.closing(via_proxy(proxy, db)) as waiter:
            sleeper = threading.Thread(target=fetch, args=(busy, "SELECT SLEEP(1.5)"))
            sleeper.start()
            assert wait_until(lambda: running(db, "SELECT SLEEP(1.5)"))  # the one backend is busy
            started = time.monotonic()
            with pytest.raises(mysql.connector.Error) as caught:
                fetch(waiter, "SELECT 1")
            waited = time.monotonic() - started
            sleeper.join()
            assert caught.value.errno == 9501
            assert "Timed-out waiting to acquire database connection" in caught.value.msg
            assert 0.25 <= waited < 1.0
            assert fetch(waiter, "SELECT 2")[1] == [(2,)]
        stats = proxy.stats()
    assert stats["borrow_timeouts"] == 1 and stats["backend_connections_peak"] == 1


def test_idle_client_timeout_closes_idle_clients_and_rolls_back_their_transaction(db):
    with ProxyServer(proxy_config(db, idle_client_timeout=1)) as proxy:
        idle = via_proxy(proxy, db)
        fetch(idle, "INSERT INTO counter (who) VALUES ('idle')")  # autocommit off: transaction held open
        active = via_proxy(proxy, db)
        deadline = time.monotonic() + 1.8
        while time.monotonic() < deadline:  # keeps sending, so it is never idle
            fetch(active, "SELECT 1")
            time.sleep(0.2)
        with pytest.raises(mysql.connector.Error):
            fetch(idle, "SELECT 1")
        assert fetch(active, "SELECT COUNT(*) FROM counter WHERE who = 'idle'")[1] == [(0,)]
        active.close()  # returns before the proxy has read the client's COM_QUIT
        stats = settled_stats(proxy, lambda now: now["client_connections"] == 0)
    assert stats["idle_client_timeouts"] == 1 and stats["client_connections"] == 0


def test_transaction_keeps_one_backend_and_is_released_at_commit(db):
    config = proxy_config(db, db_max_connections=10, max_connections_percent=20)  # cap 2
    with ProxyServer(config) as proxy:
        with (
            contextlib.closing(via_proxy(proxy, db, autocommit=True)) as a,
            contextlib.closing(via_proxy(proxy, db, autocommit=True)) as b,
        ):
            fetch(a, "BEGIN")
            in_txn = {connection_id(a) for _ in range(3)}
            fetch(a, "INSERT INTO counter (who) VALUES ('txn')")
            others = {connection_id(b) for _ in range(3)}
            assert len(in_txn) == 1 and in_txn.isdisjoint(others)
            assert fetch(b, "SELECT COUNT(*) FROM counter WHERE who = 'txn'")[1] == [(0,)]
            fetch(a, "COMMIT")
            assert fetch(b, "SELECT COUNT(*) FROM counter WHERE who = 'txn'")[1] == [(1,)]
            # outside transactions, both clients share backends
            assert len({connection_id(a), connection_id(b), connection_id(a)}) == 1
        assert proxy.stats()["pinned_sessions_total"] == 0


def test_handler_requests_multiplex_through_a_one_connection_pool_without_pinning(db):
    """The handler's GET is one autocommitted CALL: a backend is held only while it runs, so three kept client
    connections share one database connection, as RDS Proxy does for stored procedures."""
    config = proxy_config(db, db_max_connections=10, max_connections_percent=10)  # cap 1
    table = "proxy_calls"
    with contextlib.closing(db.app_connect()) as owner:  # the deploy's migrations: the request path never migrates
        migrate(owner, TableNames(db.database, table), Deadline.none())
    with ProxyServer(config) as proxy:
        stores = [
            AccessTimesStore(
                Settings(
                    host=proxy.host,
                    port=proxy.port,
                    database=db.database,
                    user=CLIENT_USER,
                    auth="password",
                    password=CLIENT_PASSWORD,
                    table=table,
                ),
                logging.getLogger("test_rdsproxy"),
            )
            for _ in range(3)
        ]
        try:
            totals = [
                store.record_access(datetime.datetime.now(datetime.UTC), f"r{i}-{n}").total
                for i in range(4)
                for n, store in enumerate(stores)
            ]
        finally:
            for store in stores:
                store.close()
        stats = proxy.stats()
    assert totals == list(range(1, 13))
    assert stats["pinned_sessions_total"] == 0
    assert stats["backend_connections_peak"] == 1 and stats["client_connections_peak"] >= 3


@pytest.mark.parametrize(
    "setup, check, expected",
    [
        (["SET @greeting = 'hello'"], "SELECT @greeting", [("hello",)]),
        (["CREATE TEMPORARY TABLE scratch (a INT)", "INSERT INTO scratch VALUES (7)"], "SELECT a FROM scratch", [(7,)]),
        (["PREPARE s FROM 'SELECT 40 + 2'"], "EXECUTE s", [(42,)]),
        (["SELECT GET_LOCK('proxy-test', 1)"], "SELECT IS_USED_LOCK('proxy-test') = CONNECTION_ID()", [(1,)]),
        (["LOCK TABLES counter READ"], "SELECT COUNT(*) >= 0 FROM counter", [(1,)]),
        (["SET sort_buffer_size = 1048576"], "SELECT @@session.sort_buffer_size", [(1048576,)]),
    ],
)
def test_session_state_pins_the_client_to_its_backend(db, setup, check, expected):
    config = proxy_config(db, db_max_connections=10, max_connections_percent=20)  # cap 2
    with ProxyServer(config) as proxy:
        with (
            contextlib.closing(via_proxy(proxy, db, autocommit=True)) as pinned,
            contextlib.closing(via_proxy(proxy, db, autocommit=True)) as other,
        ):
            for sql in setup:
                fetch(pinned, sql)
            mine = connection_id(pinned)
            assert {connection_id(other) for _ in range(3)} == {connection_id(other)} != {mine}
            assert fetch(pinned, check)[1] == expected
            assert connection_id(pinned) == mine
            assert proxy.stats()["pinned_sessions"] == 1
        stats = settled_stats(proxy, lambda now: now["pinned_sessions"] == 0)
    assert stats["pinned_sessions"] == 0 and stats["pinned_sessions_total"] == 1


def test_exclude_variable_sets_filter_multiplexes_through_set(db):
    config = proxy_config(db, session_pinning_filters=frozenset({EXCLUDE_VARIABLE_SETS}))
    with ProxyServer(config) as proxy:
        with contextlib.closing(via_proxy(proxy, db, autocommit=True)) as conn:
            fetch(conn, "SET @x = 5")
            fetch(conn, "SET sort_buffer_size = 1048576")
            assert fetch(conn, "SELECT 1")[1] == [(1,)]
        assert proxy.stats()["pinned_sessions_total"] == 0


def test_tracked_variables_follow_the_client_and_do_not_leak(db):
    config = proxy_config(db, db_max_connections=10, max_connections_percent=10)  # cap 1: shared backend
    with ProxyServer(config) as proxy:
        with (
            contextlib.closing(via_proxy(proxy, db, autocommit=True)) as tokyo,
            contextlib.closing(via_proxy(proxy, db, autocommit=True)) as plain,
        ):
            fetch(tokyo, "SET time_zone = '+09:00'")
            for _ in range(2):
                assert fetch(tokyo, "SELECT @@time_zone")[1] == [("+09:00",)]
                assert fetch(plain, "SELECT @@time_zone")[1] == [("SYSTEM",)]
            fetch(tokyo, "SET NAMES latin1")
            assert fetch(tokyo, "SELECT @@character_set_results")[1] == [("latin1",)]
            assert fetch(plain, "SELECT @@character_set_results")[1] == [("utf8mb4",)]
        stats = proxy.stats()
    assert stats["pinned_sessions_total"] == 0 and stats["backend_connections_peak"] == 1


def test_init_query_runs_on_every_new_backend_connection(db):
    config = proxy_config(
        db, init_query="SET SESSION sql_mode = 'ANSI_QUOTES'; SET SESSION div_precision_increment = 7"
    )
    with (
        ProxyServer(config) as proxy,
        contextlib.closing(via_proxy(proxy, db)) as first,
        contextlib.closing(via_proxy(proxy, db)) as second,
    ):
        fetch(first, "BEGIN")  # holds its backend, so the second client gets a new one
        for conn in (first, second):
            assert fetch(conn, "SELECT @@sql_mode, @@div_precision_increment")[1] == [("ANSI_QUOTES", 7)]
            assert fetch(conn, 'SELECT "id" FROM kinds WHERE id = 1')[1] == [(1,)]
        assert connection_id(first) != connection_id(second)


def test_backends_killed_while_idle_are_replaced_transparently(db):
    with ProxyServer(proxy_config(db)) as proxy, contextlib.closing(via_proxy(proxy, db, autocommit=True)) as conn:
        before = connection_id(conn)
        # the stand-in's connections are the client's account's; returns once the server has closed them, so the
        # goodbye is already in the proxy's socket (loopback) when it borrows next
        assert db.kill_connections(CLIENT_USER) >= 1
        after = connection_id(conn)
        assert after != before
        assert fetch(conn, "SELECT COUNT(*) FROM kinds")[1] == [(300,)]


def test_a_pooled_backend_closed_before_the_proxy_saw_it_is_replaced_when_its_sync_fails(db, monkeypatch):
    """The server's close can reach the socket after the loop last looked: the proxy's own SET then fails on a
    connection that looked idle and usable. That SET never ran, so another connection takes its place."""
    failed = []
    command = BackendConnection.command

    async def closed_once(self, *args, **kwargs):
        if self.idle_since and not failed:  # a pooled connection, first use after its park
            failed.append(self)
            raise ConnectionResetError(104, "Connection reset by peer")
        return await command(self, *args, **kwargs)

    with ProxyServer(proxy_config(db)) as proxy:
        with contextlib.closing(via_proxy(proxy, db, autocommit=True)) as first:
            assert fetch(first, "SELECT 1")[1] == [(1,)]
        wait_until(lambda: proxy.stats()["idle_backends"] >= 1)
        monkeypatch.setattr(BackendConnection, "command", closed_once)
        # Another character set: the proxy must SET it on the pooled connection before lending it.
        with contextlib.closing(via_proxy(proxy, db, autocommit=True, charset="latin1")) as second:
            assert fetch(second, "SELECT @@character_set_client")[1] == [("latin1",)]
        assert len(failed) == 1 and not failed[0].open
        assert proxy.stats()["borrow_timeouts"] == 0


def test_default_database_follows_the_client(db):
    with (
        ProxyServer(proxy_config(db, db_max_connections=10, max_connections_percent=10)) as proxy,
        contextlib.closing(via_proxy(proxy, db, database=None, autocommit=True)) as nodb,
        contextlib.closing(via_proxy(proxy, db, autocommit=True)) as withdb,
    ):
        assert fetch(withdb, "SELECT DATABASE()")[1] == [(db.database,)]
        assert fetch(nodb, "SELECT DATABASE()")[1] == [(None,)]
        nodb.database = db.database  # COM_INIT_DB
        assert fetch(nodb, "SELECT COUNT(*) FROM kinds")[1] == [(300,)]
        fetch(withdb, "USE information_schema")
        assert fetch(withdb, "SELECT DATABASE()")[1] == [("information_schema",)]
        assert fetch(nodb, "SELECT DATABASE()")[1] == [(db.database,)]


def test_cli_process_serves_clients_reports_stats_and_stops_on_sigterm(db):
    proxy = ProxyProcess(proxy_config(db)).start()
    try:
        with contextlib.closing(via_proxy(proxy, db)) as conn:
            assert fetch(conn, "SELECT COUNT(*) FROM kinds")[1] == [(300,)]
        stats = proxy.stats()
        assert stats["client_connections_total"] == 1 and stats["pool_cap"] == 45
    finally:
        assert proxy.stop() == 0


def test_ping_statistics_and_reset_connection(db):
    with ProxyServer(proxy_config(db)) as proxy:
        with contextlib.closing(via_proxy(proxy, db, autocommit=True)) as conn:
            conn.ping()
            assert conn.cmd_statistics()["Uptime"] >= 0
            fetch(conn, "SET time_zone = '+09:00'")
            fetch(conn, "BEGIN")
            fetch(conn, "INSERT INTO counter (who) VALUES ('reset')")
            conn.cmd_reset_connection()  # forgets tracked state and rolls back
            assert fetch(conn, "SELECT @@time_zone, COUNT(*) FROM counter WHERE who = 'reset'")[1] == [("SYSTEM", 0)]
        assert proxy.stats()["pinned_sessions_total"] == 0
