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

from .config import ProxyConfig
from .handshake import ServerInfo
from .launcher import build_command
from .pool import IDLE_GRACE, BackendPool
from .security import client_security, with_backend_secret
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
        self.pool = BackendPool(config, self.stats)
        self.sessions: set[ClientSession] = set()
        self.server_info: ServerInfo | None = None
        self._context: SessionContext | None = None
        self.port = 0
        self.stats_port: int | None = None
        self._server: asyncio.AbstractServer | None = None
        self._stats_server: asyncio.AbstractServer | None = None
        self._sweeper: asyncio.Task | None = None
        self._trimmer: asyncio.Task | None = None
        self._tasks: set[asyncio.Task] = set()
        self._next_id = 0

    async def start(self) -> None:
        """Set up TLS/IAM and the backend credentials, check them (one connection, closed again), then listen.

        ProxyStartError when the TLS, IAM or secret settings cannot be used.
        """
        security = await asyncio.to_thread(client_security, self.config)
        if self.config.backend_secret_arn:
            self.config = await asyncio.to_thread(with_backend_secret, self.config)
            self.pool = BackendPool(self.config, self.stats)  # nothing opened yet: start over with the credentials
        probe = await self.pool.open(None, None)
        self.server_info = ServerInfo(probe.info.version, probe.info.charset)
        probe.close()
        self.stats.backend_connections -= 1
        self._context = SessionContext(
            config=self.config, pool=self.pool, stats=self.stats, server_info=self.server_info, security=security
        )
        cfg = self.config
        self._server = await asyncio.start_server(self._accept, cfg.listen_host, cfg.listen_port, backlog=1024)
        self.port = self._server.sockets[0].getsockname()[1]
        if cfg.stats_port is not None:
            self._stats_server = await serve_stats(cfg.listen_host, cfg.stats_port, self.snapshot)
            self.stats_port = self._stats_server.sockets[0].getsockname()[1]
        self._sweeper = asyncio.ensure_future(self._sweep_idle_clients())
        self._trimmer = asyncio.ensure_future(self._trim_idle_backends())

    def snapshot(self) -> dict:
        data = self.stats.snapshot()
        data.update(
            pool_cap=self.config.pool_cap,
            max_idle=self.config.max_idle,
            idle_backends=self.pool.idle_count,
            event_loop=_loop_name(),
            require_tls=self.config.tls_required,
            iam_auth=self.config.iam_auth,
        )
        return data

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

    async def _sweep_idle_clients(self) -> None:
        timeout = self.config.idle_client_timeout
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(min(timeout / 4, 5.0))
            deadline = loop.time() - timeout
            for session in list(self.sessions):
                if not session.busy and session.last_active < deadline:
                    session.close_idle()

    async def _trim_idle_backends(self) -> None:
        """Close idle backends above max_idle, and free backends the database closed under a client."""
        while True:
            await asyncio.sleep(IDLE_GRACE / 4)
            self.pool.trim_idle()
            for session in list(self.sessions):
                session.check_held_backend()

    async def stop(self) -> None:
        for task in (self._sweeper, self._trimmer):
            if task:
                task.cancel()
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
        if self._loop is None or not self._loop.is_running():
            return self._proxy.stats.snapshot()
        future = asyncio.run_coroutine_threadsafe(self._snapshot(), self._loop)
        return future.result(timeout=5)

    async def _snapshot(self) -> dict:
        return self._proxy.snapshot()

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
