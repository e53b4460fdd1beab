"""Connection phase on both sides of the proxy.

Client side: the proxy is the server. Packets it sends come from ``mysql_mimic`` (greeting, auth
switch) and the password check is its ``mysql_native_password`` plugin; what the client sends is
parsed by the bounds-checked ``client_packets`` (never by mysql_mimic: client bytes are hostile).
Backend side: the proxy is a client. ``mysql.connector``'s protocol helpers parse the server
greeting and build the handshake response / auth-switch answers with the configured "secret".
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass

from mysql.connector.plugins import get_auth_plugin
from mysql.connector.protocol import MySQLProtocol
from mysql_mimic import packets as mimic_packets
from mysql_mimic.auth import NativePasswordAuthPlugin
from mysql_mimic.charset import CharacterSet
from mysql_mimic.types import Capabilities, ServerStatus

from . import protocol as p
from .client_packets import LOGIN_PACKET_LIMIT, MalformedPacket, parse_handshake_response

NATIVE = "mysql_native_password"
_native = NativePasswordAuthPlugin()
# Scramble bytes: printable ASCII without '$' (like MySQL's); os.urandom-based because
# mysql_mimic.utils.nonce draws each byte through SystemRandom (~0.1 ms per handshake).
_SCRAMBLE_ALPHABET = bytes(c for c in range(0x21, 0x7F) if c != 0x24)
_SCRAMBLE_TABLE = bytes(_SCRAMBLE_ALPHABET[i % len(_SCRAMBLE_ALPHABET)] for i in range(256))


def new_scramble(length: int = 20) -> bytes:
    return os.urandom(length).translate(_SCRAMBLE_TABLE)


class PacketTooLarge(Exception):
    """A packet's length header exceeds the limit; its payload was not read."""

    def __init__(self, seq: int, length: int, limit: int):
        super().__init__(f"packet of {length} bytes, limit {limit}")
        self.seq = seq


async def read_packet(reader: asyncio.StreamReader, limit: int = p.MAX_PAYLOAD) -> tuple[int, bytes]:
    """(sequence id, payload) of one wire packet; PacketTooLarge (unread) above ``limit`` bytes."""
    header = await reader.readexactly(4)
    length = header[0] | header[1] << 8 | header[2] << 16
    if length > limit:
        raise PacketTooLarge(header[3], length, limit)
    return header[3], await reader.readexactly(length) if length else b""


@dataclass(frozen=True)
class ServerInfo:
    """What the proxy tells clients about "the database" (taken from the real backend)."""

    version: str
    charset: int


@dataclass
class ClientLogin:
    """A client that passed authentication."""

    capabilities: int
    charset: int
    database: str | None
    username: str


class AuthFailed(Exception):
    pass


async def accept_client(
    reader, writer, *, connection_id: int, server: ServerInfo, user: str, password: str
) -> ClientLogin:
    """Greet a client, authenticate it with mysql_native_password, send OK.

    Clients that answer the greeting with another plugin (caching_sha2_password, ed25519, ...)
    are asked to switch to mysql_native_password. On failure the ERR packet (1043 bad handshake,
    1045 access denied, 1235 TLS) is sent here and AuthFailed raised; packets above
    LOGIN_PACKET_LIMIT are refused without being read.
    """
    scramble = new_scramble()
    greeting = mimic_packets.make_handshake_v10(
        capabilities=Capabilities(p.PROXY_CAPABILITIES),
        server_charset=CharacterSet.utf8mb4,
        server_version=server.version,
        connection_id=connection_id,
        auth_data=scramble + b"\x00",
        status_flags=ServerStatus(p.SERVER_STATUS_AUTOCOMMIT),
        auth_plugin_name=NATIVE,
    )
    # mysql_mimic writes utf8mb4's id; advertise the backend's default collation instead
    greeting = _with_greeting_charset(greeting, server.charset)
    writer.write(p.packet(0, greeting))
    seq, data = await _read_login_packet(reader, writer)
    if len(data) >= 4 and int.from_bytes(data[:4], "little") & p.CLIENT_SSL:
        _send_error(writer, seq + 1, p.ER_NOT_SUPPORTED, "The RDS Proxy stand-in does not support TLS", "08004")
        raise AuthFailed("client asked for TLS")
    try:
        parsed = parse_handshake_response(data, p.PROXY_CAPABILITIES)
    except MalformedPacket as exc:
        _send_error(writer, seq + 1, p.ER_HANDSHAKE_ERROR, "Bad handshake", "08S01")
        raise AuthFailed(f"malformed handshake response: {exc}") from None
    token = parsed.auth_response
    if (parsed.client_plugin or NATIVE) != NATIVE:
        seq += 1
        writer.write(
            p.packet(seq, mimic_packets.make_auth_switch_request(CharacterSet.utf8mb4, NATIVE, scramble + b"\x00"))
        )
        seq, token = await _read_login_packet(reader, writer)
    if parsed.username != user or not _password_matches(password, token, scramble):
        _send_error(
            writer,
            seq + 1,
            p.ER_ACCESS_DENIED,
            f"Access denied for user '{parsed.username}' (using password: {'YES' if token else 'NO'})",
            "28000",
        )
        raise AuthFailed(f"access denied for {parsed.username!r}")
    writer.write(p.packet(seq + 1, p.ok_payload()))
    return ClientLogin(
        capabilities=parsed.capabilities, charset=parsed.charset, database=parsed.database, username=parsed.username
    )


async def _read_login_packet(reader, writer) -> tuple[int, bytes]:
    try:
        return await read_packet(reader, LOGIN_PACKET_LIMIT)
    except PacketTooLarge as exc:
        _send_error(writer, exc.seq + 1, p.ER_HANDSHAKE_ERROR, "Bad handshake", "08S01")
        raise AuthFailed(f"login packet too large: {exc}") from None


def _password_matches(password: str, token: bytes, scramble: bytes) -> bool:
    if not password:
        return not token
    if len(token) != 20:  # a SHA1-based scramble answer, nothing else
        return False
    return _native.verify_scramble(NativePasswordAuthPlugin.create_auth_string(password), token, scramble)


def _with_greeting_charset(greeting: bytes, charset: int) -> bytes:
    version_end = greeting.index(b"\x00", 1)
    offset = version_end + 1 + 4 + 9 + 2  # conn id, auth data part 1 + filler, caps low
    return greeting[:offset] + bytes((charset,)) + greeting[offset + 1 :]


def _send_error(writer, seq: int, code: int, message: str, sqlstate: str) -> None:
    writer.write(p.packet(seq, p.err_payload(code, message, sqlstate)))


@dataclass
class BackendHandshake:
    connection_id: int
    version: str
    charset: int
    status: int


async def login_backend(
    reader, writer, *, user: str, password: str, database: str | None, charset: int | None, capabilities: int
) -> BackendHandshake:
    """Authenticate the proxy to MariaDB/MySQL on a fresh connection; raises ServerError."""
    seq, greeting = await read_packet(reader)
    if greeting[:1] == b"\xff":
        raise p.ServerError(*p.parse_err(greeting))
    hello = MySQLProtocol.parse_handshake(b"\x00\x00\x00\x00" + greeting)
    flags = capabilities | p.BACKEND_BASE_CAPABILITIES
    if not database:
        flags &= ~p.CLIENT_CONNECT_WITH_DB
    charset = hello["charset"] if charset is None else charset
    response, _ = MySQLProtocol.make_auth(
        handshake=hello,
        username=user,
        password=password,
        database=database,
        charset=charset,
        client_flags=flags,
        auth_plugin=hello["auth_plugin"],
    )
    seq += 1
    writer.write(p.packet(seq, response))
    for _ in range(3):  # greeting answer, at most one auth switch, final OK/ERR
        seq, reply = await read_packet(reader)
        if reply[:1] == b"\x00":
            return BackendHandshake(
                hello["server_threadid"], hello["server_version_original"], hello["charset"], hello["server_status"]
            )
        if reply[:1] == b"\xff":
            raise p.ServerError(*p.parse_err(reply))
        if reply[:1] == b"\xfe":
            plugin, data = MySQLProtocol.parse_auth_switch_request(b"\x00\x00\x00\x00" + reply)
            answer = get_auth_plugin(plugin)(user, password).auth_response(data)
            seq += 1
            writer.write(p.packet(seq, answer or b""))
            continue
        break
    raise p.ProtocolError(f"unexpected packet during backend authentication: {reply[:1]!r}")
