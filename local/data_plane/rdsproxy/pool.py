"""Backend connection pool with RDS Proxy's limits, pooled per account under one cap.

At most ``pool_cap`` connections exist at once (opening ones included), whichever accounts they belong to. When no
idle connection fits, a borrow queues and the pool grows by ``growth.GrowthPolicy`` (one connection at a time, only
when the queue's head has waited longer than connections take to come back); at the cap a borrow waits up to
``connection_borrow_timeout`` and then gets :class:`BorrowTimeout`. Released connections go to the first waiter,
else become idle; idle connections beyond ``max_idle`` are closed once they have been idle ``IDLE_GRACE`` seconds
(``trim_idle``), so a busy pool does not close and reopen connections between bursts.

Before a client uses a backend, the backend is brought to the client's tracked state with one SET (variables the
client never set go back to DEFAULT, charset variables to what the backend had right after connecting). Idle
backends that already match are preferred, so a steady workload pays nothing. A client without a default database
cannot use a backend that has one (MySQL cannot unselect a database); such mismatches open a fresh connection.
"""

from __future__ import annotations

import asyncio
import collections
import enum
import logging
from collections.abc import Mapping

from .accounts import StaticAccount
from .backend import BackendConnection, BackendKey, connect_backend
from .classify import split_statements
from .config import ProxyConfig
from .constants import Capability, Command
from .growth import GrowthPolicy
from .handshake import login_backend
from .protocol import ResponseKind
from .stats import Stats

log = logging.getLogger(__name__)

#: Seconds an idle connection above max_idle is kept before it is closed.
IDLE_GRACE = 1.0
#: Capabilities of connections the proxy opens for itself (the start-up check).
_OWN_CAPABILITIES = Capability.DEPRECATE_EOF | Capability.MULTI_RESULTS


class BorrowTimeout(Exception):
    """No backend connection became free within connection_borrow_timeout."""


class _Grant(enum.Enum):
    """What a waiter is handed instead of a connection: a slot to open one in."""

    FREED = "freed"  # a connection was closed: its slot passes on
    GROWTH = "growth"  # the pool grows by one for the head of the queue


class _Waiter:
    __slots__ = ("future", "since")

    def __init__(self, future: asyncio.Future, since: float) -> None:
        self.future = future
        self.since = since


class BackendPool:
    def __init__(self, config: ProxyConfig, stats: Stats, accounts: Mapping[str, StaticAccount]):
        self._config = config
        self._stats = stats
        self._accounts = accounts
        self._cap = config.pool_cap
        self._max_idle = config.max_idle
        self._growth = GrowthPolicy(config.pool_cap, config.connection_borrow_timeout, config.pool_growth_patience)
        self._slots = 0  # open + opening connections
        self._growing = False  # a connection opened for growth is under way
        self._grown_at = float("-inf")  # when the last one was open: the queue waits ``patience`` again after it
        self._grow_timer: asyncio.TimerHandle | None = None
        self._grow_due = 0.0
        self._expiry: asyncio.TimerHandle | None = None
        self._idle: list[BackendConnection] = []
        self._busy: set[BackendConnection] = set()  # borrowed: the growth rule asks how long they have been held
        self._waiters: collections.deque[_Waiter] = collections.deque()
        self._closed = False

    # -- borrowing -------------------------------------------------------------------------
    async def acquire(self, key: BackendKey, state: dict[str, bytes], db: str | None) -> BackendConnection:
        """A backend of the key's account, with the client's tracked variables and database applied."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        while True:
            backend = await self._candidate(key, state, db)
            try:
                await self._sync(backend, state, db)
            except (ConnectionError, OSError) as exc:
                self.release(backend, reusable=False)
                if not backend.idle_since:  # a fresh connection that fails is the database's problem
                    raise
                # The server closed a pooled connection before the event loop saw it; the proxy's own SET/USE
                # did not run, so another connection can take its place.
                log.info("a pooled backend was closed by the server (%s); using another", exc)
                continue
            except BaseException:
                self.release(backend, reusable=False)
                raise
            break
        backend.borrowed_at = now = loop.time()
        self._busy.add(backend)
        self._stats.borrowed(now - started)
        return backend

    async def _candidate(self, key: BackendKey, state, db) -> BackendConnection:
        """An idle backend, a new one, or the next one given back, as the growth rule allows."""
        backend = self._take_idle(key, state, db)
        if backend is not None:
            return backend
        if self._growth.open_at_once(slots=self._slots, idle=len(self._idle)):
            self._slots += 1
            return await self._open_in_slot(key, db)
        if self._slots >= self._cap and self._idle:
            self._close_backend(self._idle.pop(0))  # an idle one of another kind: its slot passes to us
            return await self._open_in_slot(key, db)
        return await self._wait(key, db)

    def release(self, backend: BackendConnection, reusable: bool = True) -> None:
        """Give a backend back; ``reusable=False`` closes it (unknown or unwanted state)."""
        if backend.borrowed_at:
            now = asyncio.get_running_loop().time()
            held = now - backend.borrowed_at
            backend.borrowed_at = 0.0
            self._busy.discard(backend)
            self._stats.returned(held)
            if reusable:
                self._growth.observe_hold(held, now)
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
        """Hand a backend (or, with None, a freed slot) to the first live waiter."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.future.done():
                if backend is not None:
                    backend.park()  # until the waiter runs and checks it
                waiter.future.set_result(backend if backend is not None else _Grant.FREED)
                return True
        if backend is None:
            self._slots -= 1
        return False

    def _take_idle(self, key: BackendKey, state, db) -> BackendConnection | None:
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

    async def _wait(self, key: BackendKey, db) -> BackendConnection:
        loop = asyncio.get_running_loop()
        waiter = _Waiter(loop.create_future(), loop.time())
        self._waiters.append(waiter)
        self._stats.borrow_waits += 1
        self._schedule_growth()
        self._schedule_expiry()
        try:
            got = await waiter.future
        except BaseException:
            future = waiter.future
            if future.done() and not future.cancelled() and future.exception() is None:
                self._hand_back(future.result())  # handed over just as we were cancelled
            raise
        if got is _Grant.GROWTH:
            try:
                return await self._open_in_slot(key, db)
            finally:
                self._growing = False
                self._grown_at = asyncio.get_running_loop().time()
                self._schedule_growth()
        if got is _Grant.FREED:
            return await self._open_in_slot(key, db)
        if got.key != key or (db is None and got.db is not None) or not got.usable:
            self._close_backend(got)
            return await self._open_in_slot(key, db)
        got.unpark()
        return got

    def _hand_back(self, got: BackendConnection | _Grant) -> None:
        if got is _Grant.GROWTH:
            self._growing = False
            self._give_slot(None)
            self._schedule_growth()
        elif got is _Grant.FREED:
            self._give_slot(None)
        else:
            self.release(got)

    def _schedule_growth(self, at_least: float = 0.0) -> None:
        """Arm the growth timer for when the head of the queue will have waited ``patience`` (counted from the
        last growth at the earliest, so the pool grows by at most one connection per ``patience``)."""
        if self._grow_timer is not None or self._growing or self._closed or self._slots >= self._cap:
            return
        while self._waiters and self._waiters[0].future.done():
            self._waiters.popleft()
        if not self._waiters:
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        self._grow_due = now + max(max(self._waiters[0].since, self._grown_at) + self._growth.patience - now, at_least)
        self._grow_timer = loop.call_at(self._grow_due, self._grow)

    def _grow(self) -> None:
        self._grow_timer = None
        while self._waiters and self._waiters[0].future.done():
            self._waiters.popleft()
        if not self._waiters or self._closed:
            return
        head = self._waiters[0]
        # the time this timer fired late is time the proxy itself did not run (a loaded machine): not demand
        now = min(asyncio.get_running_loop().time(), self._grow_due)
        waited = now - max(head.since, self._grown_at)
        busy_ages = (now - backend.borrowed_at for backend in self._busy)
        if not self._growth.may_grow(slots=self._slots, growing=self._growing, waited=waited, busy_ages=busy_ages):
            self._schedule_growth(at_least=self._growth.patience)  # the database is the queue: look again later
            return
        self._waiters.popleft()
        self._slots += 1
        self._growing = True
        head.future.set_result(_Grant.GROWTH)

    def _schedule_expiry(self) -> None:
        """Arm one timer for the queue's head: every borrow has the same timeout and the queue is first come,
        first served, so the head always expires first (one timer, not one per waiting borrow)."""
        timeout = self._config.connection_borrow_timeout
        if timeout <= 0 or self._expiry is not None or self._closed:
            return
        while self._waiters and self._waiters[0].future.done():
            self._waiters.popleft()
        if self._waiters:
            self._expiry = asyncio.get_running_loop().call_at(self._waiters[0].since + timeout, self._expire_due)

    def _expire_due(self) -> None:
        self._expiry = None
        deadline = asyncio.get_running_loop().time() - self._config.connection_borrow_timeout
        while self._waiters and (self._waiters[0].future.done() or self._waiters[0].since <= deadline):
            future = self._waiters.popleft().future
            if not future.done():
                self._stats.borrow_timeouts += 1
                future.set_exception(BorrowTimeout())
        self._schedule_expiry()

    async def _sync(self, backend: BackendConnection, state, db) -> None:
        if backend.state != state:
            await backend.command(Command.QUERY, b"SET " + b", ".join(backend.sync_items(state)))
            backend.state = state
        if db is not None and backend.db != db:
            await backend.command(Command.INIT_DB, db.encode("utf-8", "surrogateescape"), ResponseKind.SINGLE)
            backend.db = db

    # -- connections -----------------------------------------------------------------------
    async def _open_in_slot(self, key: BackendKey, db) -> BackendConnection:
        """Open a backend in a slot the caller already holds; frees the slot on failure."""
        try:
            backend = await self.open(key, db)
        except BaseException:
            self._give_slot(None)
            raise
        self._stats.backend_opened()
        return backend

    async def open(self, key: BackendKey, db: str | None) -> BackendConnection:
        """Connect and log in with the key's account; runs init_query. Not counted: callers count what they keep."""
        cfg = self._config
        account = self._accounts[key.user]
        try:
            reader, writer = await connect_backend(cfg.backend_host, cfg.backend_port)
        except OSError:
            self._stats.backend_connect_errors += 1
            raise
        try:
            info = await login_backend(
                reader,
                writer,
                user=account.user,
                password=account.password,
                database=db,
                charset=key.charset or None,
                capabilities=key.capabilities,
            )
            backend = BackendConnection(reader, writer, key, db, info)
            for statement in split_statements(cfg.init_query.encode()):
                await backend.command(Command.QUERY, statement)
            await backend.remember_charset_baseline()
        except BaseException:
            self._stats.backend_connect_errors += 1
            writer.close()
            raise
        return backend

    def own_key(self, user: str) -> BackendKey:
        """The key of a connection the proxy opens for itself as ``user`` (charset: the server's default)."""
        return BackendKey(user, int(_OWN_CAPABILITIES), 0)

    def _close_backend(self, backend: BackendConnection) -> None:
        if not backend.closed:
            backend.close()
            self._stats.backend_closed()

    def close(self) -> None:
        self._closed = True
        for timer in (self._grow_timer, self._expiry):
            if timer is not None:
                timer.cancel()
        self._grow_timer = self._expiry = None
        for backend in self._idle:
            self._close_backend(backend)
        self._idle.clear()
        for waiter in self._waiters:
            if not waiter.future.done():
                waiter.future.set_exception(ConnectionError("proxy is shutting down"))
        self._waiters.clear()

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def idle_count(self) -> int:
        return len(self._idle)

    @property
    def growth(self) -> GrowthPolicy:
        return self._growth
