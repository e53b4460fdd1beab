"""Settings of one private MariaDB server (`local.data_plane.mariadb`), validated at construction."""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, field
from typing import Any

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,31}$")


class MariaDBError(RuntimeError):
    """The private server could not be installed, started or queried."""


def _check_range(name: str, value: Any, low: float, high: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise ValueError(f"MariaDBConfig.{name}={value!r} is out of range; allowed {low}..{high}")


@dataclass(frozen=True)
class MariaDBConfig:
    """Knobs of one private server. ``None`` ports mean "pick a free loopback port".

    ``instance_dir`` set: a persistent instance whose datadir (``<instance_dir>/data``) is created on first start
    and kept by ``stop()``; it always runs durably (every commit flushed to the redo log). Unset: a throw-away
    server in a temp dir, removed by ``stop()``, trading durability for speed unless ``durable``.
    ``app_password`` None: a random one per start (throw-away servers); else that password (the deployed
    secret's), set again at every start.
    """

    max_connections: int = 151
    port: int | None = None
    extra_port: int | None = None
    extra_max_connections: int = 10
    wait_timeout: int = 28800
    database: str = "app"
    app_user: str = "app"
    app_password: str | None = field(default=None, repr=False)
    instance_dir: str | None = None
    durable: bool = False
    die_with_parent: bool = False
    """SIGKILL the server when the thread that started it ends (for supervised servers; see local.common.processes)."""
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
        if self.app_password is not None and (not isinstance(self.app_password, str) or "\n" in self.app_password):
            raise ValueError("MariaDBConfig.app_password must be a single-line string (value not shown)")
        if not all(isinstance(arg, str) and arg.startswith("--") for arg in self.extra_args):
            raise ValueError(f"MariaDBConfig.extra_args={self.extra_args!r} must be a tuple of '--option' strings")

    @property
    def persistent(self) -> bool:
        return self.instance_dir is not None

    @property
    def flush_at_commit(self) -> bool:
        """innodb_flush_log_at_trx_commit=1: a committed row survives a crash or kill -9 of the server."""
        return self.persistent or self.durable


def find_binary(configured: str | None, name: str) -> str:
    if configured:
        return configured
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin:/usr/bin")
    if not found:
        raise MariaDBError(f"{name} not found on PATH or in /usr/sbin; install mariadb-server")
    return found


def mariadbd_available() -> bool:
    """True when the server binaries exist (tests skip cleanly otherwise)."""
    try:
        find_binary(None, "mariadbd")
        find_binary(None, "mariadb-install-db")
    except MariaDBError:
        return False
    return True


def sql_string(value: str) -> str:
    """A single-quoted SQL string literal (backslash and quote escaped), for the init file."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
