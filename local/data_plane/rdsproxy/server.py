"""Running the proxy: the asyncio server, and helpers that run it in a thread or a process."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import signal
import subprocess
import sys
import threading
import urllib.request
from typing import Any

from modules.project import REPO_ROOT

from .accounts import AccountError, StaticAccount, resolve_accounts
from .config import ProxyConfig
from .handshake import ServerInfo
from .launcher import build_command
from .pool import IDLE_GRACE, BackendPool
from .protocol import ServerError
from .security import ProxyStartError, client_security
from .session import ClientSession, SessionContext
from .stats import Stats, serve_stats

log = logging.getLogger(__name__)


def new_event_loop(choice: str) -> asyncio.AbstractEventLoop:
    """uvloop when asked for or ("auto") when installed; the stock loop otherwise."""
    if choice in ("auto", "uvloop"):
        try:
            import uvloop
        except ImportError:
            if choice == "uvloop":
                raise
        else:
            return uvloop.new_event_loop()
    return asyncio.new_event_loop()


class Proxy:
    """The proxy inside a running event loop (use ProxyServer/ProxyProcess from outside)."""

    def __init__(self, config: ProxyConfig):
        self.config = config
        self.stats = Stats()
        self.accounts: dict[str, StaticAccount] = {}
        self.pool = BackendPool(config, self.stats, self.accounts)
        self.sessions: set[ClientSession] = set()
        self.server_info: ServerInfo | None = None
        self._context: SessionContext | None = None
        self.port = 0
        self.stats_port: int | None = None
        self._server: asyncio.AbstractServer | None = None
        self._stats_server: asyncio.AbstractServer | None = None
        self._sweeper: asyncio.Task | None = None
        self._tasks: set[asyncio.Task] = set()
        self._next_id = 0

    async def start(self) -> None:
        """Set up TLS/IAM, read the accounts' secrets, log in once with each account (closed again), then listen.

        ProxyStartError when the TLS, IAM or account settings cannot be used or an account cannot log in.
        """
        security = await asyncio.to_thread(client_security, self.config)
        try:
            resolved = await asyncio.to_thread(resolve_accounts, self.config.accounts, self.config.secrets_endpoint)
        except AccountError as exc:
            raise ProxyStartError(f"accounts: {exc}") from None
        self.accounts.update(resolved)
        for user in self.accounts:
            self.server_info = await self._check_account(user)
        assert self.server_info is not None
        self._context = SessionContext(
            config=self.config,
            pool=self.pool,
            stats=self.stats,
            server_info=self.server_info,
            accounts=self.accounts,
            security=security,
        )
        cfg = self.config
        self._server = await asyncio.start_server(self._accept, cfg.listen_host, cfg.listen_port, backlog=1024)
        self.port = self._server.sockets[0].getsockname()[1]
        if cfg.stats_port is not None:
            self._stats_server = await serve_stats(cfg.listen_host, cfg.stats_port, self.snapshot, self.reset_stats)
            self.stats_port = self._stats_server.sockets[0].getsockname()[1]
        self._sweeper = asyncio.ensure_future(self._sweep())

    async def _check_account(self, user: str) -> ServerInfo:
        """Log in as ``user`` once, as RDS Proxy checks its secrets: a clear error now rather than at each client."""
        try:
            probe = await self.pool.open(self.pool.own_key(user), None)
        except ServerError as exc:
            raise ProxyStartError(f"accounts: the database refused user {user!r}: {exc}") from None
        probe.close()
        return ServerInfo(probe.info.version, probe.info.charset)

    def snapshot(self) -> dict:
        data = self.stats.snapshot()
        data.update(
            pool_cap=self.config.pool_cap,
            max_idle=self.config.max_idle,
            idle_backends=self.pool.idle_count,
            pool_growth_patience_ms=round(self.pool.growth.patience * 1e3, 3),
            hold_mean_ms=_ms(self.pool.growth.hold_mean),
            hold_floor_ms=_ms(self.pool.growth.hold_floor),
            db_congested=self.pool.growth.congested,
            buffered_reply_bytes=sum(session.buffered_bytes for session in self.sessions),
            accounts=sorted(self.accounts),
            event_loop=_loop_name(),
            require_tls=self.config.tls_required,
            iam_auth=self.config.iam_auth,
        )
        return data

    def reset_stats(self) -> dict:
        """The closing window's snapshot; peaks, means and percentiles start over."""
        closing = self.snapshot()
        self.stats.reset_window()
        return closing

    async def _accept(self, reader, writer) -> None:
        self._next_id += 1
        session = ClientSession(self._context, reader, writer, self._next_id)
        self.sessions.add(session)
        task = asyncio.current_task()
        self._tasks.add(task)
        try:
            await session.run()
        finally:
            self.sessions.discard(session)
            self._tasks.discard(task)

    async def _sweep(self) -> None:
        """Every quarter of a second: close idle backends above max_idle, free backends the database closed under
        a client, drop clients that stopped reading or stayed idle too long."""
        loop = asyncio.get_running_loop()
        idle_timeout = self.config.idle_client_timeout
        while True:
            await asyncio.sleep(IDLE_GRACE / 4)
            self.pool.trim_idle()
            now = loop.time()
            for session in list(self.sessions):
                session.check_held_backend()
                session.check_write_stall(now)
                if not session.busy and session.last_active < now - idle_timeout:
                    session.close_idle()

    async def stop(self) -> None:
        if self._sweeper:
            self._sweeper.cancel()
        for server in (self._server, self._stats_server):
            if server:
                server.close()
        for session in list(self.sessions):
            session.close()
        self.pool.close()
        tasks = list(self._tasks)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=2)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=1)
        self.pool.close()  # anything released while sessions wound down


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1e3, 3)


def _loop_name() -> str:
    return type(asyncio.get_running_loop()).__module__.split(".")[0]


class ProxyServer:
    """Runs a Proxy on its own event loop in a daemon thread (tests, benchmarks).

    ``with ProxyServer(config) as proxy: proxy.port; proxy.stats()``
    """

    def __init__(self, config: ProxyConfig):
        self.config = config
        self._proxy = Proxy(config)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._stop: asyncio.Event | None = None

    @property
    def host(self) -> str:
        return self.config.listen_host

    @property
    def port(self) -> int:
        return self._proxy.port

    @property
    def stats_port(self) -> int | None:
        return self._proxy.stats_port

    def stats(self) -> dict:
        """Counters as a dict (a consistent copy taken on the proxy's loop)."""
        return self._on_loop(self._proxy.snapshot)

    def reset_stats(self) -> dict:
        """The closing window's figures; peaks, means and percentiles start over."""
        return self._on_loop(self._proxy.reset_stats)

    def _on_loop(self, function):
        if self._loop is None or not self._loop.is_running():
            return function()

        async def call():
            return function()

        return asyncio.run_coroutine_threadsafe(call(), self._loop).result(timeout=5)

    def start(self) -> ProxyServer:
        self._thread = threading.Thread(target=self._run, name="rdsproxy", daemon=True)
        self._thread.start()
        if not self._ready.wait(30):
            raise TimeoutError("proxy did not start within 30 s")
        if self._error is not None:
            raise self._error
        return self

    def _run(self) -> None:
        loop = self._loop = new_event_loop(self.config.event_loop)
        try:
            loop.run_until_complete(self._main())
        finally:
            loop.close()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        try:
            await self._proxy.start()
        except BaseException as exc:  # noqa: BLE001 - reported to start()'s caller
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        await self._stop.wait()
        await self._proxy.stop()

    def stop(self) -> None:
        if self._thread is None:
            return
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)
        self._thread = None

    def __enter__(self) -> ProxyServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class ProxyProcess:
    """Runs ``python -m local.data_plane.rdsproxy`` as a child process (keeps the proxy off the caller's GIL).

    Secrets go through a private temp file, never argv. ``stats()`` reads the HTTP endpoint
    (``stats_port`` None in the config means a free port here: the child needs one for stats).
    """

    def __init__(self, config: ProxyConfig, python: str = sys.executable):
        if config.stats_port is None:
            config = dataclasses.replace(config, stats_port=0)
        self.config = config
        self._python = python
        self._process: subprocess.Popen | None = None
        self.port = 0
        self.stats_port: int | None = None

    @property
    def host(self) -> str:
        return self.config.listen_host

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def start(self, timeout: float = 30) -> ProxyProcess:
        command, read_ports = build_command(self.config, self._python)
        self._process = subprocess.Popen(
            command, cwd=REPO_ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, **self._popen_options()
        )
        try:
            self.port, self.stats_port = read_ports(self._process, timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _popen_options(self) -> dict[str, Any]:
        """Extra ``subprocess.Popen`` arguments for the child (subclasses add supervision)."""
        return {}

    def stats(self) -> dict:
        with urllib.request.urlopen(f"http://{self.host}:{self.stats_port}/stats", timeout=5) as r:
            return json.loads(r.read())

    def reset_stats(self) -> dict:
        """``POST /stats/reset``: the closing window's figures; peaks, means and percentiles start over."""
        request = urllib.request.Request(f"http://{self.host}:{self.stats_port}/stats/reset", data=b"", method="POST")
        with urllib.request.urlopen(request, timeout=5) as r:
            return json.loads(r.read())

    def stop(self, timeout: float = 10) -> int | None:
        process, self._process = self._process, None
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        if process.stdout:
            process.stdout.close()
        return process.returncode

    def __enter__(self) -> ProxyProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
