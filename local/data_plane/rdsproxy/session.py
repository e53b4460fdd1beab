"""One client connection: authenticate, then run its commands over borrowed backends.

Multiplexed mode: each command borrows a backend (or keeps the one held for an open
transaction), is written to it unchanged, and the backend's response is relayed byte for byte
while a :class:`ResponseScanner` looks for its end and final status flags. Without
``SERVER_STATUS_IN_TRANS`` the backend goes back to the pool right away.

Pinned mode: once a statement needs session state the proxy cannot move (see ``classify``),
the backend belongs to this client until it disconnects, and bytes are piped both ways.

Hostile or stalled clients cost only their own connection: login has a deadline
(``login_timeout``), commands above ``max_allowed_packet`` get error 1153 and are not buffered, and a
client that stops reading is dropped after ``client_write_timeout`` with its backend closed, so it
cannot hold a pool slot.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from dataclasses import dataclass

from . import protocol as p
from .classify import PIN, TRACK, USE, apply_tracked, classify
from .client_io import CommandTooLarge, close_now, linger, read_command
from .config import ProxyConfig
from .handshake import ClientLogin, ClientStreams, ServerInfo
from .login import log_in
from .pool import BackendPool, BorrowTimeout
from .security import ClientSecurity
from .stats import Stats

log = logging.getLogger(__name__)

SERVER_STATUS_DB_DROPPED = 0x0100
_DRAIN_ABOVE = 1 << 20  # relayed bytes buffered for a client before the relay waits for it
_PIPE_DRAIN_ABOVE = 1 << 16
_LINGER = 2.0  # seconds an oversized command's sender gets to read its error before the close


@dataclass(frozen=True)
class SessionContext:
    """What every client session shares: the settings, the pool, the counters, the advertised server."""

    config: ProxyConfig
    pool: BackendPool
    stats: Stats
    server_info: ServerInfo
    security: ClientSecurity = ClientSecurity()


class ClientStalled(Exception):
    """The client did not take response bytes within client_write_timeout."""


class ClientSession:
    def __init__(
        self, context: SessionContext, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, connection_id: int
    ):
        self.config = context.config
        self.security = context.security
        self.server_info = context.server_info
        self.pool = context.pool
        self.stats = context.stats
        self.reader = reader
        self.writer = writer
        self.connection_id = connection_id
        self._exclude_sets = context.config.exclude_variable_sets
        self._write_timeout = context.config.client_write_timeout
        self._reply_seq = 1
        self.key: tuple[int, int] = (0, 0)
        self.state: dict[str, bytes] = {}
        self.db: str | None = None
        self.initial_db: str | None = None
        self.backend = None  # attached backend: in use, held for a transaction, or pinned
        self.pinned = False
        self.status = p.SERVER_STATUS_AUTOCOMMIT
        self.busy = False  # inside a command (not idle, whatever the clock says)
        self.last_active = asyncio.get_running_loop().time()

    # -- lifecycle -------------------------------------------------------------------------
    async def run(self) -> None:
        self.stats.client_opened()
        try:
            login = await self._login()
            if login is None:
                return
            self.key = (login.capabilities & p.SESSION_CAPABILITIES, login.charset)
            self.db = self.initial_db = login.database
            await self._serve()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        except p.ProtocolError as exc:
            log.debug("client %d: protocol error: %s", self.connection_id, exc)
        except Exception:  # a bug must cost one client connection, not the proxy
            log.exception("client %d: unexpected error", self.connection_id)
        finally:
            await self._detach()
            self.stats.client_connections -= 1
            self.close()

    async def _login(self) -> ClientLogin | None:
        streams = ClientStreams(self.reader, self.writer)
        try:
            return await log_in(
                streams,
                connection_id=self.connection_id,
                config=self.config,
                security=self.security,
                stats=self.stats,
                server_info=self.server_info,
                flush=self._flush,
            )
        finally:  # from here on the session talks through TLS if the client started it
            self.reader, self.writer = streams.reader, streams.writer

    def close_idle(self) -> None:
        """Idle client timeout: drop the connection (the read loop then ends)."""
        self.stats.idle_client_timeouts += 1
        self.close()

    def close(self) -> None:
        close_now(self.writer)

    async def _flush(self) -> bool:
        """Wait until the client took what was written; False (client dropped) after client_write_timeout."""
        try:
            await asyncio.wait_for(self.writer.drain(), self._write_timeout)
        except TimeoutError:
            self.stats.client_write_timeouts += 1
            log.debug("client %d stopped reading; dropped", self.connection_id)
            self.writer.transport.abort()
            return False
        except ConnectionError:
            pass
        return True

    async def _detach(self) -> None:
        backend, self.backend = self.backend, None
        if backend is None:
            return
        if self.pinned:
            self.stats.pinned_sessions -= 1
        if self.pinned or self.busy or self.pool.closed:
            self.pool.release(backend, reusable=False)  # state unknown: do not reuse
            return
        try:  # held for an open transaction the client abandoned
            backend.unpark()
            await backend.command(p.COM_QUERY, b"ROLLBACK")
        except (p.ServerError, p.ProtocolError, ConnectionError, OSError):
            self.pool.release(backend, reusable=False)
        else:
            self.pool.release(backend)

    # -- command loop ----------------------------------------------------------------------
    async def _serve(self) -> None:
        reader = self.reader
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
                await self._refuse_oversized(exc.seq)
                return
            self._reply_seq = seq + 1
            if not payload:
                self._reply(p.err_payload(p.ER_UNKNOWN_COM, "Unknown command", "08S01"))
                await self._flush()
                return
            command = payload[0]
            self.stats.statements += 1
            if command == p.COM_QUERY:
                done = await self._query(raw, payload)
            elif command == p.COM_QUIT:
                return
            elif command == p.COM_PING:
                self._reply(p.ok_payload(self.status & (p.SERVER_STATUS_AUTOCOMMIT | p.SERVER_STATUS_IN_TRANS)))
                done = False
            elif command == p.COM_INIT_DB:
                done = await self._statement(raw, p.SINGLE, use_db=payload[1:].decode("utf-8", "surrogateescape"))
            elif command == p.COM_FIELD_LIST:
                done = await self._statement(raw, p.FIELD_LIST)
            elif command == p.COM_STATISTICS:
                done = await self._statement(raw, p.SINGLE)
            elif command == p.COM_RESET_CONNECTION:
                self._reset_session()
                done = False
            elif command == p.COM_CHANGE_USER:
                self._reply(
                    p.err_payload(p.ER_NOT_SUPPORTED, "COM_CHANGE_USER is not supported by the RDS Proxy stand-in")
                )
                done = False
            else:  # prepared statements and anything else stateful or unknown
                done = await self._pin_and_pipe(raw, f"command 0x{command:02x}")
            if done:
                return

    async def _refuse_oversized(self, seq: int) -> None:
        """MySQL's answer to a command above max_allowed_packet: error 1153, then close (nothing buffered)."""
        self.stats.oversized_packets += 1
        self._reply_seq = seq + 1
        self._reply(
            p.err_payload(p.ER_NET_PACKET_TOO_LARGE, "Got a packet bigger than 'max_allowed_packet' bytes", "08S01")
        )
        if await self._flush():
            await linger(self.reader, self.writer, _LINGER)

    async def _query(self, raw: bytes, payload: bytes) -> bool:
        statement = classify(payload[1:], self._exclude_sets)
        if statement.action == PIN:
            return await self._pin_and_pipe(raw, statement.reason)
        if statement.action == TRACK:
            return await self._statement(raw, p.RESULT, track=statement.items)
        if statement.action == USE:
            return await self._statement(raw, p.RESULT, use_db=statement.items[0][0])
        return await self._statement(raw, p.RESULT)

    async def _statement(self, raw: bytes, mode: int, *, track=(), use_db: str | None = None) -> bool:
        """Run one multiplexable command; returns True when the session must end.

        A tracked SET runs on a backend already brought to the state the SET produces (so the
        SET itself is a no-op there, and a bad value fails the same way either time).
        """
        new_state = apply_tracked(self.state, track) if track else None
        backend = await self._borrow(new_state)
        if backend is None:
            return False
        scanner = await self._exchange(backend, raw, mode)
        if scanner is None:
            return self.writer.is_closing()
        if scanner.error is None:
            if track:
                self.state = backend.state = new_state
            elif use_db is not None:
                self.db = backend.db = use_db
        elif track:
            # a SET may have applied some of its items before failing: the backend's state is unknown
            self.backend = None
            self.pool.release(backend, reusable=False)
            return False
        await self._settle(backend, scanner)
        return False

    async def _settle(self, backend, scanner: p.ResponseScanner) -> None:
        """Keep the backend while a transaction is open, else return it to the pool."""
        status = scanner.status
        if status is None:  # ended with ERR, which carries no status: ask the server
            if self.status & p.SERVER_STATUS_IN_TRANS or not self.status & p.SERVER_STATUS_AUTOCOMMIT:
                try:
                    status = (await backend.command(p.COM_PING, b"", p.SINGLE)).status
                except (p.ServerError, p.ProtocolError, ConnectionError, OSError):
                    self.backend = None
                    self.pool.release(backend, reusable=False)
                    return
            else:
                status = self.status
        if status is None:
            status = self.status
        if status & SERVER_STATUS_DB_DROPPED:
            backend.db = self.db = None
        self.status = status
        if not status & p.SERVER_STATUS_IN_TRANS:
            self.backend = None
            self.pool.release(backend)
        else:
            backend.park()  # held until the client's next command; check_held_backend watches it

    def check_held_backend(self) -> None:
        """Between commands, a backend held for an open transaction that the database closed (killed,
        wait_timeout, restart) is released at once and the client is disconnected, as the database
        would have disconnected it: its transaction is gone, and the pool slot must not wait for the
        client's next command."""
        backend = self.backend
        if backend is None or self.busy or self.pinned or backend.usable:
            return
        self.backend = None
        self.pool.release(backend, reusable=False)
        self.stats.held_backends_lost += 1
        log.debug("client %d: its database connection closed during a transaction", self.connection_id)
        self._reply_seq = 0
        self._reply(p.err_payload(p.ER_CONNECTION_KILLED, "Connection was killed", "70100"))
        self.close()

    def _reset_session(self) -> None:
        """COM_RESET_CONNECTION: forget tracked state and any open transaction."""
        if self.backend is not None:
            backend, self.backend = self.backend, None
            self.pool.release(backend, reusable=False)
        self.state = {}
        self.db = self.initial_db
        self.status = p.SERVER_STATUS_AUTOCOMMIT
        self._reply(p.ok_payload())

    # -- backends ----------------------------------------------------------------------------
    async def _borrow(self, state: dict[str, bytes] | None = None):
        if self.backend is not None:
            self.backend.unpark()
            return self.backend
        try:
            self.backend = await self.pool.acquire(self.key, self.state if state is None else state, self.db)
        except BorrowTimeout:
            self._reply(p.err_payload(p.ER_BORROW_TIMEOUT, "Timed-out waiting to acquire database connection", "08001"))
            return None
        except p.ServerError as exc:
            self._reply(p.err_payload(exc.code, exc.message, exc.sqlstate))
            return None
        except (OSError, p.ProtocolError, asyncio.IncompleteReadError) as exc:
            self._reply(
                p.err_payload(
                    p.ER_SERVER_SHUTDOWN, f"The RDS Proxy stand-in could not reach the database: {exc}", "08S01"
                )
            )
            return None
        return self.backend

    async def _exchange(self, backend, raw: bytes, mode: int) -> p.ResponseScanner | None:
        """Send a command and relay the response; None if the backend failed mid-way."""
        backend.writer.write(raw)
        scanner = p.ResponseScanner(backend.deprecate_eof, mode)
        client = self.writer
        read = backend.reader.read
        relayed = False
        try:
            while True:
                data = await read(262144)
                if not data:
                    raise ConnectionError("database closed the connection")
                done = scanner.feed(data)
                if not client.is_closing():
                    client.write(data)
                    relayed = True
                if done:
                    break
                # a closed client needs no waiting: the rest of the response is read and dropped so
                # the backend ends it cleanly
                if client.transport.get_write_buffer_size() > _DRAIN_ABOVE and not await self._flush():
                    raise ClientStalled
            if scanner.extra:
                raise p.ProtocolError("database sent data past the end of a response")
        except ClientStalled:
            self.backend = None  # mid-response: its state is unknown, and the slot is needed
            self.pool.release(backend, reusable=False)
            return None
        except (ConnectionError, OSError, p.ProtocolError) as exc:
            log.warning("client %d: backend failed: %s", self.connection_id, exc)
            self.backend = None
            self.pool.release(backend, reusable=False)
            if relayed:
                self.close()
            else:
                self._reply(
                    p.err_payload(
                        p.ER_CONNECTION_KILLED,
                        f"Connection was killed: the RDS Proxy stand-in lost its database connection ({exc})",
                        "70100",
                    )
                )
            return None
        return scanner

    async def _pin_and_pipe(self, raw: bytes, reason: str) -> bool:
        backend = await self._borrow()
        if backend is None:
            return False
        self.pinned = True
        self.stats.pinned_sessions += 1
        self.stats.pinned_sessions_total += 1
        log.debug("client %d pinned: %s", self.connection_id, reason)
        backend.writer.write(raw)
        self.busy = False
        up = asyncio.ensure_future(self._copy(self.reader, backend.writer, p.CommandCounter()))
        down = asyncio.ensure_future(self._copy(backend.reader, self.writer, None))
        try:
            await asyncio.wait((up, down), return_when=asyncio.FIRST_COMPLETED)
        finally:
            up.cancel()
            down.cancel()
            await asyncio.gather(up, down, return_exceptions=True)
        return True

    async def _copy(self, reader, writer, counter) -> None:
        loop = asyncio.get_running_loop()
        while True:
            data = await reader.read(65536)
            if not data:
                return
            self.last_active = loop.time()
            writer.write(data)
            if counter is not None:
                self.stats.statements += counter.feed(data)
                await writer.drain()  # towards the database
            elif writer.transport.get_write_buffer_size() > _PIPE_DRAIN_ABOVE and not await self._flush():
                return  # the client stopped reading: end the session, which closes the backend

    def _reply(self, payload: bytes) -> None:
        self.writer.write(p.packet(self._reply_seq, payload))
