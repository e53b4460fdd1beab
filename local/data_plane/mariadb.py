"""A private MariaDB server for tests, the local data plane and the load experiment.

Throw-away servers (the default) get their own temporary datadir, loopback ports and random passwords, so
several instances (and several helpers on the same machine) never share state. A persistent server
(``MariaDBConfig.instance_dir``) keeps its datadir and runs durably; it is the local DB instance of a deployed
stack (`local.common.db_instance`). Its accounts (`local.data_plane.mariadb_accounts`): the database's master
(``app_user``: rights on its own database only, never SUPER / CONNECTION ADMIN, which would skew the "Too many
connections" (1040) experiment), root over TCP with a random password per start, and root on the unix socket for
this OS user only; nothing is passwordless and the socket lives in a 0700 directory. Monitoring goes through
``--extra-port``, whose connections are counted against ``extra_max_connections`` instead of ``max_connections``.
"""

from __future__ import annotations

import atexit
import getpass
import hashlib
import os
import secrets
import shutil
import signal
import stat
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from local.common.processes import die_with_parent, free_port
from local.data_plane.mariadb_accounts import ADMIN_USER, ROOT_INSTALL_OPTIONS, init_statements
from local.data_plane.mariadb_config import (
    MariaDBConfig,
    MariaDBError,
    find_binary,
    mariadbd_available,
)
from local.data_plane.mariadb_connections import MariaDBConnections

__all__ = ["MariaDBConfig", "MariaDBError", "MariaDBServer", "mariadbd_available"]

_READY_MARKER = "ready for connections"
_PORT_IN_USE_MARKERS = ("Address already in use", "Do you already have another server running")
_MAX_PORT_ATTEMPTS = 3
_MAX_SOCKET_PATH = 100  # sun_path holds 108 bytes

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


def _private_dir(owner: Path, leaf: str) -> Path:
    """A 0700 directory of this OS user named after ``owner``, in the temp dir, or in /tmp when a long ``TMPDIR``
    would still not fit ``leaf`` in ``sun_path``; refused if someone else made it."""
    name = f"mariadb-{os.getuid()}-{hashlib.sha256(str(owner).encode()).hexdigest()[:16]}"
    bases = (Path(tempfile.gettempdir()), Path("/tmp"))
    fitting = [base for base in bases if len(str(base / name / leaf)) <= _MAX_SOCKET_PATH]
    if not fitting:
        raise MariaDBError(f"no socket path fits in {_MAX_SOCKET_PATH} bytes under {bases[0]} or /tmp")
    directory = fitting[0] / name
    try:
        directory.mkdir(mode=0o700)
    except FileExistsError:
        info = directory.lstat()
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or stat.S_IMODE(info.st_mode) != 0o700:
            raise MariaDBError(
                f"socket directory {directory} exists but is not a 0700 directory of this OS user: remove it"
            ) from None
    return directory


class MariaDBServer(MariaDBConnections):
    """Start/stop one private MariaDB; use as a context manager."""

    host = "127.0.0.1"
    admin_user = ADMIN_USER

    def __init__(self, config: MariaDBConfig | None = None) -> None:
        self.config = config or MariaDBConfig()
        self.database = self.config.database
        self.app_user = self.config.app_user
        self.app_password = ""
        self.admin_password = ""
        self.port = 0
        self.extra_port = 0
        self._tmpdir: Path | None = None
        self._socket_dir: Path | None = None  # a private 0700 directory when the datadir's path is too long
        self._process: subprocess.Popen[bytes] | None = None
        self._log_offset = 0
        self._monitor: Any = None
        self._monitor_lock = threading.Lock()

    # -- lifecycle -------------------------------------------------------------------------------
    def __enter__(self) -> MariaDBServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        """True while the server process runs; reaps it (no zombie) once it has exited."""
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def returncode(self) -> int | None:
        return self._process.returncode if self._process else None

    @property
    def datadir(self) -> Path:
        return self._require_tmpdir() / "data"

    @property
    def socket_path(self) -> Path:
        """The unix socket, always inside a 0700 directory: other OS users cannot reach it.

        Next to the datadir when the path fits ``sun_path``; else in ``<tmp>/mariadb-<uid>-<digest of the datadir>``,
        the same directory for the same datadir (a ``kill -9`` leaves nothing new behind), removed by ``stop``.
        """
        path = self._require_tmpdir() / "mariadb.sock"
        if len(str(path)) <= _MAX_SOCKET_PATH:
            return path
        if self._socket_dir is None:
            self._socket_dir = _private_dir(path.parent, path.name)
        return self._socket_dir / "mariadb.sock"

    @property
    def error_log(self) -> Path:
        return self._require_tmpdir() / "error.log"

    def start(self) -> MariaDBServer:
        if self._process is not None:
            raise MariaDBError("server already started")
        mariadbd = find_binary(self.config.mariadbd_path, "mariadbd")
        install_db = find_binary(self.config.install_db_path, "mariadb-install-db")
        if self.config.persistent:
            self._tmpdir = Path(self.config.instance_dir)  # type: ignore[arg-type]
            self._tmpdir.mkdir(parents=True, exist_ok=True)
            os.chmod(self._tmpdir, 0o700)  # the socket, the logs and the datadir: this OS user's only
        else:
            self._tmpdir = Path(tempfile.mkdtemp(prefix="mariadb-", dir=self.config.tmp_parent))
        atexit.register(self.stop)
        try:
            if not (self.datadir / "mysql").is_dir():
                shutil.rmtree(self.datadir, ignore_errors=True)  # an install interrupted before it finished
                self._install(install_db)
            self.app_password = self.config.app_password or secrets.token_urlsafe(18)
            self.admin_password = secrets.token_urlsafe(18)
            self._launch_with_port_retries(mariadbd)
        except BaseException:
            self.stop()
            raise
        return self

    def restart(self) -> MariaDBServer:
        """Start the server again on the same datadir, ports and app password (after it died or was stopped)."""
        self._require_tmpdir()
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(timeout=5)
        self._close_monitor()
        self.admin_password = secrets.token_urlsafe(18)
        self._launch(find_binary(self.config.mariadbd_path, "mariadbd"))
        return self

    def stop(self) -> None:
        """Terminate by pid with a bounded wait; remove a throw-away server's datadir. Idempotent."""
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
        socket_dir, self._socket_dir = self._socket_dir, None
        if socket_dir is not None:
            shutil.rmtree(socket_dir, ignore_errors=True)
        tmpdir, self._tmpdir = self._tmpdir, None
        if tmpdir is None:
            return
        if self.config.persistent:
            (tmpdir / "init.sql").unlink(missing_ok=True)
        else:
            shutil.rmtree(tmpdir, ignore_errors=True)

    def _require_tmpdir(self) -> Path:
        if self._tmpdir is None:
            raise MariaDBError("server not started")
        return self._tmpdir

    def _install(self, install_db: str) -> None:
        datadir = self.datadir
        if self.config.persistent or not self.config.reuse_datadir_template:
            # A persistent instance installs once, into its own directory (no template left in /tmp by a kill).
            partial = datadir.with_name(datadir.name + ".partial")
            shutil.rmtree(partial, ignore_errors=True)
            self._install_db(install_db, partial)
            partial.replace(datadir)
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
        partial = datadir.with_name(datadir.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        shutil.copytree(template, partial, symlinks=True)
        partial.replace(datadir)  # a kill during the copy leaves no half datadir behind

    def _install_db(self, install_db: str, datadir: Path) -> None:
        result = subprocess.run(
            [
                install_db,
                "--no-defaults",
                f"--datadir={datadir}",
                f"--user={getpass.getuser()}",
                *ROOT_INSTALL_OPTIONS,
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
        # Small files start faster (the same for install and every start: the redo log size must match).
        return ["--innodb-log-file-size=16M", "--innodb-buffer-pool-size=64M"]

    def _write_init_file(self) -> None:
        # Runs inside the server before it accepts connections: no bootstrap round trips, and the
        # server only reports "ready" once the accounts exist. One statement per line (init-file rule).
        # Idempotent, so a persistent datadir gets the current secret's password at every start.
        statements = init_statements(self.database, self.app_user, self.app_password, self.admin_password)
        path = self._require_tmpdir() / "init.sql"
        path.unlink(missing_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
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
            f"--datadir={self.datadir}",
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
            # 1: every commit reaches the redo log on disk (a crash loses no committed row); 2: speed only.
            f"--innodb-flush-log-at-trx-commit={1 if cfg.flush_at_commit else 2}",
            "--innodb-doublewrite=ON",
            "--innodb-buffer-pool-load-at-startup=OFF",
            "--innodb-buffer-pool-dump-at-shutdown=OFF",
            *self._innodb_args(),
            *cfg.extra_args,
        ]

    def _launch(self, mariadbd: str) -> None:
        self._write_init_file()
        try:
            self._log_offset = self.error_log.stat().st_size
        except FileNotFoundError:
            self._log_offset = 0
        self._process = subprocess.Popen(
            self._server_args(mariadbd),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=die_with_parent if self.config.die_with_parent else None,
            # A supervised server gets no terminal Ctrl-C: its parent stops the children in order.
            process_group=0 if self.config.die_with_parent else None,
        )
        try:
            self._wait_ready()
        finally:
            (self._require_tmpdir() / "init.sql").unlink(missing_ok=True)  # holds the passwords

    def _wait_ready(self) -> None:
        assert self._process is not None
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
            with self.error_log.open("rb") as handle:
                handle.seek(self._log_offset)
                return handle.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def error_log_tail(self, max_chars: int = 3000) -> str:
        return self._read_error_log()[-max_chars:]
