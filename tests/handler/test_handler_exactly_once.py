"""Exactly one row per request, and every status keeps its promise, through the RDS Proxy stand-in to a real MariaDB.

The store (the request path, as the application user) reaches the stand-in through a TCP relay that cuts the
conversation at a chosen point of the GET's one statement: before the statement reaches the proxy, after it was
sent, or after the database committed it. 200 means the row is stored exactly once; 503 that nothing was stored;
502 only when even the retry could not learn the outcome.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import mysql.connector
import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from handler.app_db import DatabaseUnavailable, Deadline
from handler.app_store import AccessTimesStore, OutcomeUnknown, iso_utc, request_key
from local.data_plane.mariadb import MariaDBServer
from local.data_plane.rdsproxy import ProxyConfig, ProxyServer, StaticAccount
from tests.handler.handler_support import (
    Accounts,
    admin_query,
    create_master,
    migrate,
    new_table,
    settings,
    stored,
    wait_for_no_open_transactions,
)

COM_QUERY = 0x03

UNTIMED = hypothesis_settings(deadline=None)
"""Properties have no time limit per example: on a loaded machine a descheduled example is not a failure."""


class ReplyCuttingRelay:
    """Forwards 127.0.0.1:<port> to the proxy, counting the client's statements. Armed with a statement prefix,
    it acts on that statement: "drop" cuts both sockets without forwarding it, "cut" forwards it and cuts both
    sockets at once, "stall" forwards it and withholds the reply (and everything after) until ``cut_all()``.
    ``times`` arms that many statements, then it disarms."""

    def __init__(self, target_port: int) -> None:
        self._target = ("127.0.0.1", target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._prefix = b""
        self._mode = "cut"
        self._times = 0
        self.fired = 0
        self.statements: list[bytes] = []
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def arm(self, prefix: str, mode: str, times: int = 1) -> None:
        with self._lock:
            self._prefix, self._mode, self._times = prefix.encode(), mode, times

    def cut_all(self) -> None:
        for sock in list(self._sockets):
            _close(sock)

    def close(self) -> None:
        self._listener.close()
        self.cut_all()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(self._target)
            self._sockets += [client, server]
            state = {"withhold": False}
            threading.Thread(target=self._client_to_server, args=(client, server, state), daemon=True).start()
            threading.Thread(target=self._server_to_client, args=(server, client, state), daemon=True).start()

    def _client_to_server(self, client: socket.socket, server: socket.socket, state: dict[str, Any]) -> None:
        buffer = b""
        while data := _recv(client):
            buffer += data
            while len(buffer) >= 4 and len(buffer) >= 4 + int.from_bytes(buffer[:3], "little"):
                length = int.from_bytes(buffer[:3], "little")
                packet, buffer = buffer[: 4 + length], buffer[4 + length :]
                action = self._inspect(packet[4:])
                if action == "drop":
                    _close(client)
                    _close(server)
                    return
                if action is not None:
                    state["withhold"] = True  # before sending: the reply must not slip through
                try:
                    server.sendall(packet)
                except OSError:
                    return
                if action == "cut":
                    _close(client)
                    _close(server)
                    return
        _close(server)

    def _inspect(self, payload: bytes) -> str | None:
        if payload[:1] != bytes([COM_QUERY]):
            return None
        with self._lock:
            self.statements.append(payload[1:])
            if self._times and payload[1:].startswith(self._prefix):
                self._times -= 1
                self.fired += 1
                return self._mode
        return None

    def _server_to_client(self, server: socket.socket, client: socket.socket, state: dict[str, Any]) -> None:
        while data := _recv(server):
            if state["withhold"]:
                continue  # like a hung network: nothing more reaches the client
            try:
                client.sendall(data)
            except OSError:
                break
        _close(client)


def _recv(sock: socket.socket) -> bytes:
    try:
        return sock.recv(65536)
    except OSError:
        return b""


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()


@pytest.fixture(scope="module")
def server(mariadb_factory: Callable[..., MariaDBServer]) -> MariaDBServer:
    return mariadb_factory(max_connections=40)


@pytest.fixture(scope="module")
def accounts(server: MariaDBServer) -> Accounts:
    return create_master(server)


def proxy_config(server: MariaDBServer, accounts: Accounts, **overrides: Any) -> ProxyConfig:
    """The stand-in in password mode, logging in to the DB as the application user, like its secret says."""
    fields: dict[str, Any] = dict(
        backend_host=server.host,
        backend_port=server.port,
        accounts=(StaticAccount(accounts.app_user, accounts.app_password),),
        db_max_connections=40,
        max_connections_percent=50,
        connection_borrow_timeout=10,
    )
    fields.update(overrides)
    return ProxyConfig(**fields)


@pytest.fixture
def table(server: MariaDBServer, accounts: Accounts) -> str:
    name = new_table()
    migrate(server, accounts, name)  # also creates the application user the stand-in logs in as
    return name


@pytest.fixture
def proxy(server: MariaDBServer, accounts: Accounts, table: str) -> Iterator[ProxyServer]:
    with ProxyServer(proxy_config(server, accounts)) as running:
        yield running


@pytest.fixture
def relay(proxy: ProxyServer) -> Iterator[ReplyCuttingRelay]:
    relay = ReplyCuttingRelay(proxy.port)
    yield relay
    relay.close()


def make_store(server: MariaDBServer, accounts: Accounts, port: int, table: str) -> AccessTimesStore:
    return AccessTimesStore(
        settings(server, accounts.app_user, accounts.app_password, table, port, connect_timeout=3),
        logging.getLogger("test_handler_exactly_once"),
    )


def now() -> datetime:
    return datetime.now(UTC)


def in_seconds(seconds: float) -> Deadline:
    return Deadline(time.monotonic() + seconds)


def when(condition: Callable[[], bool], then: Callable[[], None], timeout: float = 10.0) -> threading.Thread:
    """In the background: wait until ``condition()`` holds, then run ``then()``."""

    def watch() -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end and not condition():
            time.sleep(0.01)
        then()

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def committed(server: MariaDBServer, table: str, request_id: str) -> Callable[[], bool]:
    query = f"SELECT COUNT(*) FROM `{table}` WHERE request_id = %s"
    return lambda: int(admin_query(server, query, (request_id,))[0][0]) == 1


def test_a_warm_get_is_one_statement_and_returns_the_proxys_connection_at_once(
    server: MariaDBServer, accounts: Accounts, table: str, proxy: ProxyServer, relay: ReplyCuttingRelay
) -> None:
    store = make_store(server, accounts, relay.port, table)
    try:
        store.record_access(now(), "warm-up")  # connect, the schema version check
        relay.statements.clear()
        for i in range(5):
            store.record_access(now(), f"r{i}", in_seconds(10))
            stats = proxy.stats()
            assert stats["backend_connections"] - stats["idle_backends"] == 0  # nothing held between requests
        assert [statement.split(b"(")[0] for statement in relay.statements] == [f"CALL `{table}_store`".encode()] * 5
        assert proxy.stats()["pinned_sessions_total"] == 0
    finally:
        store.close()
    assert stored(server, table) == (6, 6, ["warm-up", "r0", "r1", "r2", "r3", "r4"])


def test_cut_before_the_statement_reaches_the_proxy_stores_once(
    server: MariaDBServer, accounts: Accounts, table: str, relay: ReplyCuttingRelay
) -> None:
    store = make_store(server, accounts, relay.port, table)
    try:
        store.record_access(now(), "warm-up")
        relay.arm("CALL", "drop")
        snapshot = store.record_access(now(), "req-dropped", in_seconds(10))  # lost, reconnect, send again
    finally:
        store.close()
    assert relay.fired == 1 and snapshot.replayed is False and snapshot.total == 2
    assert stored(server, table) == (2, 2, ["warm-up", "req-dropped"])


def test_cut_after_the_statement_was_sent_stores_once(
    server: MariaDBServer, accounts: Accounts, table: str, relay: ReplyCuttingRelay
) -> None:
    store = make_store(server, accounts, relay.port, table)
    lock = server.admin_connect(database=server.database)
    try:
        store.record_access(now(), "warm-up")
        holder = lock.cursor()  # holds every counter shard, so the sent statement waits inside the database
        holder.execute("START TRANSACTION")
        holder.execute(f"SELECT * FROM `{table}_count` FOR UPDATE")
        holder.fetchall()
        relay.arm("CALL", "cut")
        release = when(lambda: relay.fired == 1, lambda: lock.commit())
        snapshot = store.record_access(now(), "req-cut", in_seconds(10))
        release.join()
    finally:
        store.close()
        lock.close()
    # The first attempt either committed (the retry found its row) or was rolled back (the retry stored it).
    assert snapshot.total == 2
    wait_for_no_open_transactions(server)
    assert stored(server, table) == (2, 2, ["warm-up", "req-cut"])


def test_reply_lost_after_the_commit_is_answered_from_the_stored_row(
    server: MariaDBServer, accounts: Accounts, table: str, relay: ReplyCuttingRelay
) -> None:
    store = make_store(server, accounts, relay.port, table)
    try:
        store.record_access(now(), "warm-up")
        relay.arm("CALL", "stall")  # the reply is withheld; cut only once the row is committed
        cutter = when(committed(server, table, "req-committed"), relay.cut_all)
        snapshot = store.record_access(now(), "req-committed", in_seconds(10))
        cutter.join()
    finally:
        store.close()
    assert relay.fired == 1 and snapshot.replayed is True and snapshot.total == 2
    assert snapshot.newest.count(snapshot.inserted) == 1
    assert stored(server, table) == (2, 2, ["warm-up", "req-committed"])


def test_reply_lost_twice_is_an_unknown_outcome_never_a_503(
    server: MariaDBServer, accounts: Accounts, table: str, relay: ReplyCuttingRelay
) -> None:
    """Neither attempt hears back: a 502 ("may have been stored"), still before the deadline; asked again, the same
    request is answered from the one row both attempts left."""
    store = make_store(server, accounts, relay.port, table)
    try:
        store.record_access(now(), "warm-up")
        relay.arm("CALL", "stall", times=2)
        started = time.monotonic()
        with pytest.raises(OutcomeUnknown) as unknown:
            store.record_access(now(), "req-unknown", in_seconds(3))
        # Both reads timed out, each bounded by the time left; the deadline's margin (500 ms by default) absorbs
        # the reconnect and Python's own overhead, so the answer comes before the function timeout.
        assert time.monotonic() - started < 3 + 0.5 and unknown.value.errno == 3024
        assert relay.fired == 2
        again = store.record_access(now(), "req-unknown", in_seconds(10))
    finally:
        store.close()
    assert again.replayed and again.total == 2
    assert stored(server, table) == (2, 2, ["warm-up", "req-unknown"])


def test_no_time_left_to_send_is_a_503_and_nothing_was_sent(
    server: MariaDBServer, accounts: Accounts, table: str, relay: ReplyCuttingRelay
) -> None:
    store = make_store(server, accounts, relay.port, table)
    try:
        store.record_access(now(), "warm-up")
        relay.statements.clear()
        with pytest.raises(DatabaseUnavailable) as refused:
            store.record_access(now(), "req-late", in_seconds(0.5))
        assert not isinstance(refused.value, OutcomeUnknown)
        assert relay.statements == []
    finally:
        store.close()
    assert stored(server, table)[2] == ["warm-up"]


def test_a_connection_the_proxy_closed_while_idle_is_replaced_before_sending(
    server: MariaDBServer, accounts: Accounts, table: str
) -> None:
    with ProxyServer(proxy_config(server, accounts, idle_client_timeout=1)) as proxy:
        relay = ReplyCuttingRelay(proxy.port)
        store = make_store(server, accounts, relay.port, table)
        try:
            store.record_access(now(), "warm-up")
            end = time.monotonic() + 10
            while proxy.stats()["idle_client_timeouts"] == 0 and time.monotonic() < end:
                time.sleep(0.05)  # the proxy closes the idle client
            relay.statements.clear()
            snapshot = store.record_access(now(), "after-idle", in_seconds(10))
        finally:
            store.close()
            relay.close()
    assert snapshot.total == 2 and not snapshot.replayed
    calls = [statement for statement in relay.statements if statement.startswith(b"CALL")]
    assert len(calls) == 1  # sent once, on the new connection
    assert stored(server, table) == (2, 2, ["warm-up", "after-idle"])


def test_the_proxys_borrow_timeout_is_a_503_and_stores_nothing(
    server: MariaDBServer, accounts: Accounts, table: str
) -> None:
    """The stand-in answers 9501 before the statement reaches the database: a 503 that keeps its promise."""
    one_backend = proxy_config(
        server,
        accounts,
        db_max_connections=10,
        max_connections_percent=10,
        max_idle_connections_percent=10,
        connection_borrow_timeout=1,
    )
    with ProxyServer(one_backend) as proxy:
        store = make_store(server, accounts, proxy.port, table)
        holder = mysql.connector.connect(
            host=proxy.host,
            port=proxy.port,
            user=accounts.app_user,
            password=accounts.app_password,
            database=server.database,
            use_pure=True,
        )
        try:
            store.record_access(now(), "warm-up")
            cursor = holder.cursor()
            cursor.execute("START TRANSACTION")  # keeps the pool's only backend
            cursor.execute("SELECT 1")
            cursor.fetchall()
            with pytest.raises(DatabaseUnavailable) as refused:
                store.record_access(now(), "req-no-backend", in_seconds(10))
            assert refused.value.errno == 9501 and not isinstance(refused.value, OutcomeUnknown)
            holder.rollback()
            assert store.record_access(now(), "req-later", in_seconds(10)).total == 2
        finally:
            store.close()
            holder.close()
    assert stored(server, table) == (2, 2, ["warm-up", "req-later"])


@UNTIMED
@given(st.text(max_size=200))
def test_request_key_is_short_printable_ascii_and_stable(raw: str) -> None:
    key = request_key(raw)
    assert 1 <= len(key) <= 64 and key.isascii() and key.isprintable()
    if raw:
        assert request_key(raw) == key  # the same request always maps to the same row
    if raw and len(raw) <= 64 and raw.isascii() and raw.isprintable():
        assert key == raw  # ids of API Gateway and Lambda are stored as they are


@UNTIMED
@given(st.text(min_size=1, max_size=100), st.text(min_size=1, max_size=100))
def test_distinct_request_ids_get_distinct_keys(a: str, b: str) -> None:
    if a != b:
        assert request_key(a) != request_key(b)


@UNTIMED
@given(st.datetimes(min_value=datetime(1000, 1, 1), max_value=datetime(9999, 12, 31)))
def test_stored_times_become_the_iso_8601_utc_text_of_the_same_moment(moment: datetime) -> None:
    wire = moment.strftime("%Y-%m-%d %H:%M:%S.%f").encode()  # DATETIME(6) in the text protocol
    text = iso_utc(wire)
    assert text == moment.isoformat(timespec="microseconds") + "Z"
    assert datetime.fromisoformat(text.removesuffix("Z")) == moment


@UNTIMED
@given(st.floats(min_value=-5, max_value=900, allow_nan=False), st.booleans())
def test_socket_timeout_never_outlasts_the_deadline_and_leaves_the_retry_half(left: float, first: bool) -> None:
    deadline = Deadline(time.monotonic() + left)
    try:
        timeout = deadline.socket_timeout(keep_for_retry=first)
    except DatabaseUnavailable:
        assert left < 1.0 + 0.05  # under a second left: the driver would read 0 as "wait forever"
        return
    assert timeout is not None and 1 <= timeout <= left  # whole seconds, rounded down
    if first and left >= 2:
        assert timeout <= left / 2  # the retry keeps at least as much time as the first attempt had


@UNTIMED
@given(st.integers(min_value=0, max_value=900_000), st.integers(min_value=50, max_value=5000))
def test_deadline_from_the_lambda_context_keeps_the_margin(remaining_ms: int, margin_ms: int) -> None:
    class Context:
        def get_remaining_time_in_millis(self) -> int:
            return remaining_ms

    left = Deadline.from_context(Context(), margin_ms).seconds_left()
    assert left is not None and left <= (remaining_ms - margin_ms) / 1000
    assert Deadline.from_context(object(), margin_ms).seconds_left() is None  # no context: no deadline
