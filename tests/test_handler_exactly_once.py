"""Exactly one row per request, and a 503 stores nothing: the handler's store against a real MariaDB,
reached through a TCP relay that drops or withholds chosen server replies (as a network cut would)."""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from handler.app_db import DatabaseUnavailable, Deadline
from handler.app_settings import Settings
from handler.app_store import AccessTimesStore, OutcomeUnknown, request_key
from local.data_plane.mariadb import MariaDBServer

COM_QUERY = 0x03


class ReplyCuttingRelay:
    """Forwards 127.0.0.1:<port> to MariaDB. Armed with a statement prefix, it lets that statement through
    and then, instead of forwarding the server's reply, either cuts both sockets ("cut") or withholds the
    reply and everything after it ("stall"). ``times`` arms that many statements, then it disarms."""

    def __init__(self, target_port: int) -> None:
        self._target = ("127.0.0.1", target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._prefix: bytes | None = None
        self._mode = "cut"
        self._times = 0
        self.fired = 0
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def arm(self, prefix: str, mode: str = "cut", times: int = 1) -> None:
        with self._lock:
            self._prefix, self._mode, self._times = prefix.encode(), mode, times

    def close(self) -> None:
        self._listener.close()
        for sock in list(self._sockets):
            _close(sock)

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
                payload, buffer = buffer[4 : 4 + length], buffer[4 + length :]
                with self._lock:
                    if self._times and payload[:1] == bytes([COM_QUERY]) and payload[1:].startswith(self._prefix):
                        self._times -= 1
                        self.fired += 1
                        state["withhold"] = self._mode
            try:
                server.sendall(data)
            except OSError:
                break
        _close(server)

    def _server_to_client(self, server: socket.socket, client: socket.socket, state: dict[str, Any]) -> None:
        while data := _recv(server):
            if state["withhold"] == "cut":
                break  # the statement ran; its reply never arrives
            if state["withhold"] == "stall":
                continue  # like a hung network: nothing more reaches the client
            try:
                client.sendall(data)
            except OSError:
                break
        _close(client)
        _close(server)


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


@pytest.fixture
def relay(server: MariaDBServer) -> Iterator[ReplyCuttingRelay]:
    relay = ReplyCuttingRelay(server.port)
    yield relay
    relay.close()


def make_store(server: MariaDBServer, port: int, table: str) -> AccessTimesStore:
    settings = Settings(
        host="127.0.0.1",
        port=port,
        database=server.database,
        user=server.app_user,
        auth="password",
        password=server.app_password,
        table=table,
        connect_timeout=3,
    )
    return AccessTimesStore(settings, logging.getLogger("test_handler_exactly_once"))


def stored(server: MariaDBServer, table: str) -> tuple[int, int, list[str | None]]:
    """(COUNT(*), SUM of the counter shards, request ids) as the database has them."""
    with server.admin_connect(database=server.database) as admin:
        cursor = admin.cursor()
        cursor.execute(f"SELECT COUNT(*) FROM `{table}`")
        (rows,) = cursor.fetchone()
        cursor.execute(f"SELECT COALESCE(SUM(n), 0) FROM `{table}_count`")
        (counted,) = cursor.fetchone()
        cursor.execute(f"SELECT request_id FROM `{table}` ORDER BY id")
        ids = [row[0] for row in cursor.fetchall()]
    return int(rows), int(counted), ids


def now() -> datetime:
    return datetime.now(UTC)


def test_lost_commit_reply_leaves_exactly_one_row(server: MariaDBServer, relay: ReplyCuttingRelay) -> None:
    table = f"t_{uuid.uuid4().hex[:12]}"
    store = make_store(server, relay.port, table)
    try:
        store.record_access(now(), "warm-up")  # schema ready, connection kept
        relay.arm("COMMIT", "cut")
        snapshot = store.record_access(now(), "req-lost-ok")  # committed, OK lost, reconnect, retry

        assert relay.fired == 1
        assert snapshot.replayed is True
        assert snapshot.total == 2
        assert snapshot.newest.count(snapshot.inserted_at.replace(tzinfo=None)) == 1
        assert stored(server, table) == (2, 2, ["warm-up", "req-lost-ok"])
    finally:
        store.close()


def test_lost_call_reply_before_commit_leaves_exactly_one_row(server: MariaDBServer, relay: ReplyCuttingRelay) -> None:
    table = f"t_{uuid.uuid4().hex[:12]}"
    store = make_store(server, relay.port, table)
    try:
        store.record_access(now(), "warm-up")
        relay.arm("CALL", "cut")  # the server rolls the open transaction back when the connection drops
        snapshot = store.record_access(now(), "req-lost-insert")

        assert relay.fired == 1 and snapshot.replayed is False and snapshot.total == 2
        assert stored(server, table) == (2, 2, ["warm-up", "req-lost-insert"])
    finally:
        store.close()


def test_same_request_id_again_is_answered_from_the_stored_row(server: MariaDBServer) -> None:
    table = f"t_{uuid.uuid4().hex[:12]}"
    store = make_store(server, server.port, table)
    try:
        first = store.record_access(now(), "req-same")
        again = store.record_access(now(), "req-same")
        assert (again.replayed, again.total, again.inserted_at) == (True, 1, first.inserted_at)
        assert stored(server, table) == (1, 1, ["req-same"])
    finally:
        store.close()


def test_failed_read_gives_503_and_stores_nothing(server: MariaDBServer, relay: ReplyCuttingRelay) -> None:
    table = f"t_{uuid.uuid4().hex[:12]}"
    store = make_store(server, relay.port, table)
    try:
        store.record_access(now(), "warm-up")
        relay.arm("CALL", "cut", times=2)  # the write-and-read fails on both attempts, before COMMIT
        with pytest.raises(DatabaseUnavailable) as error:
            store.record_access(now(), "req-no-read")
        assert not isinstance(error.value, OutcomeUnknown)  # a 503: no COMMIT was sent
        assert relay.fired == 2
        _wait_for_rollback(server)
        assert stored(server, table) == (1, 1, ["warm-up"])  # the INSERT and UPDATE were rolled back
    finally:
        store.close()


def test_commit_reply_lost_twice_is_an_unknown_outcome_never_a_503(
    server: MariaDBServer, relay: ReplyCuttingRelay
) -> None:
    """When no attempt learns whether its COMMIT applied, a 503 ("nothing stored") could be a lie."""
    table = f"t_{uuid.uuid4().hex[:12]}"
    store = make_store(server, relay.port, table)
    try:
        store.record_access(now(), "warm-up")
        relay.arm("COMMIT", "cut", times=2)  # both attempts commit, neither hears back
        with pytest.raises(OutcomeUnknown):
            store.record_access(now(), "req-unknown")
        assert relay.fired == 2
        rows, total, ids = stored(server, table)
        assert rows == total == 2 and ids.count("req-unknown") == 1  # stored once, counted once
        again = store.record_access(now(), "req-unknown")  # the same request again: answered from that row
        assert again.replayed and again.total == 2
    finally:
        store.close()


def test_stalled_reply_gives_503_before_the_deadline_and_stores_nothing(
    server: MariaDBServer, relay: ReplyCuttingRelay
) -> None:
    table = f"t_{uuid.uuid4().hex[:12]}"
    store = make_store(server, relay.port, table)
    try:
        store.record_access(now(), "warm-up")
        relay.arm("CALL", "stall")
        started = time.monotonic()
        deadline = Deadline(started + 2.5)
        with pytest.raises(DatabaseUnavailable) as error:
            store.record_access(now(), "req-stalled", deadline)
        assert time.monotonic() - started < 2.5
        assert error.value.errno == 3024 and not isinstance(error.value, OutcomeUnknown)  # read timeout, a 503
        _wait_for_rollback(server)
        assert stored(server, table) == (1, 1, ["warm-up"])
    finally:
        store.close()


def test_hung_database_gives_503_from_the_handler_before_the_function_timeout(
    mariadb_factory: Callable[..., MariaDBServer],
) -> None:
    db = mariadb_factory(max_connections=10)
    table = f"t_{uuid.uuid4().hex[:12]}"
    store = make_store(db, db.port, table)

    class Context:  # the Lambda context: 3 s left of the function timeout
        aws_request_id = "req-hung"

        def __init__(self) -> None:
            self._end = time.monotonic() + 3.0

        def get_remaining_time_in_millis(self) -> int:
            return int((self._end - time.monotonic()) * 1000)

    assert db.pid is not None
    try:
        store.record_access(now(), "warm-up")
        os.kill(db.pid, signal.SIGSTOP)
        try:
            context = Context()
            started = time.monotonic()
            with pytest.raises(DatabaseUnavailable) as error:
                store.record_access(now(), context.aws_request_id, Deadline.from_context(context, 500))
            elapsed = time.monotonic() - started
            assert elapsed < 2.9 and context.get_remaining_time_in_millis() > 0
            assert error.value.errno == 3024
            assert store.connection_id is None

            cold = make_store(db, db.port, table)  # a cold container against the hung server: connect times out
            with pytest.raises(DatabaseUnavailable):
                cold.record_access(now(), "req-cold", Deadline(time.monotonic() + 1.5))
        finally:
            os.kill(db.pid, signal.SIGCONT)
        _wait_for_rollback(db)
        assert stored(db, table) == (1, 1, ["warm-up"])
        assert store.record_access(now(), "after").total == 2  # recovers on the next request
    finally:
        store.close()


def _wait_for_rollback(server: MariaDBServer, timeout: float = 5.0) -> None:
    """Until the server has noticed the dropped connections (and rolled their transactions back)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        rows = server._query_as_monitor("SELECT COUNT(*) FROM information_schema.INNODB_TRX")
        if int(rows[0][0]) == 0:
            return
        time.sleep(0.02)
    raise AssertionError("open transactions remained")


@given(st.text(max_size=200))
def test_request_key_is_short_printable_ascii_and_stable(raw: str) -> None:
    key = request_key(raw)
    assert 1 <= len(key) <= 64 and key.isascii() and key.isprintable()
    if raw:
        assert request_key(raw) == key  # the same request always maps to the same row
    if raw and len(raw) <= 64 and raw.isascii() and raw.isprintable():
        assert key == raw  # ids of API Gateway and Lambda are stored as they are


@given(st.text(min_size=1, max_size=100), st.text(min_size=1, max_size=100))
def test_distinct_request_ids_get_distinct_keys(a: str, b: str) -> None:
    if a != b:
        assert request_key(a) != request_key(b)


@given(st.floats(min_value=-5, max_value=900, allow_nan=False))
def test_socket_timeout_never_outlasts_the_deadline(left: float) -> None:
    deadline = Deadline(time.monotonic() + left)
    try:
        timeout = deadline.socket_timeout()
    except DatabaseUnavailable:
        assert left < 1.0 + 0.05  # under a second left: the driver would read 0 as "wait forever"
        return
    assert timeout is not None and 1 <= timeout <= left  # whole seconds, rounded down


@given(st.integers(min_value=0, max_value=900_000), st.integers(min_value=50, max_value=5000))
def test_deadline_from_the_lambda_context_keeps_the_margin(remaining_ms: int, margin_ms: int) -> None:
    class Context:
        def get_remaining_time_in_millis(self) -> int:
            return remaining_ms

    left = Deadline.from_context(Context(), margin_ms).seconds_left()
    assert left is not None and left <= (remaining_ms - margin_ms) / 1000
    assert Deadline.from_context(object(), margin_ms).seconds_left() is None  # no context: no deadline
