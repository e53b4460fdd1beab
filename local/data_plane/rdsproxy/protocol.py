"""Minimal MySQL wire-protocol pieces the proxy needs to relay packets without re-encoding.

Handshake/auth packets are built and parsed by libraries (``mysql_mimic`` towards clients,
``mysql.connector`` towards MariaDB, see ``handshake.py``); what is left here is framing, the
two packets the proxy answers itself (OK, ERR) and :class:`ResponseScanner`, which finds where
a server response ends so the backend can go back to the pool at the right byte.
"""

from __future__ import annotations

import struct

MAX_PAYLOAD = 0xFFFFFF

# Commands (first payload byte of a client packet with sequence id 0).
COM_QUIT = 0x01
COM_INIT_DB = 0x02
COM_QUERY = 0x03
COM_FIELD_LIST = 0x04
COM_STATISTICS = 0x09
COM_PING = 0x0E
COM_CHANGE_USER = 0x11
COM_STMT_PREPARE = 0x16
COM_RESET_CONNECTION = 0x1F

# Capability flags.
CLIENT_LONG_PASSWORD = 1
CLIENT_FOUND_ROWS = 1 << 1
CLIENT_LONG_FLAG = 1 << 2
CLIENT_CONNECT_WITH_DB = 1 << 3
CLIENT_IGNORE_SPACE = 1 << 8
CLIENT_PROTOCOL_41 = 1 << 9
CLIENT_INTERACTIVE = 1 << 10
CLIENT_SSL = 1 << 11
CLIENT_TRANSACTIONS = 1 << 13
CLIENT_SECURE_CONNECTION = 1 << 15
CLIENT_MULTI_STATEMENTS = 1 << 16
CLIENT_MULTI_RESULTS = 1 << 17
CLIENT_PS_MULTI_RESULTS = 1 << 18
CLIENT_PLUGIN_AUTH = 1 << 19
CLIENT_CONNECT_ATTRS = 1 << 20
CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA = 1 << 21
CLIENT_DEPRECATE_EOF = 1 << 24

#: Capabilities the proxy offers clients. Left out on purpose: COMPRESS, LOCAL_FILES (LOAD DATA
#: LOCAL), SESSION_TRACK and QUERY_ATTRIBUTES (they change packet formats in ways a shared backend
#: cannot serve per client), and MariaDB's extended capabilities. SSL is added to the greeting when TLS
#: is configured; it is the client link's business and never asked of a backend.
PROXY_CAPABILITIES = (
    CLIENT_LONG_PASSWORD
    | CLIENT_FOUND_ROWS
    | CLIENT_LONG_FLAG
    | CLIENT_CONNECT_WITH_DB
    | CLIENT_IGNORE_SPACE
    | CLIENT_PROTOCOL_41
    | CLIENT_INTERACTIVE
    | CLIENT_TRANSACTIONS
    | CLIENT_SECURE_CONNECTION
    | CLIENT_MULTI_STATEMENTS
    | CLIENT_MULTI_RESULTS
    | CLIENT_PS_MULTI_RESULTS
    | CLIENT_PLUGIN_AUTH
    | CLIENT_CONNECT_ATTRS
    | CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA
    | CLIENT_DEPRECATE_EOF
)
#: Client-chosen flags that change what the server sends or how it parses: a backend is only
#: shared between clients that negotiated the same subset (part of the pool key).
SESSION_CAPABILITIES = (
    CLIENT_FOUND_ROWS
    | CLIENT_LONG_FLAG
    | CLIENT_IGNORE_SPACE
    | CLIENT_INTERACTIVE
    | CLIENT_MULTI_STATEMENTS
    | CLIENT_MULTI_RESULTS
    | CLIENT_PS_MULTI_RESULTS
    | CLIENT_DEPRECATE_EOF
)
#: Always requested from the backend.
BACKEND_BASE_CAPABILITIES = (
    CLIENT_LONG_PASSWORD
    | CLIENT_PROTOCOL_41
    | CLIENT_TRANSACTIONS
    | CLIENT_SECURE_CONNECTION
    | CLIENT_PLUGIN_AUTH
    | CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA
    | CLIENT_CONNECT_WITH_DB
)

# Server status flags.
SERVER_STATUS_IN_TRANS = 0x0001
SERVER_STATUS_AUTOCOMMIT = 0x0002
SERVER_MORE_RESULTS_EXISTS = 0x0008
SERVER_STATUS_CURSOR_EXISTS = 0x0040

# Error codes the proxy itself produces: server-range codes only (2000-2999 are client-library codes;
# a server that sends one confuses clients, e.g. the mariadb CLI shows 2013 as "2027 malformed packet").
ER_HANDSHAKE_ERROR = 1043  # "Bad handshake", SQLSTATE 08S01
ER_ACCESS_DENIED = 1045
ER_UNKNOWN_COM = 1047
ER_SERVER_SHUTDOWN = 1053  # the database cannot be reached (SQLSTATE 08S01)
ER_NET_PACKET_TOO_LARGE = 1153  # command above max_allowed_packet (SQLSTATE 08S01), then close
ER_NOT_SUPPORTED = 1235
ER_SECURE_TRANSPORT_REQUIRED = 3159  # plain-text client while TLS is required (SQLSTATE HY000)
ER_CONNECTION_KILLED = 1927  # the database connection was lost mid-command (SQLSTATE 70100)
ER_BORROW_TIMEOUT = 9501  # what RDS Proxy returns when no DB connection frees up in time


def packet(seq: int, payload: bytes) -> bytes:
    """Frame one payload (< 16 MiB) as a wire packet."""
    return struct.pack("<I", len(payload))[:3] + bytes((seq & 0xFF,)) + payload


def ok_payload(status: int = SERVER_STATUS_AUTOCOMMIT, affected_rows: int = 0) -> bytes:
    return b"\x00" + lenenc_int(affected_rows) + b"\x00" + struct.pack("<HH", status, 0)


def err_payload(code: int, message: str, sqlstate: str = "HY000") -> bytes:
    return b"\xff" + struct.pack("<H", code) + b"#" + sqlstate.encode("ascii")[:5] + message.encode()


def lenenc_int(value: int) -> bytes:
    if value < 0xFB:
        return bytes((value,))
    if value < 1 << 16:
        return b"\xfc" + struct.pack("<H", value)
    if value < 1 << 24:
        return b"\xfd" + struct.pack("<I", value)[:3]
    return b"\xfe" + struct.pack("<Q", value)


def read_lenenc_int(buf, pos: int) -> tuple[int, int]:
    """Return (value, next position) of the length-encoded integer at ``pos``."""
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


def parse_err(payload) -> tuple[int, str, str]:
    """(errno, message, sqlstate) of an ERR payload."""
    code = payload[1] | payload[2] << 8
    if payload[3:4] == b"#":
        sqlstate, text = bytes(payload[4:9]).decode("ascii", "replace"), bytes(payload[9:])
    else:
        sqlstate, text = "HY000", bytes(payload[3:])
    return code, text.decode("utf-8", "replace"), sqlstate


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


class ProtocolError(Exception):
    """The peer sent something the proxy cannot frame; the connection must be dropped."""


class ServerError(Exception):
    """An ERR packet from the backend while the proxy talked to it on its own behalf."""

    def __init__(self, code: int, message: str, sqlstate: str = "HY000"):
        super().__init__(f"({code}) {message}")
        self.code = code
        self.message = message
        self.sqlstate = sqlstate


# ResponseScanner modes
RESULT = 0  # COM_QUERY: OK | ERR | result set(s)
FIELD_LIST = 1  # COM_FIELD_LIST: column definitions up to EOF | ERR
SINGLE = 2  # exactly one packet (COM_INIT_DB, COM_STATISTICS, ...)

_FIRST, _COLDEFS, _COLDEF_EOF, _ROWS, _SINGLE, _DONE = range(6)


class ResponseScanner:
    """Finds the end of one server response in a byte stream, without copying rows.

    Feed it the chunks read from the backend (which are forwarded to the client as they are);
    ``feed`` returns True once the response is complete. Afterwards ``status`` holds the server
    status flags of the last OK/EOF (None if the response ended with ERR), ``error`` the
    (errno, message, sqlstate) of an ERR, and ``extra`` any bytes past the end (a protocol violation).
    """

    __slots__ = ("_deprecate_eof", "_state", "_columns", "_skip", "_continued", "_pending", "status", "error", "extra")

    def __init__(self, deprecate_eof: bool, mode: int = RESULT):
        self._deprecate_eof = deprecate_eof
        self._state = {RESULT: _FIRST, FIELD_LIST: _ROWS, SINGLE: _SINGLE}[mode]
        self._columns = 0
        self._skip = 0  # payload bytes of the current packet still to pass over
        self._continued = False  # current logical packet spans several 16 MiB wire packets
        self._pending = b""  # incomplete header or small packet carried to the next chunk
        self.status: int | None = None
        self.error: tuple[int, str] | None = None
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
                self._packet(buf[body : body + length], length)
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
        if state in (_FIRST, _SINGLE, _COLDEF_EOF):
            return True
        if state == _ROWS:
            return first == 0xFF or self._is_terminator(first, length)
        return False  # column definitions are passed over

    def _after_skipped_packet(self) -> None:
        if self._state == _COLDEFS:
            self._columns -= 1
            if self._columns == 0:
                self._state = _ROWS if self._deprecate_eof else _COLDEF_EOF

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
                self._state = _COLDEFS
        elif state == _COLDEF_EOF:
            if first != 0xFE:
                raise ProtocolError("expected EOF after column definitions")
            status = payload[3] | payload[4] << 8
            # a prepared statement opened with a cursor: rows come later via COM_STMT_FETCH
            self._state = _DONE if status & SERVER_STATUS_CURSOR_EXISTS else _ROWS
            if self._state == _DONE:
                self.status = status
        elif state == _ROWS:
            if first == 0xFF:
                self.error = parse_err(payload)
                self._state = _DONE
            elif self._deprecate_eof:
                self._end_of_result(_ok_status(payload))
            else:
                self._end_of_result(payload[3] | payload[4] << 8)
        else:  # pragma: no cover - _needs_whole never asks for other states
            raise ProtocolError(f"unexpected packet in state {state}")

    def _end_of_result(self, status: int) -> None:
        self.status = status
        self._state = _FIRST if status & SERVER_MORE_RESULTS_EXISTS else _DONE


def _ok_status(payload) -> int:
    """Status flags of an OK packet (header 0x00, or 0xFE when it replaces EOF)."""
    _, pos = read_lenenc_int(payload, 1)
    _, pos = read_lenenc_int(payload, pos)
    return payload[pos] | payload[pos + 1] << 8


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
