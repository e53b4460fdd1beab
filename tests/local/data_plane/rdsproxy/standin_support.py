"""Shared set-up of the RDS Proxy stand-in's tests: configs and accounts, clients, raw wire helpers, polling.

Real-component tests build a stand-in in front of a private MariaDB with ``standin_config``; the client user is a
real DB user (``client_account``), because the stand-in logs in to the DB as the user the client logged in as.
Unit and property tests use ``UNIT_FIELDS`` and the packet builders instead.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import subprocess
from collections.abc import Callable
from typing import Any

import mysql.connector

from local.data_plane.rdsproxy import ProxyConfig, StaticAccount
from local.data_plane.rdsproxy.constants import ServerStatus
from local.data_plane.rdsproxy.protocol import lenenc_int, packet
from tests.sync_support import wait_until

CLIENT_USER = "lambda"
CLIENT_PASSWORD = "proxy-client-pw"
SOCKET_TIMEOUT = 10.0
#: Settings of a stand-in that never starts (config validation, pure parts).
UNIT_FIELDS: dict[str, Any] = dict(
    backend_host="127.0.0.1", backend_port=3306, accounts=(StaticAccount("app", "s"),), db_max_connections=65
)


# -- accounts and configs ---------------------------------------------------------------------------
def add_db_user(db, user: str, password: str) -> StaticAccount:
    """Create (or reset) a DB user with every right on the test database; its stand-in account."""
    with contextlib.closing(db.admin_connect()) as admin:
        cursor = admin.cursor()
        cursor.execute("CREATE USER IF NOT EXISTS %s@'%%' IDENTIFIED BY %s", (user, password))
        cursor.execute("ALTER USER %s@'%%' IDENTIFIED BY %s", (user, password))
        cursor.execute(f"GRANT ALL PRIVILEGES ON `{db.database}`.* TO %s@'%%'", (user,))
    return StaticAccount(user, password)


def client_account(db, password: str = CLIENT_PASSWORD) -> StaticAccount:
    """The account clients of the tests log in as (``CLIENT_USER``), created in ``db``."""
    return add_db_user(db, CLIENT_USER, password)


def standin_config(db, **overrides: Any) -> ProxyConfig:
    """A stand-in in front of ``db`` for ``CLIENT_USER``: cap 45 of 65, borrow timeout 10 s, idle up to the cap."""
    fields: dict[str, Any] = dict(
        backend_host=db.host,
        backend_port=db.port,
        db_max_connections=65,
        max_connections_percent=70,
        connection_borrow_timeout=10,
    )
    fields.update(overrides)
    if "accounts" not in fields:
        fields["accounts"] = (client_account(db),)
    fields.setdefault("max_idle_connections_percent", fields["max_connections_percent"])
    return ProxyConfig(**fields)


# -- clients ------------------------------------------------------------------------------------------
def connect(proxy, db, **options: Any):
    """mysql-connector (pure Python, as the handler uses it) to the stand-in as ``CLIENT_USER``."""
    params: dict[str, Any] = dict(
        host=proxy.host,
        port=proxy.port,
        user=CLIENT_USER,
        password=CLIENT_PASSWORD,
        database=db.database,
        use_pure=True,
        connection_timeout=SOCKET_TIMEOUT,
    )
    params.update(options)
    return mysql.connector.connect(**params)


def fetch(conn, sql: str, params: tuple = (), **cursor_options: Any):
    """(description, rows) of one statement."""
    cursor = conn.cursor(**cursor_options)
    cursor.execute(sql, params)
    rows = cursor.fetchall() if cursor.with_rows else []
    description = cursor.description
    cursor.close()
    return description, rows


def select_one(proxy, db, **options: Any) -> list:
    """A well-behaved client connects, runs ``SELECT 1`` and leaves."""
    with contextlib.closing(connect(proxy, db, **options)) as conn:
        return fetch(conn, "SELECT 1")[1]


def mariadb_cli(host: str, port: int, user: str, password: str, database: str, sql: str, *options: str):
    """The real ``mariadb`` client, password from the environment (never argv)."""
    return subprocess.run(
        ["mariadb", "--no-defaults", "--default-character-set=utf8mb4", "-h", host, "-P", str(port), "-u", user]
        + ["--batch", *options, database]
        + ["-e", sql],
        env=dict(os.environ, MYSQL_PWD=password),
        capture_output=True,
        text=True,
        timeout=30,
    )


def settled_stats(proxy, check: Callable[[dict], Any], timeout: float = 5.0) -> dict:
    """Stats once ``check(stats)`` holds: the proxy counts an event just after the client has seen it."""
    box: dict = {}

    def settled() -> bool:
        box["stats"] = proxy.stats()
        return bool(check(box["stats"]))

    wait_until(settled, timeout)
    return box["stats"]


# -- raw wire ----------------------------------------------------------------------------------------
def recv_exact(sock: socket.socket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            raise ConnectionError(f"closed after {len(data)} of {count} bytes")
        data += chunk
    return data


def read_packet(sock: socket.socket) -> tuple[int, bytes]:
    header = recv_exact(sock, 4)
    return header[3], recv_exact(sock, int.from_bytes(header[:3], "little"))


def frame(seq: int, payload: bytes, length: int | None = None) -> bytes:
    """A wire packet; ``length`` overrides the header's length (lying headers)."""
    size = len(payload) if length is None else length
    return size.to_bytes(3, "little") + bytes((seq & 0xFF,)) + payload


def read_until_closed(sock: socket.socket, limit: int = 1 << 20) -> bytes:
    """Everything the proxy sends until it closes (a reset counts as a close)."""
    data = b""
    while len(data) < limit:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
    return data


def split_packets(data: bytes) -> list[bytes]:
    """Payloads of the complete packets in ``data`` (a trailing partial packet is dropped)."""
    payloads, pos = [], 0
    while pos + 4 <= len(data):
        length = int.from_bytes(data[pos : pos + 3], "little")
        if pos + 4 + length > len(data):
            break
        payloads.append(data[pos + 4 : pos + 4 + length])
        pos += 4 + length
    return payloads


# -- server replies, built by hand (unit and property tests) -----------------------------------------
def ok(status: int = ServerStatus.AUTOCOMMIT, header: bytes = b"\x00", affected: int = 0) -> bytes:
    return header + lenenc_int(affected) + b"\x00" + struct.pack("<HH", status, 0)


def eof(status: int = ServerStatus.AUTOCOMMIT) -> bytes:
    return b"\xfe" + struct.pack("<HH", 0, status)


def coldef(name: bytes = b"a") -> bytes:
    fixed = b"\x0c\x21\x00\x0b\x00\x00\x00\x08\x00\x00\x00\x00\x00"  # charset, length, type, flags
    return b"\x03def\x00\x00\x00" + bytes((len(name),)) + name + b"\x00" + fixed


def result_set(deprecate_eof: bool, rows: list[bytes], status: int = ServerStatus.AUTOCOMMIT, seq: int = 1) -> bytes:
    """A two-column text result set with ``rows`` (raw row payloads), ending with ``status``."""
    out = [packet(seq, b"\x02")]
    for name in (b"a", b"b"):
        seq += 1
        out.append(packet(seq, coldef(name)))
    if not deprecate_eof:
        seq += 1
        out.append(packet(seq, eof()))
    for row in rows:
        seq += 1
        out.append(packet(seq, row))
    seq += 1
    out.append(packet(seq, ok(status, b"\xfe") if deprecate_eof else eof(status)))
    return b"".join(out)
