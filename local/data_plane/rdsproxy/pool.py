"""Backend connection pool with RDS Proxy's limits.

At most ``pool_cap`` connections exist at once (opening ones included). A client that needs a
connection when all are busy waits in FIFO order up to ``connection_borrow_timeout`` and then
gets :class:`BorrowTimeout`. Released connections go to the first waiter, else become idle;
idle connections beyond ``max_idle`` are closed once they have been idle for ``IDLE_GRACE``
seconds (``trim_idle``), so a busy pool does not close and reopen connections between bursts.

A backend carries session state it was given on behalf of clients: negotiated capabilities and
charset (the pool key, fixed at connect), tracked SET variables and the default database.
Before a client uses a backend, the backend is brought to the client's state with one SET
(variables the client never set go back to DEFAULT, charset variables to what the backend had
right after connecting). Idle backends that already match are preferred, so a steady workload
pays nothing. A client without a default database cannot use a backend that has one (MySQL
cannot unselect a database); such mismatches open a fresh connection instead.
"""

from __future__ import annotations

import asyncio
import collections
import logging

from . import protocol as p
from .classify import CHARSET_KEY, split_statements
from .config import ProxyConfig
from .handshake import BackendHandshake, login_backend
from .stats import Stats

log = logging.getLogger(__name__)

#: Seconds an idle connection above max_idle is kept before it is closed.
IDLE_GRACE = 1.0


class BorrowTimeout(Exception):
    """No backend connection became free within connection_borrow_timeout."""


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
    )

    def __init__(self, reader, writer, key: tuple[int, int], db: str | None, info: BackendHandshake):
        self.reader = reader
        self.writer = writer
        self.key = key
        self.state: dict[str, bytes] = {}
        self.db = db
        self.deprecate_eof = bool(key[0] & p.CLIENT_DEPRECATE_EOF)
        self.info = info
        self.closed = False
        #: SET items that restore the charset variables this connection started with
        self.charset_baseline = b""
        self.idle_since = 0.0

    @property
    def usable(self) -> bool:
        """False once closed by either side. A parked connection (idle in the pool, or held between
        a client's commands for its open transaction) never receives bytes: if it does, the server
        sent something unsolicited (the ERR MariaDB sends before it drops a killed or timed-out
        connection), so the connection is not reused. The reader records that; no system call."""
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
        self, command: int, argument: bytes, mode: int = p.RESULT, keep: list | None = None
    ) -> p.ResponseScanner:
        """Run one command for the proxy itself; raises ServerError on an ERR reply.

        ``keep``, if given, collects the raw response bytes.
        """
        self.writer.write(p.packet(0, bytes((command,)) + argument))
        scanner = p.ResponseScanner(self.deprecate_eof, mode)
        while True:
            data = await self.reader.read(65536)
            if not data:
                raise ConnectionError("backend closed the connection")
            if keep is not None:
                keep.append(data)
            if scanner.feed(data):
                break
        if scanner.extra:
            raise p.ProtocolError("backend sent data past the end of a response")
        if scanner.error:
            raise p.ServerError(*scanner.error)
        return scanner

    async def remember_charset_baseline(self) -> None:
        names = ("character_set_client", "character_set_connection", "character_set_results", "collation_connection")
        response: list[bytes] = []
        await self.command(p.COM_QUERY, b"SELECT " + b", ".join(b"@@" + n.encode() for n in names), keep=response)
        values = p.single_row(b"".join(response), self.deprecate_eof)
        self.charset_baseline = b", ".join(
            n.encode() + b" = " + (b"NULL" if v is None else b"'" + v + b"'")
            for n, v in zip(names, values, strict=True)
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
                self.writer.write(p.packet(0, bytes((p.COM_QUIT,))))
            self.writer.close()
        except (ConnectionError, RuntimeError):  # pragma: no cover - loop shutting down
            pass


class BackendPool:
    def __init__(self, config: ProxyConfig, stats: Stats):
        self._config = config
        self._stats = stats
        self._cap = config.pool_cap
        self._max_idle = config.max_idle
        self._slots = 0  # open + opening connections
        self._idle: list[BackendConnection] = []
        self._waiters: collections.deque[asyncio.Future] = collections.deque()
        self._closed = False

    # -- borrowing -------------------------------------------------------------------------
    async def acquire(self, key: tuple[int, int], state: dict[str, bytes], db: str | None) -> BackendConnection:
        """A backend with the client's key, tracked variables and database applied."""
        backend = self._take_idle(key, state, db)
        if backend is None:
            if self._slots < self._cap:
                self._slots += 1
                backend = await self._open_in_slot(key, db)
            elif self._idle:
                self._close_backend(self._idle.pop(0))  # slot passes to us
                backend = await self._open_in_slot(key, db)
            else:
                backend = await self._wait(key, db)
        try:
            await self._sync(backend, state, db)
        except BaseException:
            self.release(backend, reusable=False)
            raise
        return backend

    def release(self, backend: BackendConnection, reusable: bool = True) -> None:
        """Give a backend back; ``reusable=False`` closes it (unknown or unwanted state)."""
        if not reusable or not backend.open or self._closed:  # taking it checks ``usable``
            self._close_backend(backend)
            self._give_slot(None)
            return
        if self._give_slot(backend):
            return
        backend.idle_since = asyncio.get_running_loop().time()
        backend.park()
        self._idle.append(backend)

    def trim_idle(self, grace: float = IDLE_GRACE) -> int:
        """Close the longest-idle connections above max_idle that were idle ``grace`` s; count."""
        deadline = asyncio.get_running_loop().time() - grace
        closed = 0
        while len(self._idle) > self._max_idle and self._idle[0].idle_since <= deadline:
            self._close_backend(self._idle.pop(0))
            self._give_slot(None)
            closed += 1
        return closed

    def _give_slot(self, backend: BackendConnection | None) -> bool:
        """Hand a backend (or, with None, a free slot) to the first live waiter."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                if backend is not None:
                    backend.park()  # until the waiter runs and checks it
                waiter.set_result(backend)
                return True
        if backend is None:
            self._slots -= 1
        return False

    def _take_idle(self, key, state, db) -> BackendConnection | None:
        """Best idle backend: same state, else fewest differences; None if none fits."""
        idle = self._idle
        best = None
        best_cost = 1 << 30
        dead = []
        for index in range(len(idle) - 1, -1, -1):  # most recently used first
            backend = idle[index]
            if backend.key != key or (db is None and backend.db is not None):
                continue
            if not backend.usable:  # the server closed it while idle
                dead.append(backend)
                continue
            if backend.state == state:
                cost = 0 if backend.db == db else 1
            else:
                cost = 2 + len(backend.state.keys() ^ state.keys())
            if cost < best_cost:
                best, best_cost = backend, cost
                if cost == 0:
                    break
        for backend in dead:
            idle.remove(backend)
            self._close_backend(backend)
            self._give_slot(None)
        if best is not None:
            idle.remove(best)
            best.unpark()
        return best

    async def _wait(self, key, db) -> BackendConnection:
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        self._waiters.append(waiter)
        self._stats.borrow_waits += 1
        timer = loop.call_later(self._config.connection_borrow_timeout, self._expire, waiter)
        try:
            backend = await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                got = waiter.result()  # handed over just as we were cancelled
                if got is None:
                    self._give_slot(None)
                else:
                    self.release(got)
            raise
        finally:
            timer.cancel()
        if backend is None:
            return await self._open_in_slot(key, db)
        if backend.key != key or (db is None and backend.db is not None) or not backend.usable:
            self._close_backend(backend)
            return await self._open_in_slot(key, db)
        backend.unpark()
        return backend

    def _expire(self, waiter: asyncio.Future) -> None:
        if not waiter.done():
            self._stats.borrow_timeouts += 1
            waiter.set_exception(BorrowTimeout())
            try:
                self._waiters.remove(waiter)
            except ValueError:
                pass

    async def _sync(self, backend: BackendConnection, state, db) -> None:
        if backend.state != state:
            await backend.command(p.COM_QUERY, b"SET " + b", ".join(backend.sync_items(state)))
            backend.state = state
        if db is not None and backend.db != db:
            await backend.command(p.COM_INIT_DB, db.encode("utf-8", "surrogateescape"), p.SINGLE)
            backend.db = db

    # -- connections -----------------------------------------------------------------------
    async def _open_in_slot(self, key, db) -> BackendConnection:
        """Open a backend in a slot the caller already holds; frees the slot on failure."""
        try:
            return await self.open(key, db)
        except BaseException:
            self._give_slot(None)
            raise

    async def open(self, key: tuple[int, int] | None, db: str | None) -> BackendConnection:
        """Connect and authenticate with the proxy's own credentials; runs init_query."""
        cfg = self._config
        try:
            reader, writer = await connect_backend(cfg.backend_host, cfg.backend_port)
        except OSError:
            self._stats.backend_connect_errors += 1
            raise
        self._stats.backend_opened()
        capabilities, charset = key if key is not None else (p.CLIENT_DEPRECATE_EOF | p.CLIENT_MULTI_RESULTS, None)
        try:
            info = await login_backend(
                reader,
                writer,
                user=cfg.backend_user,
                password=cfg.backend_password,
                database=db,
                charset=charset,
                capabilities=capabilities,
            )
            backend = BackendConnection(
                reader, writer, (capabilities, charset if charset is not None else info.charset), db, info
            )
            for statement in split_statements(cfg.init_query.encode()):
                await backend.command(p.COM_QUERY, statement)
            await backend.remember_charset_baseline()
        except BaseException:
            self._stats.backend_connect_errors += 1
            self._stats.backend_connections -= 1
            writer.close()
            raise
        return backend

    def _close_backend(self, backend: BackendConnection) -> None:
        if not backend.closed:
            backend.close()
            self._stats.backend_connections -= 1

    def close(self) -> None:
        self._closed = True
        for backend in self._idle:
            self._close_backend(backend)
        self._idle.clear()
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_exception(ConnectionError("proxy is shutting down"))
        self._waiters.clear()

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def idle_count(self) -> int:
        return len(self._idle)
