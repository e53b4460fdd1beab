"""One client connection's I/O: log in, then run ``core.SessionCore`` against real sockets.

The machine decides; this shell reads commands (never buffering one above ``max_allowed_packet``), borrows and
releases backends, relays reply bytes, pipes pinned sessions and enforces the limits that need a clock:

- A reply that fits in ``client_buffer_limit`` is read from the database at once, whatever the client does, and
  the backend goes back to the pool; the client then has ``client_write_timeout`` to take the bytes (progress
  resets it) before it is dropped with its buffer.
- A client that holds a backend (mid-reply, in a transaction, or pinned) and sits above the limit must keep
  reading: after ``reply_stall_timeout`` without taking a quarter of the limit it is dropped and the backend
  closed, so a stalled reader never keeps a pool slot for long.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Mapping
from dataclasses import dataclass

from .accounts import StaticAccount
from .backend import BackendConnection, BackendKey
from .client_io import CommandTooLarge, close_now, linger, read_command
from .config import ProxyConfig
from .constants import SESSION_CAPABILITIES, Capability, Command, ErrorCode
from .core import Actions, Adopt, Borrow, Close, Hold, Phase, Pin, Release, RollBack, SessionCore, ToBackend, ToClient
from .handshake import ClientStreams, ServerInfo
from .login import log_in
from .pool import BackendPool, BorrowTimeout
from .protocol import CommandCounter, ErrPacket, ProtocolError, ServerError
from .security import ClientSecurity
from .stats import Stats

log = logging.getLogger(__name__)

_CHUNK = 256 << 10  # bytes read from a backend at a time
_LINGER = 2.0  # seconds an oversized command's sender gets to read its error before the close
_RELAYING = (Phase.RELAYING, Phase.CHECKING)


@dataclass(frozen=True)
class SessionContext:
    """What every client session shares: settings, accounts, the pool, the counters, the advertised server."""

    config: ProxyConfig
    pool: BackendPool
    stats: Stats
    server_info: ServerInfo
    accounts: Mapping[str, StaticAccount]
    security: ClientSecurity = ClientSecurity()


class ClientSession:
    def __init__(
        self, context: SessionContext, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, connection_id: int
    ):
        self._context = context
        self.config = context.config
        self.pool = context.pool
        self.stats = context.stats
        self.reader = reader
        self.writer = writer
        self.connection_id = connection_id
        self.core: SessionCore | None = None
        self.key = BackendKey("", 0, 0)
        self.backend: BackendConnection | None = None
        self.busy = False  # inside a command (not idle, whatever the clock says)
        self.last_active = asyncio.get_running_loop().time()
        self._unread = 0  # reply bytes the client had not taken at the last write-stall check
        self._unread_since = 0.0

    # -- lifecycle -------------------------------------------------------------------------
    async def run(self) -> None:
        self.stats.client_opened()
        try:
            login = await self._login()
            if login is None:
                return
            self.key = BackendKey(login.username, login.capabilities & int(SESSION_CAPABILITIES), login.charset)
            self.core = SessionCore(
                deprecate_eof=bool(login.capabilities & Capability.DEPRECATE_EOF),
                database=login.database,
                exclude_variable_sets=self.config.exclude_variable_sets,
            )
            limit = self.config.client_buffer_limit
            self.writer.transport.set_write_buffer_limits(high=limit, low=limit * 3 // 4)
            await self._serve()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        except ProtocolError as exc:
            log.debug("client %d: protocol error: %s", self.connection_id, exc)
        except Exception:  # a bug must cost one client connection, not the proxy
            log.exception("client %d: unexpected error", self.connection_id)
        finally:
            if self.core is not None:
                if self.core.pin_reason:
                    self.stats.pinned_sessions -= 1
                await self._apply(self.core.client_left())
            self.stats.client_closed()
            self.close()

    async def _login(self):
        streams = ClientStreams(self.reader, self.writer)
        context = self._context
        try:
            return await log_in(
                streams,
                connection_id=self.connection_id,
                config=self.config,
                accounts=context.accounts,
                security=context.security,
                stats=self.stats,
                server_info=context.server_info,
                flush=lambda: self._drain(self.config.client_write_timeout),
            )
        finally:  # from here on the session talks through TLS if the client started it
            self.reader, self.writer = streams.reader, streams.writer

    def close_idle(self) -> None:
        """Idle client timeout: drop the connection (the read loop then ends)."""
        self.stats.idle_client_timeouts += 1
        self.close()

    def close(self) -> None:
        close_now(self.writer)

    # -- checks the proxy runs between events ----------------------------------------------------
    def check_held_backend(self) -> None:
        """A backend held for an open transaction that the database closed (killed, wait_timeout, restart) is
        released at once and the client disconnected: its transaction is gone, the slot must not wait."""
        core, backend = self.core, self.backend
        if core is None or backend is None or self.busy or core.phase is not Phase.IDLE or backend.usable:
            return
        self.stats.held_backends_lost += 1
        log.debug("client %d: its database connection closed during a transaction", self.connection_id)
        self._apply_now(core.held_backend_lost())

    def check_write_stall(self, now: float) -> None:
        """Drop a client that took none of its buffered reply bytes for client_write_timeout (and free them)."""
        unread = 0 if self.writer.is_closing() else self._buffered()
        if not unread or not self._unread or unread < self._unread:  # no backlog, a new one, or progress
            self._unread, self._unread_since = unread, now
            return
        self._unread = unread
        if now - self._unread_since >= self.config.client_write_timeout:
            self.stats.client_write_timeouts += 1
            log.debug("client %d left %d reply bytes unread; dropped", self.connection_id, unread)
            self.writer.transport.abort()

    # -- command loop ----------------------------------------------------------------------
    async def _serve(self) -> None:
        reader, core = self.reader, self.core
        assert core is not None
        loop = asyncio.get_running_loop()
        limit = self.config.max_allowed_packet
        while True:
            self.busy = False
            self.last_active = loop.time()  # idle time counts from the end of the last command
            header = await reader.readexactly(4)
            self.busy = True
            self.last_active = loop.time()
            try:
                raw, payload, seq = await read_command(reader, header, limit)
            except CommandTooLarge as exc:
                self.stats.oversized_packets += 1
                await self._apply(core.oversized(exc.seq))
                return
            self.stats.statements += 1
            if self._buffered() > self.config.client_buffer_limit and not await self._room_for_a_reply():
                return
            if not await self._run(core.command(raw, payload, seq)):
                return

    async def _run(self, actions: Actions) -> bool:
        """Carry out ``actions``, then relay or pipe as long as the machine says; False when the session ends."""
        core = self.core
        assert core is not None
        if not await self._apply(actions):
            return False
        while core.phase in _RELAYING:
            assert self.backend is not None
            try:
                data = await self.backend.reader.read(_CHUNK)
            except (ConnectionError, OSError) as exc:
                data, failure = b"", str(exc)
            else:
                failure = "the database closed the connection"
            if data:
                actions = core.backend_data(data)
            else:
                log.warning("client %d: backend failed: %s", self.connection_id, failure)
                actions = core.backend_lost(failure)
            if not await self._apply(actions):
                return False
            if core.phase is Phase.RELAYING and self.writer.is_closing():
                # the client is gone: closing the backend stops the query, where reading on would fetch the whole
                # reply for nobody (a 64 MB result per vanished client)
                self._apply_now(core.client_left())
                return False
            stalling = core.phase is Phase.RELAYING and self._buffered() > self.config.client_buffer_limit
            if stalling and not await self._drain(self.config.reply_stall_timeout):
                return await self._stalled()
        if core.phase is Phase.PINNED:
            await self._pipe()
            return False
        return core.phase is not Phase.CLOSED

    async def _apply(self, actions: Actions) -> bool:
        """Carry out actions in order; False once the session must end. (``type(...) is`` tests, not ``match``:
        this runs several times per statement, and class patterns cost a few microseconds each.)"""
        for action in actions:
            kind = type(action)
            if kind is ToClient:  # the most frequent first
                if not self.writer.is_closing():
                    self.writer.write(action.data)
            elif kind is Borrow:
                return await self._borrow(action)  # always the last action
            elif kind is RollBack:
                await self._roll_back()
            elif kind is Close:
                if await self._drain(self.config.client_write_timeout) and action.linger:
                    await linger(self.reader, self.writer, _LINGER)
                self.close()
                return False
            else:
                self._do(action)
        return True

    def _apply_now(self, actions: Actions) -> None:
        """Carry out actions that need no waiting (from the checks between events)."""
        for action in actions:
            if type(action) is ToClient:
                if not self.writer.is_closing():
                    self.writer.write(action.data)
            elif type(action) is Close:
                self.close()
            else:
                self._do(action)

    def _do(self, action) -> None:
        kind = type(action)
        if kind is ToBackend:
            assert self.backend is not None
            self.backend.unpark()
            self.backend.writer.write(action.data)
        elif kind is Release:
            backend, self.backend = self.backend, None
            if backend is not None:
                self.pool.release(backend, reusable=action.reusable)
        elif kind is Hold:
            assert self.backend is not None
            self.backend.park()  # check_held_backend watches it until the client's next command
        elif kind is Adopt:
            assert self.backend is not None
            self.backend.state, self.backend.db = dict(action.state), action.db
        elif kind is Pin:
            self.stats.pinned_sessions += 1
            self.stats.pinned_sessions_total += 1
            log.debug("client %d pinned: %s", self.connection_id, action.reason)
        else:  # pragma: no cover - Borrow, RollBack and Close need _apply
            raise TypeError(f"{action!r} cannot be carried out without waiting")

    # -- backends ----------------------------------------------------------------------------
    async def _borrow(self, borrow: Borrow) -> bool:
        core = self.core
        assert core is not None
        try:
            self.backend = await self.pool.acquire(self.key, dict(borrow.state), borrow.db)
        except BorrowTimeout:
            failure = ErrPacket(ErrorCode.BORROW_TIMEOUT, "Timed-out waiting to acquire database connection", "08001")
        except ServerError as exc:
            failure = ErrPacket(exc.code, exc.message, exc.sqlstate)
        except (OSError, ProtocolError, asyncio.IncompleteReadError) as exc:
            message = f"The RDS Proxy stand-in could not reach the database: {exc}"
            failure = ErrPacket(ErrorCode.SERVER_SHUTDOWN, message, ErrorCode.SERVER_SHUTDOWN.sqlstate)
        else:
            return await self._apply(core.backend_ready())
        return await self._apply(core.borrow_failed(failure))

    async def _roll_back(self) -> None:
        backend, self.backend = self.backend, None
        if backend is None:
            return
        if self.pool.closed:
            self.pool.release(backend, reusable=False)
            return
        try:
            backend.unpark()
            await backend.command(Command.QUERY, b"ROLLBACK")
        except (ServerError, ProtocolError, ConnectionError, OSError):
            self.pool.release(backend, reusable=False)
        else:
            self.pool.release(backend)

    # -- stalled clients ---------------------------------------------------------------------
    @property
    def buffered_bytes(self) -> int:
        """Reply bytes written for this client that it has not taken yet (beyond what the kernel holds)."""
        return 0 if self.writer.is_closing() else self._buffered()

    def _buffered(self) -> int:
        return self.writer.transport.get_write_buffer_size()

    async def _drain(self, timeout: float) -> bool:
        """Wait until the client took bytes below the buffer limit; False if it did not within ``timeout``."""
        try:
            await asyncio.wait_for(self.writer.drain(), timeout)
        except TimeoutError:
            return False
        except ConnectionError:
            pass  # the client is gone: nothing left to wait for
        return True

    async def _room_for_a_reply(self) -> bool:
        """Before a new command: a client still above the buffer limit must take its earlier replies first."""
        core = self.core
        assert core is not None
        if await self._drain(self.config.reply_stall_timeout if core.attached else self.config.client_write_timeout):
            return True
        if core.attached:
            return await self._stalled()
        self.stats.client_write_timeouts += 1
        self.writer.transport.abort()
        return False

    async def _stalled(self) -> bool:
        """Drop a client that holds a backend and stopped reading: the backend is closed, its slot freed."""
        core = self.core
        assert core is not None
        self.stats.client_write_timeouts += 1
        self.stats.stalled_replies += 1
        log.debug("client %d stopped reading with a backend; dropped, the backend closed", self.connection_id)
        self.writer.transport.abort()
        self._apply_now(core.client_stalled())
        return False

    async def _pipe(self) -> None:
        """Pinned: bytes both ways until either side ends (the backend is closed afterwards)."""
        assert self.backend is not None
        backend = self.backend
        self.busy = False
        up = asyncio.ensure_future(self._copy_up(backend))
        down = asyncio.ensure_future(self._copy_down(backend))
        try:
            await asyncio.wait((up, down), return_when=asyncio.FIRST_COMPLETED)
        finally:
            up.cancel()
            down.cancel()
            await asyncio.gather(up, down, return_exceptions=True)

    async def _copy_up(self, backend: BackendConnection) -> None:
        counter, loop = CommandCounter(), asyncio.get_running_loop()
        while data := await self.reader.read(65536):
            self.last_active = loop.time()
            backend.writer.write(data)
            self.stats.statements += counter.feed(data)
            await backend.writer.drain()

    async def _copy_down(self, backend: BackendConnection) -> None:
        loop, limit = asyncio.get_running_loop(), self.config.client_buffer_limit
        while data := await backend.reader.read(_CHUNK):
            self.last_active = loop.time()
            self.writer.write(data)
            if self._buffered() > limit and not await self._drain(self.config.reply_stall_timeout):
                await self._stalled()
                return
