"""Connection phase on both sides of the proxy.

Client side: the proxy is the server. It writes the greeting itself (``protocol.handshake_v10``), asks for another
auth plugin with mysql_mimic's packet builder and checks ``mysql_native_password`` answers with mysql_mimic's
verifier; what the client sends is parsed by the bounds-checked ``client_packets`` (client bytes are hostile).
Who may log in is the accounts' business: a user needs an account, and in password mode the account's password.
Backend side: the proxy is a client. ``mysql.connector``'s protocol helpers parse the server greeting and build the
handshake response / auth-switch answers with the account's credentials.
"""

from __future__ import annotations

import asyncio
import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mysql.connector.plugins import get_auth_plugin
from mysql.connector.protocol import MySQLProtocol
from mysql_mimic import packets as mimic_packets
from mysql_mimic.auth import NativePasswordAuthPlugin
from mysql_mimic.charset import CharacterSet

from .accounts import StaticAccount
from .client_packets import FIXED_PART, LOGIN_PACKET_LIMIT, MalformedPacket, parse_handshake_response
from .constants import BACKEND_BASE_CAPABILITIES, PROXY_CAPABILITIES, Capability, ErrorCode
from .protocol import MAX_PAYLOAD, ProtocolError, ServerError, err_payload, handshake_v10, ok_payload, packet, parse_err
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


async def read_packet(reader: asyncio.StreamReader, limit: int = MAX_PAYLOAD) -> tuple[int, bytes]:
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
    """The client was refused (the ERR packet is sent).

    ``check`` says which check failed (for the log, never a secret), ``user`` who the client said it was (None
    before its handshake response was parsed), ``reason`` the IAM check's name when one failed (for the counters).
    """

    def __init__(self, check: str, user: str | None = None, reason: str = "") -> None:
        super().__init__(check)
        self.check, self.user, self.reason = check, user, reason


async def accept_client(
    streams: ClientStreams,
    *,
    connection_id: int,
    server: ServerInfo,
    accounts: Mapping[str, StaticAccount],
    tls: ssl.SSLContext | None = None,
    iam: IamAuthenticator | None = None,
    tls_required: bool = False,
) -> ClientLogin:
    """Greet a client, upgrade it to TLS if it asks (and ``tls`` is given), authenticate it, send OK.

    Password mode (``iam`` None): mysql_native_password with the password of the user's account; clients that
    answer with another plugin (caching_sha2_password, ed25519, ...) are switched to it. IAM mode: the password is
    an RDS IAM auth token sent with mysql_clear_password (clients are switched to it), checked by ``iam``; the user
    then needs an account too. A plain-text client is refused before its password is looked at when
    ``tls_required`` (error 3159). On failure the ERR packet is sent here and AuthFailed raised; packets above
    LOGIN_PACKET_LIMIT are refused without being read.
    """
    scramble = new_scramble()
    capabilities = PROXY_CAPABILITIES | (Capability.SSL if tls is not None else 0)
    greeting = handshake_v10(
        capabilities=capabilities,
        charset=server.charset,
        server_version=server.version,
        connection_id=connection_id,
        scramble=scramble,
        plugin=NATIVE,
    )
    streams.writer.write(packet(0, greeting))
    seq, data = await _read_login_packet(streams)
    if len(data) >= 4 and int.from_bytes(data[:4], "little") & Capability.SSL:
        if tls is None:
            _send_error(
                streams, seq + 1, ErrorCode.NOT_SUPPORTED_YET, "The RDS Proxy stand-in does not offer TLS", "08004"
            )
            raise AuthFailed("the client asked for TLS, which is not configured")
        if len(data) != FIXED_PART:  # CLIENT_SSL in a full response: the client skipped the TLS upgrade
            _send_error(streams, seq + 1, ErrorCode.HANDSHAKE_ERROR, "Bad handshake")
            raise AuthFailed("CLIENT_SSL set in a handshake response that is not an SSLRequest", _user_in(data))
        await _start_tls(streams, tls)
        seq, data = await _read_login_packet(streams)
    elif tls_required:
        _send_error(streams, seq + 1, ErrorCode.SECURE_TRANSPORT_REQUIRED, TLS_REQUIRED_MESSAGE)
        raise AuthFailed("TLS is required and the client did not start it", _user_in(data))
    try:
        parsed = parse_handshake_response(data, PROXY_CAPABILITIES)  # CLIENT_SSL never reaches the backend
    except MalformedPacket as exc:
        _send_error(streams, seq + 1, ErrorCode.HANDSHAKE_ERROR, "Bad handshake")
        raise AuthFailed(f"malformed handshake response: {exc}") from None
    user = parsed.username
    wanted = CLEAR_PASSWORD if iam is not None else NATIVE
    token = parsed.auth_response
    if (parsed.client_plugin or NATIVE) != wanted:
        seq += 1
        switch_data = b"" if iam is not None else scramble + b"\x00"
        streams.writer.write(
            packet(seq, mimic_packets.make_auth_switch_request(CharacterSet.utf8mb4, wanted, switch_data))
        )
        seq, token = await _read_login_packet(streams, user)
    account = accounts.get(user)
    if iam is not None:
        _check_iam(streams, seq, iam, user, token)
        if account is None:
            _deny(streams, seq, f"Access denied for user '{user}' (the proxy has no secret for this user)")
            raise AuthFailed("no account for this user (no secret in the proxy's auth)", user)
    elif account is None or not _password_matches(account.password, token, scramble):
        _deny(streams, seq, f"Access denied for user '{user}' (using password: {'YES' if token else 'NO'})")
        raise AuthFailed("no account for this user" if account is None else "wrong password", user)
    streams.writer.write(packet(seq + 1, ok_payload()))
    return ClientLogin(
        capabilities=parsed.capabilities, charset=parsed.charset, database=parsed.database, username=user
    )


def _user_in(data: bytes) -> str | None:
    """The user name in a handshake response, for the log only (None when it does not parse)."""
    try:
        return parse_handshake_response(data, PROXY_CAPABILITIES).username
    except MalformedPacket:
        return None


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
        _deny(streams, seq, exc.client_message(username))
        raise AuthFailed(f"IAM authentication failed: {exc}", username, exc.reason) from None


async def _read_login_packet(streams: ClientStreams, user: str | None = None) -> tuple[int, bytes]:
    try:
        return await read_packet(streams.reader, LOGIN_PACKET_LIMIT)
    except PacketTooLarge as exc:
        _send_error(streams, exc.seq + 1, ErrorCode.HANDSHAKE_ERROR, "Bad handshake")
        raise AuthFailed(f"login packet too large: {exc}", user) from None


def _password_matches(password: str, token: bytes, scramble: bytes) -> bool:
    if not password:
        return not token
    if len(token) != 20:  # a SHA1-based scramble answer, nothing else
        return False
    return _native.verify_scramble(NativePasswordAuthPlugin.create_auth_string(password), token, scramble)


def _deny(streams: ClientStreams, seq: int, message: str) -> None:
    _send_error(streams, seq + 1, ErrorCode.ACCESS_DENIED, message)


def _send_error(streams: ClientStreams, seq: int, code: ErrorCode, message: str, sqlstate: str | None = None) -> None:
    streams.writer.write(packet(seq, err_payload(code, message, sqlstate)))


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
        raise ServerError(*parse_err(greeting))
    hello = MySQLProtocol.parse_handshake(b"\x00\x00\x00\x00" + greeting)
    flags = int(capabilities | BACKEND_BASE_CAPABILITIES)
    if not database:
        flags &= ~Capability.CONNECT_WITH_DB.value
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
    writer.write(packet(seq, response))
    for _ in range(3):  # greeting answer, at most one auth switch, final OK/ERR
        seq, reply = await read_packet(reader)
        if reply[:1] == b"\x00":
            return BackendHandshake(
                hello["server_threadid"], hello["server_version_original"], hello["charset"], hello["server_status"]
            )
        if reply[:1] == b"\xff":
            raise ServerError(*parse_err(reply))
        if reply[:1] == b"\xfe":
            plugin, data = MySQLProtocol.parse_auth_switch_request(b"\x00\x00\x00\x00" + reply)
            answer = get_auth_plugin(plugin)(user, password).auth_response(data)
            seq += 1
            writer.write(packet(seq, answer or b""))
            continue
        break
    raise ProtocolError(f"unexpected packet during backend authentication: {reply[:1]!r}")
