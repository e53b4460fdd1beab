"""A private, throw-away MariaDB server for tests, the local data plane and the load experiment.

Each start gets its own temporary datadir, loopback ports and random passwords, so several instances
(and several helpers on the same machine) never share state. The app account gets only database-level
privileges: MariaDB reserves one connection beyond ``max_connections`` for SUPER / CONNECTION ADMIN
holders, and an app account holding that would skew the "Too many connections" (1040) experiment.
Monitoring goes through ``--extra-port``, whose connections are counted against
``extra_max_connections`` instead of ``max_connections``.
"""

from __future__ import annotations

import atexit
import contextlib
import getpass
import os
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from local.processes import free_port

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,31}$")
_READY_MARKER = "ready for connections"
_PORT_IN_USE_MARKERS = ("Address already in use", "Do you already have another server running")
_MAX_PORT_ATTEMPTS = 3

# mariadb-install-db costs ~0.8 s (several seconds on a busy machine); copying its pristine output
# costs ~0.1 s. Templates hold no accounts or passwords (those come from each start's init file), so
# one template per install-db binary is shared by all servers of this process and removed at exit.
_templates: dict[str, Path] = {}
_templates_lock = threading.Lock()


def _remove_templates() -> None:
    with _templates_lock:
        for path in _templates.values():
            shutil.rmtree(path.parent, ignore_errors=True)
        _templates.clear()


atexit.register(_remove_templates)


class MariaDBError(RuntimeError):
    """The private server could not be installed, started or queried."""


def _check_range(name: str, value: Any, low: float, high: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise ValueError(f"MariaDBConfig.{name}={value!r} is out of range; allowed {low}..{high}")


@dataclass(frozen=True)
class MariaDBConfig:
    """Knobs of one private server. ``None`` ports mean "pick a free loopback port"."""

    max_connections: int = 151
    port: int | None = None
    extra_port: int | None = None
    extra_max_connections: int = 10
    wait_timeout: int = 28800
    database: str = "app"
    app_user: str = "app"
    startup_timeout: float = 30.0
    shutdown_timeout: float = 15.0
    mariadbd_path: str | None = None
    install_db_path: str | None = None
    tmp_parent: str | None = None
    reuse_datadir_template: bool = True
    extra_args: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        # MariaDB silently raises max_connections below 10 to 10; reject instead of surprising.
        _check_range("max_connections", self.max_connections, 10, 100_000)
        _check_range("extra_max_connections", self.extra_max_connections, 1, 100_000)
        _check_range("wait_timeout", self.wait_timeout, 1, 31_536_000)
        _check_range("startup_timeout", self.startup_timeout, 0.1, 600)
        _check_range("shutdown_timeout", self.shutdown_timeout, 0.1, 600)
        for name in ("port", "extra_port"):
            value = getattr(self, name)
            if value is not None:
                _check_range(name, value, 1, 65_535)
        if self.port is not None and self.port == self.extra_port:
            raise ValueError(f"MariaDBConfig.extra_port={self.extra_port!r} must differ from port={self.port!r}")
        for name in ("database", "app_user"):
            value = getattr(self, name)
            if not isinstance(value, str) or not _IDENTIFIER.match(value):
                raise ValueError(
                    f"MariaDBConfig.{name}={value!r} is not a safe identifier; allowed [A-Za-z_][A-Za-z0-9_]{{0,31}}"
                )
        if self.app_user == "root":
            raise ValueError("MariaDBConfig.app_user='root' is not allowed; the app account must be unprivileged")
        if not all(isinstance(arg, str) and arg.startswith("--") for arg in self.extra_args):
            raise ValueError(f"MariaDBConfig.extra_args={self.extra_args!r} must be a tuple of '--option' strings")


def _find_binary(configured: str | None, name: str) -> str:
    if configured:
        return configured
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin:/usr/bin")
    if not found:
        raise MariaDBError(f"{name} not found on PATH or in /usr/sbin; install mariadb-server")
    return found


def mariadbd_available() -> bool:
    """True when the server binaries exist (tests skip cleanly otherwise)."""
    try:
        _find_binary(None, "mariadbd")
        _find_binary(None, "mariadb-install-db")
    except MariaDBError:
        return False
    return True


class MariaDBServer:
    """Start/stop one private MariaDB; use as a context manager."""

    host = "127.0.0.1"
    admin_user = "root"

    def __init__(self, config: MariaDBConfig | None = None) -> None:
        self.config = config or MariaDBConfig()
        self.database = self.config.database
        self.app_user = self.config.app_user
        self.app_password = ""
        self.admin_password = ""
        self.port = 0
        self.extra_port = 0
        self._tmpdir: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._monitor: Any = None
        self._monitor_lock = threading.Lock()

    # -- lifecycle -------------------------------------------------------------------------------
    def __enter__(self) -> MariaDBServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def socket_path(self) -> Path:
        return self._require_tmpdir() / "mariadb.sock"

    @property
    def error_log(self) -> Path:
        return self._require_tmpdir() / "error.log"

    def start(self) -> MariaDBServer:
        if self._process is not None:
            raise MariaDBError("server already started")
        mariadbd = _find_binary(self.config.mariadbd_path, "mariadbd")
        install_db = _find_binary(self.config.install_db_path, "mariadb-install-db")
        self._tmpdir = Path(tempfile.mkdtemp(prefix="mariadb-", dir=self.config.tmp_parent))
        atexit.register(self.stop)
        try:
            self._install(install_db)
            self.app_password = secrets.token_urlsafe(18)
            self.admin_password = secrets.token_urlsafe(18)
            self._write_init_file()
            self._launch_with_port_retries(mariadbd)
            (self._tmpdir / "init.sql").unlink(missing_ok=True)  # holds the passwords
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Terminate by pid with a bounded wait, then remove the datadir. Idempotent."""
        atexit.unregister(self.stop)
        self._close_monitor()
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=self.config.shutdown_timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        tmpdir, self._tmpdir = self._tmpdir, None
        if tmpdir is not None:
            shutil.rmtree(tmpdir, ignore_errors=True)

    def _require_tmpdir(self) -> Path:
        if self._tmpdir is None:
            raise MariaDBError("server not started")
        return self._tmpdir

    def _install(self, install_db: str) -> None:
        datadir = self._require_tmpdir() / "data"
        if not self.config.reuse_datadir_template:
            self._install_db(install_db, datadir)
            return
        with _templates_lock:
            template = _templates.get(install_db)
            if template is None:
                template = Path(tempfile.mkdtemp(prefix="mariadb-template-")) / "data"
                try:
                    self._install_db(install_db, template)
                except BaseException:
                    shutil.rmtree(template.parent, ignore_errors=True)
                    raise
                _templates[install_db] = template
        shutil.copytree(template, datadir, symlinks=True)

    def _install_db(self, install_db: str, datadir: Path) -> None:
        result = subprocess.run(
            [
                install_db,
                "--no-defaults",
                f"--datadir={datadir}",
                f"--user={getpass.getuser()}",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
                "--skip-name-resolve",
                # Private temp dir: concurrent installs sharing /tmp collide on '#sql-temptable-*' files.
                f"--tmpdir={datadir.parent}",
                *self._innodb_args(),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=max(60.0, self.config.startup_timeout),
            check=False,
        )
        if result.returncode != 0:
            tail = result.stdout.decode(errors="replace")[-2000:]
            raise MariaDBError(f"mariadb-install-db failed (exit {result.returncode}):\n{tail}")

    @staticmethod
    def _innodb_args() -> list[str]:
        # Small files start faster; durability is irrelevant for a throw-away test server.
        return ["--innodb-log-file-size=16M", "--innodb-buffer-pool-size=64M"]

    def _write_init_file(self) -> None:
        # Runs inside the server before it accepts connections: no bootstrap round trips, and the
        # server only reports "ready" once the accounts exist. One statement per line (init-file rule).
        db, user = self.database, self.app_user
        statements = [
            f"CREATE DATABASE IF NOT EXISTS `{db}`;",
            f"CREATE USER '{user}'@'%' IDENTIFIED BY '{self.app_password}';",
            f"GRANT ALL PRIVILEGES ON `{db}`.* TO '{user}'@'%';",
            f"ALTER USER 'root'@'127.0.0.1' IDENTIFIED BY '{self.admin_password}';",
        ]
        path = self._require_tmpdir() / "init.sql"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write("\n".join(statements) + "\n")

    def _launch_with_port_retries(self, mariadbd: str) -> None:
        auto_ports = self.config.port is None or self.config.extra_port is None
        for attempt in range(1, _MAX_PORT_ATTEMPTS + 1):
            self.port = self.config.port or free_port()
            self.extra_port = self.config.extra_port or free_port()
            while self.extra_port == self.port:
                self.extra_port = free_port()
            try:
                self._launch(mariadbd)
                return
            except MariaDBError as exc:
                port_clash = any(marker in str(exc) for marker in _PORT_IN_USE_MARKERS)
                if not (auto_ports and port_clash and attempt < _MAX_PORT_ATTEMPTS):
                    raise

    def _server_args(self, mariadbd: str) -> list[str]:
        tmpdir = self._require_tmpdir()
        cfg = self.config
        return [
            mariadbd,
            "--no-defaults",
            f"--user={getpass.getuser()}",
            f"--datadir={tmpdir / 'data'}",
            f"--socket={self.socket_path}",
            f"--pid-file={tmpdir / 'mariadb.pid'}",
            f"--tmpdir={tmpdir}",
            f"--log-error={self.error_log}",
            f"--init-file={tmpdir / 'init.sql'}",
            "--bind-address=127.0.0.1",
            f"--port={self.port}",
            f"--extra-port={self.extra_port}",
            f"--extra-max-connections={cfg.extra_max_connections}",
            f"--max-connections={cfg.max_connections}",
            f"--wait-timeout={cfg.wait_timeout}",
            "--skip-name-resolve",
            "--max-connect-errors=1000000",  # refused bursts must never block 127.0.0.1
            "--skip-log-bin",
            "--performance-schema=OFF",
            "--innodb-flush-log-at-trx-commit=2",
            "--innodb-buffer-pool-load-at-startup=OFF",
            "--innodb-buffer-pool-dump-at-shutdown=OFF",
            *self._innodb_args(),
            *cfg.extra_args,
        ]

    def _launch(self, mariadbd: str) -> None:
        self.error_log.unlink(missing_ok=True)
        self._process = subprocess.Popen(
            self._server_args(mariadbd),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + self.config.startup_timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                process, self._process = self._process, None
                raise MariaDBError(
                    f"mariadbd exited with {process.returncode} during startup:\n{self.error_log_tail()}"
                )
            if _READY_MARKER in self._read_error_log():
                return
            time.sleep(0.02)
        self._terminate_failed_start()
        raise MariaDBError(
            f"mariadbd not ready within startup_timeout={self.config.startup_timeout}s:\n{self.error_log_tail()}"
        )

    def _terminate_failed_start(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(timeout=5)

    def _read_error_log(self) -> str:
        try:
            return self.error_log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def error_log_tail(self, max_chars: int = 3000) -> str:
        return self._read_error_log()[-max_chars:]

    # -- connections ------------------------------------------------------------------------------
    def app_connect(self, **overrides: Any) -> Any:
        """A new pure-Python connection as the unprivileged app account (counts against max_connections)."""
        import mysql.connector  # noqa: PLC0415 - keep `import local.data_plane.mariadb` cheap

        params: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "user": self.app_user,
            "password": self.app_password,
            "database": self.database,
            "use_pure": True,
            "autocommit": True,
            "connection_timeout": 5,
        }
        params.update(overrides)
        return mysql.connector.connect(**params)

    def admin_connect(self, **overrides: Any) -> Any:
        """A new root connection over the extra port, i.e. outside max_connections."""
        import mysql.connector  # noqa: PLC0415

        if not self.running:
            raise MariaDBError("server not running")
        params: dict[str, Any] = {
            "host": self.host,
            "port": self.extra_port,
            "user": self.admin_user,
            "password": self.admin_password,
            "use_pure": True,
            "autocommit": True,
            "connection_timeout": 5,
        }
        params.update(overrides)
        return mysql.connector.connect(**params)

    def _query_as_monitor(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        # One long-lived monitor connection: sampling during load must not open a connection per sample.
        with self._monitor_lock:
            if self._monitor is None or not self._monitor.is_connected():
                self._monitor = self.admin_connect()
            cursor = self._monitor.cursor()
            try:
                cursor.execute(sql, params)
                return list(cursor.fetchall()) if cursor.with_rows else []
            finally:
                cursor.close()

    def _close_monitor(self) -> None:
        with self._monitor_lock:
            monitor, self._monitor = self._monitor, None
        if monitor is not None:
            with contextlib.suppress(Exception):  # the server may already be gone
                monitor.close()

    def threads_connected(self) -> int:
        """Connections counted against max_connections (MariaDB leaves extra-port ones, like the monitor, out)."""
        rows = self._query_as_monitor("SHOW GLOBAL STATUS LIKE 'Threads_connected'")
        return int(rows[0][1])

    def wait_for_connections(self, at_most: int = 0, timeout: float = 5.0) -> int:
        """Wait (bounded) until at most ``at_most`` connections count against max_connections.

        A client's close() returns before the server has released the slot; tests that fill the
        server to max_connections wait here first.
        """
        deadline = time.monotonic() + timeout
        while (current := self.threads_connected()) > at_most:
            if time.monotonic() > deadline:
                raise MariaDBError(f"still {current} connections after {timeout}s (wanted <= {at_most})")
            time.sleep(0.01)
        return current

    def connection_ids(self, user: str) -> list[int]:
        """Server-side connection ids of ``user``'s sessions, sorted."""
        rows = self._query_as_monitor(
            "SELECT ID FROM information_schema.PROCESSLIST WHERE USER = %s AND ID <> CONNECTION_ID() ORDER BY ID",
            (user,),
        )
        return [int(row[0]) for row in rows]

    def kill_connections(self, user: str, timeout: float = 5.0) -> int:
        """Kill every connection of ``user`` and wait (bounded) until they are gone; returns how many."""
        ids = self.connection_ids(user)
        for connection_id in ids:
            try:
                self._query_as_monitor(f"KILL CONNECTION {int(connection_id)}")
            except Exception as exc:  # noqa: BLE001 - it may have ended on its own meanwhile
                if getattr(exc, "errno", None) != 1094:  # ER_NO_SUCH_THREAD
                    raise
        deadline = time.monotonic() + timeout
        while set(ids) & set(self.connection_ids(user)):
            if time.monotonic() > deadline:
                raise MariaDBError(f"connections of {user!r} still present {timeout}s after KILL")
            time.sleep(0.01)
        return len(ids)
