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
import ssl
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mysql.connector.plugins import get_auth_plugin
from mysql.connector.protocol import MySQLProtocol
from mysql_mimic import packets as mimic_packets
from mysql_mimic.auth import NativePasswordAuthPlugin
from mysql_mimic.charset import CharacterSet
from mysql_mimic.types import Capabilities, ServerStatus

from . import protocol as p
from .client_packets import FIXED_PART, LOGIN_PACKET_LIMIT, MalformedPacket, parse_handshake_response
from .tls_stream import TlsConnection

if TYPE_CHECKING:
    from local.data_plane.auth.authenticator import IamAuthenticator

NATIVE = "mysql_native_password"
CLEAR_PASSWORD = "mysql_clear_password"
#: MySQL's ER_SECURE_TRANSPORT_REQUIRED text (error 3159, SQLSTATE HY000), naming the proxy setting.
TLS_REQUIRED_MESSAGE = (
    "Connections using insecure transport are prohibited while --require_secure_transport=ON. "
    "(RDS Proxy stand-in: TLS is required; connect with TLS)"
)
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


@dataclass
class ClientStreams:
    """The client's streams; ``accept_client`` swaps in TLS ones when the client starts TLS."""

    reader: Any
    writer: Any
    tls: bool = False


class AuthFailed(Exception):
    """The client was refused (the ERR packet is sent); ``reason`` names the IAM check that failed, if one did."""

    def __init__(self, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason


async def accept_client(
    streams: ClientStreams,
    *,
    connection_id: int,
    server: ServerInfo,
    user: str,
    password: str,
    tls: ssl.SSLContext | None = None,
    iam: IamAuthenticator | None = None,
    tls_required: bool = False,
) -> ClientLogin:
    """Greet a client, upgrade it to TLS if it asks (and ``tls`` is given), authenticate it, send OK.

    Password mode (``iam`` None): mysql_native_password with ``user``/``password``; clients that answer
    with another plugin (caching_sha2_password, ed25519, ...) are switched to it. IAM mode: the password is
    an RDS IAM auth token sent with mysql_clear_password (clients are switched to it), checked by ``iam``.
    A plain-text client is refused before its password is looked at when ``tls_required`` (error 3159).
    On failure the ERR packet is sent here and AuthFailed raised (its text says why); packets above
    LOGIN_PACKET_LIMIT are refused without being read.
    """
    scramble = new_scramble()
    capabilities = p.PROXY_CAPABILITIES | (p.CLIENT_SSL if tls is not None else 0)
    greeting = mimic_packets.make_handshake_v10(
        capabilities=Capabilities(capabilities),
        server_charset=CharacterSet.utf8mb4,
        server_version=server.version,
        connection_id=connection_id,
        auth_data=scramble + b"\x00",
        status_flags=ServerStatus(p.SERVER_STATUS_AUTOCOMMIT),
        auth_plugin_name=NATIVE,
    )
    # mysql_mimic writes utf8mb4's id; advertise the backend's default collation instead
    greeting = _with_greeting_charset(greeting, server.charset)
    streams.writer.write(p.packet(0, greeting))
    seq, data = await _read_login_packet(streams)
    if len(data) >= 4 and int.from_bytes(data[:4], "little") & p.CLIENT_SSL:
        if tls is None:
            _send_error(streams, seq + 1, p.ER_NOT_SUPPORTED, "The RDS Proxy stand-in does not offer TLS", "08004")
            raise AuthFailed("client asked for TLS, which is not configured")
        if len(data) != FIXED_PART:  # CLIENT_SSL in a full response: the client skipped the TLS upgrade
            _send_error(streams, seq + 1, p.ER_HANDSHAKE_ERROR, "Bad handshake", "08S01")
            raise AuthFailed("CLIENT_SSL set in a handshake response that is not an SSLRequest")
        await _start_tls(streams, tls)
        seq, data = await _read_login_packet(streams)
    elif tls_required:
        _send_error(streams, seq + 1, p.ER_SECURE_TRANSPORT_REQUIRED, TLS_REQUIRED_MESSAGE, "HY000")
        raise AuthFailed("plain-text client refused: TLS is required")
    try:
        parsed = parse_handshake_response(data, p.PROXY_CAPABILITIES)  # CLIENT_SSL never reaches the backend
    except MalformedPacket as exc:
        _send_error(streams, seq + 1, p.ER_HANDSHAKE_ERROR, "Bad handshake", "08S01")
        raise AuthFailed(f"malformed handshake response: {exc}") from None
    wanted = CLEAR_PASSWORD if iam is not None else NATIVE
    token = parsed.auth_response
    if (parsed.client_plugin or NATIVE) != wanted:
        seq += 1
        switch_data = b"" if iam is not None else scramble + b"\x00"
        streams.writer.write(
            p.packet(seq, mimic_packets.make_auth_switch_request(CharacterSet.utf8mb4, wanted, switch_data))
        )
        seq, token = await _read_login_packet(streams)
    if iam is not None:
        _check_iam(streams, seq, iam, parsed.username, token)
    elif parsed.username != user or not _password_matches(password, token, scramble):
        _send_error(
            streams,
            seq + 1,
            p.ER_ACCESS_DENIED,
            f"Access denied for user '{parsed.username}' (using password: {'YES' if token else 'NO'})",
            "28000",
        )
        raise AuthFailed(f"access denied for {parsed.username!r}")
    streams.writer.write(p.packet(seq + 1, p.ok_payload()))
    return ClientLogin(
        capabilities=parsed.capabilities, charset=parsed.charset, database=parsed.database, username=parsed.username
    )


async def _start_tls(streams: ClientStreams, context: ssl.SSLContext) -> None:
    """Upgrade after an SSLRequest; errors in the TLS handshake (ssl.SSLError) are the client's failure."""
    await streams.writer.drain()
    connection = TlsConnection(streams.reader, streams.writer, context)
    streams.reader, streams.writer = connection.reader, connection.writer
    await connection.handshake()
    streams.tls = True


def _check_iam(streams: ClientStreams, seq: int, iam: IamAuthenticator, username: str, token: bytes) -> None:
    from local.data_plane.auth.authenticator import clear_text_password
    from local.data_plane.auth.errors import AuthError

    ssl_object = streams.writer.get_extra_info("ssl_object")
    server_name = getattr(ssl_object, "sni", None)
    try:
        iam.check(username, clear_text_password(token), host=server_name)
    except AuthError as exc:
        _send_error(streams, seq + 1, p.ER_ACCESS_DENIED, exc.client_message(username), "28000")
        raise AuthFailed(f"IAM authentication failed for {username!r}: {exc}", exc.reason) from None


async def _read_login_packet(streams: ClientStreams) -> tuple[int, bytes]:
    try:
        return await read_packet(streams.reader, LOGIN_PACKET_LIMIT)
    except PacketTooLarge as exc:
        _send_error(streams, exc.seq + 1, p.ER_HANDSHAKE_ERROR, "Bad handshake", "08S01")
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


def _send_error(streams: ClientStreams, seq: int, code: int, message: str, sqlstate: str) -> None:
    streams.writer.write(p.packet(seq, p.err_payload(code, message, sqlstate)))


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
