"""The MySQL wire-protocol pieces the proxy needs to relay packets without re-encoding them.

Framing, the few packets the proxy writes itself (greeting, OK, ERR), and :class:`ResponseScanner`, which finds
where a server response ends so the backend can go back to the pool at the right byte. Logging in to the database
uses ``mysql.connector``'s helpers (``handshake.py``); the numbers are ``constants``'s.
"""

from __future__ import annotations

import enum
import struct
from typing import NamedTuple

from .constants import ErrorCode, ServerStatus

MAX_PAYLOAD = 0xFFFFFF
_MORE_RESULTS = ServerStatus.MORE_RESULTS_EXISTS.value  # tested once per result set: plain ints on the hot path
_CURSOR_EXISTS = ServerStatus.CURSOR_EXISTS.value


class ProtocolError(Exception):
    """The peer sent something the proxy cannot frame; the connection must be dropped."""


class ErrPacket(NamedTuple):
    """An ERR packet, decoded."""

    code: int
    message: str
    sqlstate: str


class ServerError(Exception):
    """An ERR packet from the backend while the proxy talked to it on its own behalf."""

    def __init__(self, code: int, message: str, sqlstate: str = "HY000"):
        super().__init__(f"({code}) {message}")
        self.code = code
        self.message = message
        self.sqlstate = sqlstate


def packet(seq: int, payload: bytes) -> bytes:
    """Frame one payload (< 16 MiB) as a wire packet."""
    return struct.pack("<I", len(payload))[:3] + bytes((seq & 0xFF,)) + payload


def ok_payload(status: int = ServerStatus.AUTOCOMMIT) -> bytes:
    """An OK packet for the proxy's own answers (no rows affected, no warnings)."""
    return b"\x00\x00\x00" + struct.pack("<HH", status, 0)


def err_payload(code: int, message: str, sqlstate: str | None = None) -> bytes:
    """An ERR payload; ``sqlstate`` defaults to the one MySQL pairs with ``code`` (an ``ErrorCode``)."""
    if sqlstate is None:
        sqlstate = code.sqlstate if isinstance(code, ErrorCode) else "HY000"
    return b"\xff" + struct.pack("<H", code) + b"#" + sqlstate.encode("ascii")[:5] + message.encode()


def handshake_v10(
    *, capabilities: int, charset: int, server_version: str, connection_id: int, scramble: bytes, plugin: str
) -> bytes:
    """The server greeting (Protocol::HandshakeV10) with a 20-byte scramble, status AUTOCOMMIT."""
    if len(scramble) != 20:
        raise ValueError(f"scramble of {len(scramble)} bytes: must be 20")
    return b"".join(
        (
            b"\x0a",
            server_version.encode() + b"\x00",
            struct.pack("<I", connection_id),
            scramble[:8] + b"\x00",
            struct.pack("<HBHH", capabilities & 0xFFFF, charset, ServerStatus.AUTOCOMMIT, capabilities >> 16),
            bytes((len(scramble) + 1,)) + bytes(10),
            scramble[8:] + b"\x00",
            plugin.encode() + b"\x00",
        )
    )


def lenenc_int(value: int) -> bytes:
    if value < 0xFB:
        return bytes((value,))
    if value < 1 << 16:
        return b"\xfc" + struct.pack("<H", value)
    if value < 1 << 24:
        return b"\xfd" + struct.pack("<I", value)[:3]
    return b"\xfe" + struct.pack("<Q", value)


def read_lenenc_int(buf, pos: int) -> tuple[int, int]:
    """(value, next position) of the length-encoded integer at ``pos``."""
    first = buf[pos]
    if first < 0xFB:
        return first, pos + 1
    if first == 0xFC:
        return buf[pos + 1] | buf[pos + 2] << 8, pos + 3
    if first == 0xFD:
        return buf[pos + 1] | buf[pos + 2] << 8 | buf[pos + 3] << 16, pos + 4
    if first == 0xFE:
        return int.from_bytes(buf[pos + 1 : pos + 9], "little"), pos + 9
    raise ProtocolError(f"invalid length-encoded integer prefix 0x{first:02x}")


def parse_err(payload) -> ErrPacket:
    """The ERR packet in ``payload`` (a server's: at least the header and the code)."""
    if len(payload) < 3:
        raise ProtocolError("ERR packet shorter than its error code")
    code = payload[1] | payload[2] << 8
    if payload[3:4] == b"#":
        sqlstate, text = bytes(payload[4:9]).decode("ascii", "replace"), bytes(payload[9:])
    else:
        sqlstate, text = "HY000", bytes(payload[3:])
    return ErrPacket(code, text.decode("utf-8", "replace"), sqlstate)


def single_row(response: bytes, deprecate_eof: bool) -> list[bytes | None]:
    """Values of the one row of a small text result set (the proxy's own queries)."""
    packets = []
    pos = 0
    while pos + 4 <= len(response):
        length = response[pos] | response[pos + 1] << 8 | response[pos + 2] << 16
        packets.append(response[pos + 4 : pos + 4 + length])
        pos += 4 + length
    columns, _ = read_lenenc_int(packets[0], 0)
    row = packets[1 + columns + (0 if deprecate_eof else 1)]
    values: list[bytes | None] = []
    pos = 0
    for _ in range(columns):
        if row[pos] == 0xFB:
            values.append(None)
            pos += 1
        else:
            length, pos = read_lenenc_int(row, pos)
            values.append(bytes(row[pos : pos + length]))
            pos += length
    return values


class ResponseKind(enum.Enum):
    """What a command's response looks like."""

    RESULT = "result"  # COM_QUERY: OK | ERR | result set(s)
    FIELD_LIST = "field list"  # COM_FIELD_LIST: column definitions up to EOF | ERR
    SINGLE = "single"  # exactly one packet (COM_INIT_DB, COM_STATISTICS, COM_PING)


class _Expect(enum.IntEnum):
    FIRST = 0  # OK, ERR or a result set's column count
    COLUMNS = 1  # column definitions (passed over)
    COLUMNS_EOF = 2  # the EOF after column definitions (without DEPRECATE_EOF)
    ROWS = 3  # rows up to the terminating EOF/OK or an ERR
    SINGLE = 4
    DONE = 5


# the scanner tests its state per packet: members bound once (a class attribute lookup on an Enum costs ~0.25 us)
_FIRST, _COLUMNS, _COLUMNS_EOF, _ROWS, _SINGLE, _DONE = _Expect
_START = {ResponseKind.RESULT: _FIRST, ResponseKind.FIELD_LIST: _ROWS, ResponseKind.SINGLE: _SINGLE}


class ResponseScanner:
    """Finds the end of one server response in a byte stream, without copying rows.

    Feed it the chunks read from the backend (which are forwarded to the client as they are); ``feed`` returns
    True once the response is complete. Afterwards ``status`` holds the server status flags of the last OK/EOF
    (None if the response ended with ERR), ``error`` the ERR packet, and ``extra`` any bytes past the end (a
    protocol violation).
    """

    __slots__ = ("_deprecate_eof", "_state", "_columns", "_skip", "_continued", "_pending", "status", "error", "extra")

    def __init__(self, deprecate_eof: bool, kind: ResponseKind = ResponseKind.RESULT):
        self._deprecate_eof = deprecate_eof
        self._state = _START[kind]
        self._columns = 0
        self._skip = 0  # payload bytes of the current packet still to pass over
        self._continued = False  # current logical packet spans several 16 MiB wire packets
        self._pending = b""  # incomplete header or small packet carried to the next chunk
        self.status: int | None = None
        self.error: ErrPacket | None = None
        self.extra = b""

    @property
    def done(self) -> bool:
        return self._state == _DONE

    def feed(self, data: bytes) -> bool:
        buf = self._pending + data if self._pending else data
        end = len(buf)
        pos = 0
        while self._state != _DONE:
            if self._skip:
                step = min(self._skip, end - pos)
                pos += step
                self._skip -= step
                if self._skip:
                    break
            if end - pos < 4:
                break
            length = buf[pos] | buf[pos + 1] << 8 | buf[pos + 2] << 16
            body = pos + 4
            if self._continued:
                # tail fragment of a >= 16 MiB packet: plain data
                self._continued = length == MAX_PAYLOAD
                pos = body
                self._skip = length
                continue
            if length == 0:
                raise ProtocolError("empty packet in a server response")
            if end == body:
                break  # need the first payload byte to classify the packet
            if self._needs_whole(buf[body], length):
                if end - body < length:
                    break
                try:
                    self._packet(buf[body : body + length], length)
                except IndexError:
                    raise ProtocolError("server packet shorter than its fields") from None
                pos = body + length
            else:
                self._continued = length == MAX_PAYLOAD
                self._after_skipped_packet()
                pos = body
                self._skip = length
        if self._state == _DONE:
            self.extra = bytes(buf[pos:]) if pos < end else b""
            self._pending = b""
            return True
        self._pending = bytes(buf[pos:]) if pos < end else b""
        return False

    def _is_terminator(self, first: int, length: int) -> bool:
        if first != 0xFE:
            return False
        return length < MAX_PAYLOAD if self._deprecate_eof else length < 9

    def _needs_whole(self, first: int, length: int) -> bool:
        state = self._state
        if state in (_FIRST, _SINGLE, _COLUMNS_EOF):
            return True
        if state == _ROWS:
            return first == 0xFF or self._is_terminator(first, length)
        return False  # column definitions are passed over

    def _after_skipped_packet(self) -> None:
        if self._state == _COLUMNS:
            self._columns -= 1
            if self._columns == 0:
                self._state = _ROWS if self._deprecate_eof else _COLUMNS_EOF

    def _packet(self, payload, length: int) -> None:
        first = payload[0]
        state = self._state
        if state == _SINGLE:
            if first == 0xFF:
                self.error = parse_err(payload)
            elif first == 0x00 and length >= 7:
                self.status = _ok_status(payload)
            self._state = _DONE
        elif state == _FIRST:
            if first == 0x00:
                self._end_of_result(_ok_status(payload))
            elif first == 0xFF:
                self.error = parse_err(payload)
                self._state = _DONE
            elif first == 0xFB:
                raise ProtocolError("LOCAL INFILE request, but CLIENT_LOCAL_FILES was not negotiated")
            else:
                self._columns, _ = read_lenenc_int(payload, 0)
                if self._columns == 0:
                    raise ProtocolError("result set with 0 columns")
                self._state = _COLUMNS
        elif state == _COLUMNS_EOF:
            if first != 0xFE or length < 5:
                raise ProtocolError("expected EOF after column definitions")
            status = payload[3] | payload[4] << 8
            # a prepared statement opened with a cursor: rows come later via COM_STMT_FETCH
            if status & _CURSOR_EXISTS:
                self.status = status
                self._state = _DONE
            else:
                self._state = _ROWS
        else:  # ROWS (_needs_whole asks for no other state)
            if first == 0xFF:
                self.error = parse_err(payload)
                self._state = _DONE
            elif self._deprecate_eof:
                self._end_of_result(_ok_status(payload))
            elif length < 5:
                raise ProtocolError("EOF packet too short")
            else:
                self._end_of_result(payload[3] | payload[4] << 8)

    def _end_of_result(self, status: int) -> None:
        self.status = status
        self._state = _FIRST if status & _MORE_RESULTS else _DONE


def _ok_status(payload) -> int:
    """Status flags of an OK packet (header 0x00, or 0xFE when it replaces EOF)."""
    try:
        _, pos = read_lenenc_int(payload, 1)
        _, pos = read_lenenc_int(payload, pos)
        return payload[pos] | payload[pos + 1] << 8
    except IndexError:
        raise ProtocolError("OK packet too short") from None


class CommandCounter:
    """Counts client commands (packets with sequence id 0) in a raw byte stream (pinned sessions)."""

    __slots__ = ("_skip", "_pending")

    def __init__(self) -> None:
        self._skip = 0
        self._pending = b""

    def feed(self, data: bytes) -> int:
        buf = self._pending + data if self._pending else data
        end = len(buf)
        pos = self._skip
        commands = 0
        while pos + 4 <= end:
            if buf[pos + 3] == 0:
                commands += 1
            pos += 4 + (buf[pos] | buf[pos + 1] << 8 | buf[pos + 2] << 16)
        if pos > end:
            self._skip, self._pending = pos - end, b""
        else:
            self._skip, self._pending = 0, bytes(buf[pos:])
        return commands
