"""Bounds-checked parsing of what a client sends before it is logged in.

Everything here treats its input as hostile: every read is checked against the end of the packet,
strings that lack their terminating NUL are errors (not endless scans), and nothing but
:class:`MalformedPacket` is raised for any byte sequence. mysql-mimic's own parser is not used for
client input because it loops forever on an unterminated user name and fails with AttributeError on
some short packets.
"""

from __future__ import annotations

from dataclasses import dataclass

from .constants import Capability

#: Largest packet accepted before authentication; a real handshake response (user, 20-byte token,
#: database, plugin name, connect attributes) is a few hundred bytes.
LOGIN_PACKET_LIMIT = 16 * 1024
#: Size of an SSLRequest / the fixed part of a HandshakeResponse41.
FIXED_PART = 32


class MalformedPacket(ValueError):
    """The client's packet does not parse; the message says where (never the packet's secrets)."""


@dataclass(frozen=True)
class HandshakeResponse:
    """A HandshakeResponse41, decoded. Names are utf-8 with undecodable bytes replaced."""

    capabilities: int
    max_packet: int
    charset: int
    username: str
    auth_response: bytes
    database: str | None
    client_plugin: str | None


class _Cursor:
    __slots__ = ("data", "pos")

    def __init__(self, data: bytes, pos: int = 0):
        self.data = data
        self.pos = pos

    @property
    def remaining(self) -> int:
        return len(self.data) - self.pos

    def take(self, count: int, what: str) -> bytes:
        if count < 0 or count > self.remaining:
            raise MalformedPacket(f"{what}: needs {count} bytes, {self.remaining} left")
        start = self.pos
        self.pos += count
        return self.data[start : self.pos]

    def int_le(self, size: int, what: str) -> int:
        return int.from_bytes(self.take(size, what), "little")

    def nul_terminated(self, what: str) -> bytes:
        end = self.data.find(b"\x00", self.pos)
        if end < 0:
            raise MalformedPacket(f"{what}: no terminating NUL")
        value = self.data[self.pos : end]
        self.pos = end + 1
        return value

    def lenenc_int(self, what: str) -> int:
        first = self.int_le(1, what)
        if first < 0xFB:
            return first
        size = {0xFC: 2, 0xFD: 3, 0xFE: 8}.get(first)
        if size is None:
            raise MalformedPacket(f"{what}: invalid length prefix 0x{first:02x}")
        return self.int_le(size, what)

    def lenenc_bytes(self, what: str) -> bytes:
        return self.take(self.lenenc_int(what), what)


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")


def parse_handshake_response(data: bytes, server_capabilities: int) -> HandshakeResponse:
    """Parse a HandshakeResponse41 (protocol 4.1 only); raises MalformedPacket on any defect.

    Optional trailing parts follow the capabilities both sides have: the database with
    CONNECT_WITH_DB, the plugin name with PLUGIN_AUTH, connect attributes with CONNECT_ATTRS.
    A missing plugin name is allowed (older clients); a truncated one is not.
    """
    cursor = _Cursor(bytes(data))
    client_flags = cursor.int_le(4, "capability flags")
    if not client_flags & Capability.PROTOCOL_41:
        raise MalformedPacket("client does not speak protocol 4.1")
    max_packet = cursor.int_le(4, "max packet size")
    charset = cursor.int_le(1, "character set")
    cursor.take(23, "filler")
    flags = client_flags & int(server_capabilities)  # a plain int: client values never become enum members
    username = _text(cursor.nul_terminated("user name"))
    if flags & Capability.PLUGIN_AUTH_LENENC_CLIENT_DATA:
        auth_response = cursor.lenenc_bytes("auth response")
    elif flags & Capability.SECURE_CONNECTION:
        auth_response = cursor.take(cursor.int_le(1, "auth response length"), "auth response")
    else:
        auth_response = cursor.nul_terminated("auth response")
    database = None
    if flags & Capability.CONNECT_WITH_DB and cursor.remaining:
        database = _text(cursor.nul_terminated("database")) or None
    client_plugin = None
    if flags & Capability.PLUGIN_AUTH and cursor.remaining:
        client_plugin = _text(cursor.nul_terminated("auth plugin name")) or None
    if flags & Capability.CONNECT_ATTRS and cursor.remaining:
        attributes = _Cursor(cursor.lenenc_bytes("connect attributes"))
        while attributes.remaining:
            attributes.lenenc_bytes("connect attribute key")
            attributes.lenenc_bytes("connect attribute value")
    return HandshakeResponse(
        capabilities=flags,
        max_packet=max_packet,
        charset=charset,
        username=username,
        auth_response=auth_response,
        database=database,
        client_plugin=client_plugin,
    )
