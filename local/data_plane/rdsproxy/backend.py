"""One database connection the proxy holds: logged in with an account, carrying session state for clients.

A backend carries what it was given on behalf of clients: the account's user, negotiated capabilities and charset
(``BackendKey``, fixed at connect), tracked SET variables and the default database. Between commands it is parked
(idle in the pool, or held for a client's open transaction): any byte or end of stream that arrives then means the
server dropped it (killed, ``wait_timeout``, restart), which ``BackendReader`` records without a system call.
"""

from __future__ import annotations

import asyncio
from typing import NamedTuple

from .classify import CHARSET_KEY
from .constants import Capability, Command
from .handshake import BackendHandshake
from .protocol import ProtocolError, ResponseKind, ResponseScanner, ServerError, packet, single_row

_CHARSET_VARIABLES = (
    "character_set_client",
    "character_set_connection",
    "character_set_results",
    "collation_connection",
)


class BackendKey(NamedTuple):
    """What a backend can only be shared on: the same account, capabilities and handshake collation."""

    user: str
    capabilities: int
    charset: int


class BackendReader(asyncio.StreamReader):
    """A StreamReader that records bytes or an end of stream arriving while its connection is parked."""

    def __init__(self) -> None:
        super().__init__()
        self.parked = False
        self.unsolicited = False

    def feed_data(self, data: bytes) -> None:
        if self.parked:
            self.unsolicited = True
        super().feed_data(data)

    def feed_eof(self) -> None:
        if self.parked:
            self.unsolicited = True
        super().feed_eof()


async def connect_backend(host: str, port: int) -> tuple[BackendReader, asyncio.StreamWriter]:
    """``asyncio.open_connection`` with a BackendReader."""
    loop = asyncio.get_running_loop()
    reader = BackendReader()
    protocol = asyncio.StreamReaderProtocol(reader)
    transport, _ = await loop.create_connection(lambda: protocol, host, port)
    return reader, asyncio.StreamWriter(transport, protocol, reader, loop)


class BackendConnection:
    __slots__ = (
        "reader",
        "writer",
        "key",
        "state",
        "db",
        "deprecate_eof",
        "info",
        "closed",
        "charset_baseline",
        "idle_since",
        "borrowed_at",
    )

    def __init__(self, reader, writer, key: BackendKey, db: str | None, info: BackendHandshake):
        self.reader = reader
        self.writer = writer
        self.key = key
        self.state: dict[str, bytes] = {}
        self.db = db
        self.deprecate_eof = bool(key.capabilities & Capability.DEPRECATE_EOF)
        self.info = info
        self.closed = False
        #: SET items that restore the charset variables this connection started with
        self.charset_baseline = b""
        self.idle_since = 0.0
        self.borrowed_at = 0.0

    @property
    def usable(self) -> bool:
        """False once closed by either side, or once the server sent something while it was parked (the ERR
        MariaDB sends before it drops a killed or timed-out connection): such a connection is not reused."""
        return self.open and not self.reader.unsolicited

    @property
    def open(self) -> bool:
        """Not known to be closed."""
        return not (self.closed or self.reader.at_eof() or self.writer.is_closing())

    def park(self) -> None:
        """Between commands: from now on any byte or close from the server makes it unusable."""
        self.reader.parked = True

    def unpark(self) -> None:
        """Before a command is sent: bytes are expected again."""
        self.reader.parked = False

    async def command(
        self, command: Command, argument: bytes, kind: ResponseKind = ResponseKind.RESULT, keep: list | None = None
    ) -> ResponseScanner:
        """Run one command for the proxy itself; raises ServerError on an ERR reply.

        ``keep``, if given, collects the raw response bytes.
        """
        self.writer.write(packet(0, bytes((command,)) + argument))
        scanner = ResponseScanner(self.deprecate_eof, kind)
        while True:
            data = await self.reader.read(65536)
            if not data:
                raise ConnectionError("backend closed the connection")
            if keep is not None:
                keep.append(data)
            if scanner.feed(data):
                break
        if scanner.extra:
            raise ProtocolError("backend sent data past the end of a response")
        if scanner.error:
            raise ServerError(*scanner.error)
        return scanner

    async def remember_charset_baseline(self) -> None:
        response: list[bytes] = []
        select = b"SELECT " + b", ".join(b"@@" + name.encode() for name in _CHARSET_VARIABLES)
        await self.command(Command.QUERY, select, keep=response)
        values = single_row(b"".join(response), self.deprecate_eof)
        self.charset_baseline = b", ".join(
            name.encode() + b" = " + (b"NULL" if value is None else b"'" + value + b"'")
            for name, value in zip(_CHARSET_VARIABLES, values, strict=True)
        )

    def sync_items(self, state: dict[str, bytes]) -> list[bytes]:
        """SET items that turn this backend's tracked state into ``state``."""
        mine = self.state
        items = []
        for name in mine:
            if name not in state and name != CHARSET_KEY:
                items.append(b"SESSION " + name.encode() + b" = DEFAULT")
        charset = state.get(CHARSET_KEY)
        if mine.get(CHARSET_KEY) != charset:
            if CHARSET_KEY in mine:
                items.append(self.charset_baseline)
            if charset is not None:
                items.append(charset)
        for name, text in state.items():
            if name != CHARSET_KEY and mine.get(name) != text:
                items.append(text)
        return items

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            if not self.writer.is_closing():
                self.writer.write(packet(0, bytes((Command.QUIT,))))
            self.writer.close()
        except (ConnectionError, RuntimeError):  # pragma: no cover - loop shutting down
            pass
