"""The RDS Proxy stand-in against hostile clients: malformed logins, oversized packets, fuzzed bytes.

Every test talks to a real stand-in in front of a real MariaDB over real sockets. After each hostile
exchange a normal client must still connect and run ``SELECT 1``: one bad client must never cost the
proxy (the defect these guard against froze its event loop at 100 % CPU on a 39-byte packet).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import struct
import threading

import mysql.connector
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from local.data_plane.rdsproxy import ProxyServer
from local.data_plane.rdsproxy.constants import Capability, Command
from local.data_plane.rdsproxy.protocol import MAX_PAYLOAD, parse_err
from tests.local.data_plane.rdsproxy.standin_support import (
    CLIENT_USER,
    SOCKET_TIMEOUT,
    client_account,
    frame,
    read_packet,
    read_until_closed,
    split_packets,
    standin_config,
)
from tests.local.data_plane.rdsproxy.standin_support import select_one as served

#: Empty: a handshake response captured once logs in again on any connection (no scramble in it).
CLIENT_PASSWORD = ""
MAX_ALLOWED_PACKET = 4096


@contextlib.contextmanager
def greeted(proxy):
    """A raw connection to the proxy that has read the server greeting."""
    sock = socket.create_connection((proxy.host, proxy.port), timeout=SOCKET_TIMEOUT)
    try:
        seq, greeting = read_packet(sock)
        assert seq == 0 and greeting[0] == 10  # protocol version 10
        yield sock
    finally:
        sock.close()


def error_of(payload: bytes) -> tuple[int, str, str]:
    assert payload[:1] == b"\xff", payload[:16]
    return tuple(parse_err(payload))


def handshake_fixed_part(capabilities: int) -> bytes:
    return struct.pack("<IIB", capabilities, 1 << 24, 45) + bytes(23)


CONNECTOR_LIKE = int(
    Capability.PROTOCOL_41
    | Capability.SECURE_CONNECTION
    | Capability.PLUGIN_AUTH
    | Capability.LONG_PASSWORD
    | Capability.TRANSACTIONS
    | Capability.PLUGIN_AUTH_LENENC_CLIENT_DATA
)


def capture_handshake_response(proxy, database: str) -> bytes:
    """The HandshakeResponse41 payload mysql-connector sends to this proxy (recorded by a fake server
    that forwards the proxy's real greeting)."""
    with socket.create_connection((proxy.host, proxy.port), timeout=SOCKET_TIMEOUT) as upstream:
        seq, greeting = read_packet(upstream)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(SOCKET_TIMEOUT)
    port = listener.getsockname()[1]

    def client() -> None:
        with contextlib.suppress(mysql.connector.Error):
            mysql.connector.connect(
                host="127.0.0.1",
                port=port,
                user=CLIENT_USER,
                password=CLIENT_PASSWORD,
                database=database,
                use_pure=True,
                connection_timeout=5,
            ).close()

    thread = threading.Thread(target=client, daemon=True)
    thread.start()
    try:
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(SOCKET_TIMEOUT)
            conn.sendall(frame(seq, greeting))
            _, response = read_packet(conn)
    finally:
        listener.close()
        thread.join(10)
    return response


# -- fixtures -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def db(mariadb_factory):
    return mariadb_factory(max_connections=30)


@pytest.fixture(scope="module")
def proxy(db):
    config = standin_config(
        db,
        accounts=(client_account(db, CLIENT_PASSWORD),),
        db_max_connections=30,
        max_connections_percent=50,
        connection_borrow_timeout=10,
        login_timeout=2,
        client_write_timeout=5,
        max_allowed_packet=MAX_ALLOWED_PACKET,
    )
    with ProxyServer(config) as server:
        yield server


@pytest.fixture(scope="module")
def valid_login(proxy, db) -> bytes:
    response = capture_handshake_response(proxy, db.database)
    with greeted(proxy) as sock:  # the captured packet really logs in
        sock.sendall(frame(1, response))
        _, reply = read_packet(sock)
        assert reply[:1] == b"\x00", reply
    return response


def select_one(proxy, db) -> None:
    """A well-behaved client still gets served."""
    assert served(proxy, db, password=CLIENT_PASSWORD) == [(1,)]


@pytest.fixture
def no_unexpected_errors(caplog):
    """Hostile bytes must be handled (debug log), never reach the catch-all that logs a bug."""
    caplog.set_level(logging.DEBUG, logger="local.data_plane.rdsproxy")
    yield
    bugs = [r for r in caplog.records if r.name.startswith("local.data_plane.rdsproxy") and r.levelno >= logging.ERROR]
    assert not bugs, [r.getMessage() for r in bugs]


# -- regressions ----------------------------------------------------------------------------------
def test_user_name_without_terminating_nul_is_a_bad_handshake_not_a_frozen_proxy(proxy, db, no_unexpected_errors):
    packet = handshake_fixed_part(CONNECTOR_LIKE) + b"lambdaX"  # 39 bytes, no NUL after the user name
    assert len(packet) == 39
    with greeted(proxy) as sock:
        sock.sendall(frame(1, packet))
        payloads = split_packets(read_until_closed(sock))
    assert len(payloads) == 1
    assert error_of(payloads[0]) == (1043, "Bad handshake", "08S01")
    select_one(proxy, db)


ALL_BUT_SSL = 0xFFFFFFFF ^ Capability.SSL.value


@pytest.mark.parametrize("capabilities", [Capability.PROTOCOL_41.value, CONNECTOR_LIKE, ALL_BUT_SSL])
def test_32_byte_handshake_response_is_a_bad_handshake_with_an_error_packet(
    proxy, db, capabilities, no_unexpected_errors
):
    """Only the fixed part, no user name: it used to be taken for a TLS request and raised AttributeError."""
    with greeted(proxy) as sock:
        sock.sendall(frame(1, handshake_fixed_part(capabilities)))
        payloads = split_packets(read_until_closed(sock))
    assert [error_of(x) for x in payloads] == [(1043, "Bad handshake", "08S01")]
    select_one(proxy, db)


@pytest.mark.parametrize("plugin", [b"mysql_native_password", b"caching_sha2_password"])
def test_32_byte_auth_token_is_answered_with_access_denied(proxy, db, plugin, no_unexpected_errors):
    packet = (
        handshake_fixed_part(CONNECTOR_LIKE)
        + CLIENT_USER.encode()
        + b"\x00"
        + b"\x20"
        + bytes(range(32))
        + plugin
        + b"\x00"
    )
    with greeted(proxy) as sock:
        sock.sendall(frame(1, packet))
        seq, reply = read_packet(sock)
        if reply[:1] == b"\xfe":  # switched to mysql_native_password: answer with 32 bytes again
            sock.sendall(frame(seq + 1, bytes(range(32))))
            seq, reply = read_packet(sock)
        code, message, sqlstate = error_of(reply)
    assert (code, sqlstate) == (1045, "28000") and "Access denied for user 'lambda'" in message
    select_one(proxy, db)


def test_oversized_packet_before_login_is_refused_unread(proxy, db, no_unexpected_errors):
    with greeted(proxy) as sock:
        sock.sendall(frame(1, b"", length=MAX_PAYLOAD))  # announces 16 MiB, sends none of it
        payloads = split_packets(read_until_closed(sock))
    assert [error_of(x)[0] for x in payloads] == [1043]
    with greeted(proxy) as sock:  # ten such packets used to be buffered whole (40 -> 202 MB)
        sock.sendall(frame(1, b"\x00" * 65536, length=MAX_PAYLOAD))
        assert error_of(split_packets(read_until_closed(sock))[0])[0] == 1043
    select_one(proxy, db)


def test_client_that_does_not_finish_login_is_dropped_after_login_timeout(proxy, db, no_unexpected_errors):
    before = proxy.stats()["login_timeouts"]
    with greeted(proxy) as sock:
        sock.sendall(frame(1, handshake_fixed_part(CONNECTOR_LIKE)[:10], length=200))  # and then nothing
        assert read_until_closed(sock) == b""  # closed by the proxy (socket timeout is 10 s, login 2 s)
    assert proxy.stats()["login_timeouts"] == before + 1
    select_one(proxy, db)


def test_command_above_max_allowed_packet_gets_1153_and_the_connection_is_closed(proxy, db, no_unexpected_errors):
    with contextlib.closing(
        mysql.connector.connect(
            host=proxy.host,
            port=proxy.port,
            user=CLIENT_USER,
            password=CLIENT_PASSWORD,
            database=db.database,
            use_pure=True,
            connection_timeout=SOCKET_TIMEOUT,
        )
    ) as conn:
        cur = conn.cursor()
        cur.execute("SELECT %s", ("x" * (MAX_ALLOWED_PACKET - 100),))  # under the limit: served
        assert len(cur.fetchall()[0][0]) == MAX_ALLOWED_PACKET - 100
        with pytest.raises(mysql.connector.Error) as caught:
            cur.execute("SELECT %s", ("x" * (MAX_ALLOWED_PACKET + 1),))
        assert (caught.value.errno, caught.value.sqlstate) == (1153, "08S01")
        assert "max_allowed_packet" in caught.value.msg
        assert not conn.is_connected()
    select_one(proxy, db)


def test_oversized_multi_packet_command_is_refused_at_its_first_header(proxy, db, valid_login, no_unexpected_errors):
    with greeted(proxy) as sock:
        sock.sendall(frame(1, valid_login))
        assert read_packet(sock)[1][:1] == b"\x00"
        sock.sendall(frame(0, b"\x03SELECT 1", length=MAX_PAYLOAD))  # 16 MiB announced, 9 bytes sent
        payloads = split_packets(read_until_closed(sock))
    assert [error_of(x)[:1] for x in payloads] == [(1153,)]
    assert proxy.stats()["oversized_packets"] >= 1
    select_one(proxy, db)


# -- property-based fuzzing -----------------------------------------------------------------------
def _mutations():
    index = st.integers(min_value=0, max_value=400)
    byte = st.integers(min_value=0, max_value=255)
    return st.one_of(
        st.tuples(st.just("truncate"), index),
        st.tuples(st.just("flip"), index, byte),
        st.tuples(st.just("insert"), index, st.binary(min_size=1, max_size=40)),
        st.tuples(st.just("drop_nuls"), index),
        st.tuples(st.just("capabilities"), st.integers(min_value=0, max_value=0xFFFFFFFF)),
        st.tuples(st.just("lenenc"), index, st.sampled_from([0xFB, 0xFC, 0xFD, 0xFE, 0xFF])),
    )


def mutate(packet: bytes, mutation) -> bytes:
    kind, *args = mutation
    if kind == "truncate":
        return packet[: args[0] % (len(packet) + 1)]
    if not packet:
        return packet
    position = args[0] % len(packet)
    if kind == "flip":
        return packet[:position] + bytes((args[1],)) + packet[position + 1 :]
    if kind == "insert":
        return packet[:position] + args[1] + packet[position:]
    if kind == "drop_nuls":  # strings lose their terminators from here on
        return packet[:position] + packet[position:].replace(b"\x00", b"A")
    if kind == "capabilities":
        return struct.pack("<I", args[0]) + packet[4:]
    return packet[:position] + bytes((args[1],)) + packet[position + 1 :]  # a length-encoded prefix


LENGTHS = st.one_of(
    st.none(), st.integers(min_value=0, max_value=MAX_PAYLOAD), st.sampled_from([0, 1, 31, 32, 33, MAX_PAYLOAD])
)
SAFE_COMMANDS = st.sampled_from(
    [
        Command.QUERY,
        Command.PING,
        Command.INIT_DB,
        Command.FIELD_LIST,
        Command.STATISTICS,
        Command.RESET_CONNECTION,
        Command.CHANGE_USER,
        Command.STMT_PREPARE,
        Command.SLEEP,
        Command.SET_OPTION,
        Command.STMT_RESET,
        0x7F,
        0xFF,
    ]
)  # not SHUTDOWN, PROCESS_KILL or DEBUG: they would be piped to the real database


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    mutations=st.lists(_mutations(), min_size=1, max_size=4),
    seq=st.integers(0, 255),
    length=LENGTHS,
    trailer=st.binary(max_size=64),
    random_base=st.one_of(st.none(), st.binary(max_size=300)),
)
def test_fuzzed_handshake_responses_never_cost_the_proxy(
    proxy, db, valid_login, no_unexpected_errors, mutations, seq, length, trailer, random_base
):
    packet = valid_login if random_base is None else random_base  # mostly the captured login, mutated
    for mutation in mutations:
        packet = mutate(packet, mutation)
    with greeted(proxy) as sock:
        sock.sendall(frame(seq, packet, length) + trailer)
        sock.shutdown(socket.SHUT_WR)
        replies = split_packets(read_until_closed(sock))  # the proxy must close, not hang
    for reply in replies:  # only OK, ERR or an auth switch request, never anything half-built
        assert reply[:1] in (b"\x00", b"\xff", b"\xfe"), reply[:16]
    select_one(proxy, db)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    commands=st.lists(
        st.tuples(SAFE_COMMANDS, st.binary(max_size=80), st.integers(0, 255), LENGTHS), min_size=1, max_size=4
    )
)
def test_fuzzed_commands_after_login_never_cost_the_proxy(proxy, db, valid_login, no_unexpected_errors, commands):
    with greeted(proxy) as sock:
        sock.sendall(frame(1, valid_login))
        assert read_packet(sock)[1][:1] == b"\x00"
        sock.sendall(b"".join(frame(seq, bytes((command,)) + body, length) for command, body, seq, length in commands))
        sock.shutdown(socket.SHUT_WR)
        read_until_closed(sock, limit=16 << 20)
    select_one(proxy, db)
