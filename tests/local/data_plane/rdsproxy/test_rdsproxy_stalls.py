"""The RDS Proxy stand-in when clients stall or the database goes away, and the error packets it sends.

Real MariaDB, real sockets, mysql-connector and the real ``mariadb`` CLI. Database connections are
cut without MariaDB's help through a small TCP relay between the stand-in and the database (the
proxy's own "lost connection" error only appears when the database vanishes without a goodbye).
"""

from __future__ import annotations

import contextlib
import select
import shutil
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import mysql.connector
import pytest

from local.data_plane.rdsproxy import ProxyConfig, ProxyServer
from tests.local.data_plane.rdsproxy.standin_support import (
    CLIENT_PASSWORD,
    CLIENT_USER,
    select_one,
    settled_stats,
    standin_config,
)
from tests.local.data_plane.rdsproxy.standin_support import connect as standin_connect
from tests.local.data_plane.rdsproxy.standin_support import mariadb_cli as standin_cli
from tests.sync_support import wait_until

pytestmark = pytest.mark.heavy

#: 64 rows of 1 MB: far more than socket buffers and the proxy's relay buffer hold.
BIG_SELECT = (
    "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 64) SELECT n, REPEAT('x', 1000000) FROM r"
)
#: 6 MB: more than the kernel's socket buffers take (about 4 MB on loopback), so the stand-in buffers the rest.
SIX_MB_SELECT = BIG_SELECT.replace("n < 64", "n < 6")
needs_cli = pytest.mark.skipif(shutil.which("mariadb") is None, reason="mariadb client not installed")


class Relay:
    """TCP relay 127.0.0.1:port -> target that can cut its connections and refuse new ones."""

    def __init__(self, target: tuple[str, int]):
        self._target = target
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._lock = threading.Lock()
        self.upstream_bytes = bytearray()  # what clients sent, to know when a query is under way
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                sockets = [self._listener] if self._listener else []
                peers = {}
                for a, b in self._pairs:
                    peers[a], peers[b] = b, a
            ready, _, _ = select.select(sockets + list(peers), [], [], 0.05)
            for sock in ready:
                if sock is self._listener:
                    with contextlib.suppress(OSError):
                        client, _ = sock.accept()
                        server = socket.create_connection(self._target, timeout=5)
                        with self._lock:
                            self._pairs.append((client, server))
                    continue
                try:
                    data = sock.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    self._drop(sock)
                    continue
                if any(sock is a for a, _ in self._pairs):
                    self.upstream_bytes += data
                with contextlib.suppress(OSError):
                    peers[sock].sendall(data)

    def _drop(self, sock: socket.socket) -> None:
        with self._lock:
            for pair in [x for x in self._pairs if sock in x]:
                self._pairs.remove(pair)
                for end in pair:
                    with contextlib.suppress(OSError):
                        end.shutdown(socket.SHUT_RDWR)
                    end.close()

    def cut(self) -> None:
        """Close every relayed connection at once, both ways (no MySQL goodbye reaches anyone)."""
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for pair in pairs:
            for end in pair:
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)
                end.close()

    def refuse(self) -> None:
        """Stop listening: new connections are refused, as when the database is down."""
        with self._lock:
            listener, self._listener = self._listener, None
        if listener:
            listener.close()
        self.cut()

    def wait_for(self, marker: bytes, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while marker not in self.upstream_bytes:
            assert time.monotonic() < deadline, f"{marker!r} never went through the relay"
            time.sleep(0.01)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.refuse()


@pytest.fixture(scope="module")
def db(mariadb_factory):
    return mariadb_factory(max_connections=65)


def proxy_config(host: str, port: int, db, **overrides) -> ProxyConfig:
    """A small pool (cap 2 of 10) in front of ``host:port`` (the database, or a relay to it)."""
    fields = dict(
        backend_host=host,
        backend_port=port,
        db_max_connections=10,
        max_connections_percent=20,
        max_idle_connections_percent=20,
        connection_borrow_timeout=15,
    )
    fields.update(overrides)
    return standin_config(db, **fields)


def connect(proxy, db, **options):
    return standin_connect(proxy, db, **{"connection_timeout": 20, "autocommit": True, **options})


def mariadb_cli(port: int, database: str, sql: str, *options: str):
    return standin_cli("127.0.0.1", port, CLIENT_USER, CLIENT_PASSWORD, database, sql, *options)


# -- stalled clients ------------------------------------------------------------------------------
def test_clients_that_stop_reading_lose_their_backend_after_the_write_timeout(db):
    config = proxy_config(db.host, db.port, db, client_write_timeout=1)
    assert config.pool_cap == 2
    with ProxyServer(config) as proxy:
        stalled = []
        try:
            for _ in range(config.pool_cap):  # every pool slot held by a client that never reads
                conn = connect(proxy, db)
                cur = conn.cursor()
                cur.execute(BIG_SELECT)  # reads the column definitions, leaves 64 MB of rows unread
                stalled.append((conn, cur))
            # with slots held forever this client got 9501 after the 15 s borrow timeout
            assert select_one(proxy, db) == [(1,)]
            # both stalled clients time out, whichever freed the slot first
            wait_until(lambda: proxy.stats()["client_write_timeouts"] >= config.pool_cap, timeout=10)
            stats = proxy.stats()
            assert stats["client_write_timeouts"] == config.pool_cap
            assert stats["borrow_timeouts"] == 0
            assert stats["backend_connections"] <= config.pool_cap
            for _, cur in stalled:  # the stalled clients were disconnected, not left half-served
                with pytest.raises(mysql.connector.Error):
                    cur.fetchall()
        finally:
            for conn, _ in stalled:
                with contextlib.suppress(Exception):
                    conn.close()
        assert select_one(proxy, db) == [(1,)]


def test_fifty_clients_that_stop_reading_keep_no_backend_and_others_are_served_at_once(db):
    """Replies that fit in client_buffer_limit are read from the database whatever the client does: the backend
    goes back to the pool at once, the bytes wait in the stand-in, and are dropped with a client that never takes
    them. (Before, 50 such clients held all 45 backends for client_write_timeout and a new client waited 54 s.)"""
    config = proxy_config(
        db.host,
        db.port,
        db,
        db_max_connections=65,
        max_connections_percent=70,  # cap 45, the experiment's
        max_idle_connections_percent=70,
        client_write_timeout=6,  # longer than stalling 50 clients takes on a busy machine
        client_buffer_limit=8 << 20,
    )
    stalled: list = []

    def stall(_):
        conn = connect(proxy, db)
        stalled.append(conn)
        conn.cursor().execute(SIX_MB_SELECT)  # reads the column definitions, leaves the rows unread
        return conn

    with ProxyServer(config) as proxy:
        try:
            with ThreadPoolExecutor(50) as pool:
                list(pool.map(stall, range(50)))
            started = time.monotonic()
            assert select_one(proxy, db) == [(1,)]
            served_in = time.monotonic() - started
            stats = settled_stats(  # the new client has left, and every backend is idle
                proxy,
                lambda now: (
                    now["backend_connections"] == now["idle_backends"]
                    and now["client_connections"] + now["client_write_timeouts"] == 50
                ),
            )
            assert served_in < 1.0, f"a new client waited {served_in:.2f} s"
            assert stats["backend_connections"] == stats["idle_backends"] <= config.pool_cap  # all back in the pool
            assert stats["client_connections"] + stats["client_write_timeouts"] == 50  # stalled, or already dropped
            assert stats["buffered_reply_bytes"] > 20 << 20  # what the kernel's buffers did not take
            assert stats["borrow_timeouts"] == stats["stalled_replies"] == 0
            # clients that never take their bytes are dropped after client_write_timeout, and the bytes with them
            stats = settled_stats(proxy, lambda now: now["buffered_reply_bytes"] == 0, timeout=20)
            assert stats["buffered_reply_bytes"] == 0 and stats["client_write_timeouts"] >= 1
            assert select_one(proxy, db) == [(1,)]
        finally:
            for conn in stalled:
                with contextlib.suppress(Exception):
                    conn.close()


def test_pinned_client_that_stops_reading_is_dropped_too(db):
    config = proxy_config(
        db.host, db.port, db, client_write_timeout=1, max_connections_percent=10, max_idle_connections_percent=10
    )  # cap 1
    with ProxyServer(config) as proxy:
        conn = connect(proxy, db)
        try:
            cur = conn.cursor()
            cur.execute("SET @pinned = 1")
            cur.execute(BIG_SELECT)
            assert select_one(proxy, db) == [(1,)]
            assert proxy.stats()["client_write_timeouts"] == 1
        finally:
            with contextlib.suppress(Exception):
                conn.close()


# -- the database goes away -----------------------------------------------------------------------
def test_backend_killed_under_an_open_transaction_frees_the_slot_at_once(db):
    config = proxy_config(
        db.host, db.port, db, max_connections_percent=10, max_idle_connections_percent=10, connection_borrow_timeout=5
    )  # cap 1
    with ProxyServer(config) as proxy, contextlib.closing(connect(proxy, db)) as holder:
        cur = holder.cursor()
        cur.execute("START TRANSACTION")
        assert db.kill_connections(CLIENT_USER) >= 1
        # the holder never sends another command; the slot must not wait for it
        assert select_one(proxy, db) == [(1,)]
        assert proxy.stats()["held_backends_lost"] == 1
        with pytest.raises(mysql.connector.Error) as caught:
            cur.execute("SELECT 2")
            cur.fetchall()
        assert caught.value.errno in (1927, 2013, 2055)  # all "connection lost" to drivers and the handler


@pytest.fixture
def relay(db):
    relay = Relay((db.host, db.port))
    yield relay
    relay.close()


def test_backend_lost_mid_query_is_reported_with_a_server_error_code(db, relay):
    with ProxyServer(proxy_config("127.0.0.1", relay.port, db)) as proxy:
        with contextlib.closing(connect(proxy, db)) as conn:
            failure: list[BaseException] = []

            def sleep() -> None:
                try:
                    cur = conn.cursor()
                    cur.execute("SELECT SLEEP(5)")
                    cur.fetchall()
                except mysql.connector.Error as exc:
                    failure.append(exc)

            thread = threading.Thread(target=sleep)
            thread.start()
            relay.wait_for(b"SLEEP(5)")
            relay.cut()
            thread.join(10)
        assert failure and (failure[0].errno, failure[0].sqlstate) == (1927, "70100")
        assert "lost its database connection" in failure[0].msg
        assert select_one(proxy, db) == [(1,)]  # a new backend replaces the lost one


@needs_cli
def test_mariadb_cli_shows_the_stand_ins_own_errors(db, relay):
    with ProxyServer(proxy_config("127.0.0.1", relay.port, db, max_allowed_packet=4096)) as proxy:
        with ThreadedRun(lambda: mariadb_cli(proxy.port, db.database, "SELECT SLEEP(5)")) as run:
            relay.wait_for(b"SLEEP(5)")
            relay.cut()
        lost = run.result
        too_big = mariadb_cli(proxy.port, db.database, "SELECT '" + "x" * 5000 + "'")
        relay.refuse()
        unreachable = mariadb_cli(proxy.port, db.database, "SELECT 1")
    assert "ERROR 1927 (70100)" in lost.stderr and "lost its database connection" in lost.stderr, lost.stderr
    assert "ERROR 1153 (08S01)" in too_big.stderr and "max_allowed_packet" in too_big.stderr, too_big.stderr
    assert "ERROR 1053 (08S01)" in unreachable.stderr, unreachable.stderr
    assert "could not reach the database" in unreachable.stderr
    for result in (lost, too_big, unreachable):
        assert "2027" not in result.stderr and "malformed" not in result.stderr


def test_connector_gets_1053_when_the_database_cannot_be_reached(db, relay):
    with ProxyServer(proxy_config("127.0.0.1", relay.port, db)) as proxy:
        relay.refuse()
        with pytest.raises(mysql.connector.Error) as caught:  # at the driver's first statement (SET NAMES)
            select_one(proxy, db)
    assert (caught.value.errno, caught.value.sqlstate) == (1053, "08S01")
    assert "could not reach the database" in caught.value.msg


class ThreadedRun:
    """Run a function in a thread for the duration of a ``with`` block; ``result`` afterwards."""

    def __init__(self, function):
        self._function = function
        self.result = None
        self._thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        self.result = self._function()

    def __enter__(self) -> ThreadedRun:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._thread.join(30)
