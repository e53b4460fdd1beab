"""The access-times table and the one connection a Lambda container keeps to it (through RDS Proxy).

Written for RDS Proxy multiplexing: autocommit, plain (client-side interpolated) statements, no
prepared statements and no SET statements of our own, so the proxy never pins our client connection
to one database connection. The driver itself only sends ``SET NAMES`` and ``SET autocommit`` at login;
RDS Proxy tracks those two variables instead of pinning. A request costs two round trips
(INSERT; one SELECT returning the newest rows with the total count), plus CREATE TABLE once per container.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import mysql.connector
from mysql.connector import errors as mysql_errors

if __package__:
    from .app_iam import IamTokenProvider
    from .app_settings import Settings
else:  # top level of the Lambda zip
    from app_iam import IamTokenProvider  # type: ignore[no-redef]
    from app_settings import Settings  # type: ignore[no-redef]

# The server or proxy closed our connection (idle timeout, KILL, failover): reconnect once and retry.
CONNECTION_LOST_ERRNOS = frozenset(
    {
        2006,  # CR_SERVER_GONE_ERROR
        2013,  # CR_SERVER_LOST
        2055,  # CR_SERVER_LOST_EXTENDED
        1927,  # ER_CONNECTION_KILLED (MariaDB)
        4031,  # ER_CLIENT_INTERACTION_TIMEOUT (MySQL 8 wait_timeout)
    }
)
# The database cannot serve us right now: answer 503 and let the client retry later.
UNAVAILABLE_ERRNOS = CONNECTION_LOST_ERRNOS | {
    1040,  # ER_CON_COUNT_ERROR: Too many connections
    1045,  # ER_ACCESS_DENIED_ERROR (also an expired/invalid IAM token)
    1053,  # ER_SERVER_SHUTDOWN
    1129,  # ER_HOST_IS_BLOCKED
    1203,  # ER_TOO_MANY_USER_CONNECTIONS
    1226,  # ER_USER_LIMIT_REACHED
    2002,  # CR_CONNECTION_ERROR (socket)
    2003,  # CR_CONN_HOST_ERROR: can't connect (refused / timed out)
    2005,  # CR_UNKNOWN_HOST
    2026,  # CR_SSL_CONNECTION_ERROR
    9501,  # RDS Proxy: timed out waiting to borrow a database connection
}

T = TypeVar("T")


class DatabaseUnavailable(Exception):
    """The database refused or dropped us; ``errno`` is the MySQL error number when there is one."""

    def __init__(self, message: str, errno: int | None) -> None:
        super().__init__(message)
        self.errno = errno if errno is not None and errno > 0 else None  # the driver uses -1 for "none"


@dataclass(frozen=True)
class AccessSnapshot:
    """Result of one recorded access: what was inserted, how many rows exist, the newest rows."""

    inserted_at: datetime
    total: int
    newest: list[datetime]


class AccessTimesStore:
    """Owns the container's connection: opened lazily, kept across warm invocations, replaced when lost."""

    def __init__(
        self,
        settings: Settings,
        logger: logging.Logger,
        password_provider: Callable[[], str] | None = None,
    ) -> None:
        self._settings = settings
        self._logger = logger
        self._password_provider = password_provider or self._default_password_provider(settings)
        self._connection: Any = None
        self._cursor: Any = None
        self._table_ready = False
        table = settings.table  # validated as a safe identifier in Settings
        self._create_sql = (
            f"CREATE TABLE IF NOT EXISTS `{table}` ("
            "id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY, "
            "created_at DATETIME(6) NOT NULL, "
            "KEY idx_created_at (created_at)) ENGINE=InnoDB"
        )
        self._insert_sql = f"INSERT INTO `{table}` (created_at) VALUES (%s)"
        self._select_sql = (
            f"SELECT created_at, (SELECT COUNT(*) FROM `{table}`) FROM `{table}` "
            "ORDER BY created_at DESC, id DESC LIMIT %s"
        )

    @staticmethod
    def _default_password_provider(settings: Settings) -> Callable[[], str]:
        if settings.auth == "iam":
            assert settings.region is not None  # guaranteed by Settings validation
            return IamTokenProvider(settings.host, settings.port, settings.user, settings.region)
        password = settings.password or ""
        return lambda: password

    @property
    def connection_id(self) -> int | None:
        """Server thread id of the kept connection (from the handshake, no round trip)."""
        return self._connection.connection_id if self._connection is not None else None

    def record_access(self, now: datetime) -> AccessSnapshot:
        """Insert ``now`` (UTC) and return the newest ``response_limit`` rows plus the total count."""
        naive_utc = now.replace(tzinfo=None)
        self._run(lambda cursor: self._insert(cursor, naive_utc))
        rows = self._run(self._select_newest)
        total = int(rows[0][1]) if rows else 0
        return AccessSnapshot(inserted_at=now, total=total, newest=[row[0] for row in rows])

    def close(self) -> None:
        """Drop the kept connection; the next request opens a new one."""
        connection, self._connection, self._cursor = self._connection, None, None
        if connection is not None:
            _close_quietly(connection)

    # -- internals --------------------------------------------------------------------------------
    def _insert(self, cursor: Any, created_at: datetime) -> None:
        if not self._table_ready:
            cursor.execute(self._create_sql)
            self._table_ready = True
        cursor.execute(self._insert_sql, (created_at,))

    def _select_newest(self, cursor: Any) -> list[tuple[Any, ...]]:
        cursor.execute(self._select_sql, (self._settings.response_limit,))
        return list(cursor.fetchall())

    def _run(self, work: Callable[[Any], T]) -> T:
        """Run ``work`` on the kept connection; on a lost connection reconnect once and retry.

        Each unit is one statement (plus the one-off CREATE TABLE), so a retry repeats at most the
        statement whose reply was lost.
        """
        for attempt in (1, 2):
            connection, cursor = self._ensure_connection()
            try:
                return work(cursor)
            except mysql_errors.Error as exc:
                if exc.errno in UNAVAILABLE_ERRNOS - CONNECTION_LOST_ERRNOS:  # e.g. 9501 from the proxy
                    self.close()
                    raise DatabaseUnavailable(f"query failed: {exc.msg}", exc.errno) from exc
                # Only an unclassified error costs a ping, to tell "SQL error" from "connection gone".
                if exc.errno in CONNECTION_LOST_ERRNOS or not self._still_connected(connection):
                    self.close()
                    if attempt == 1:
                        self._logger.warning(
                            "db connection lost, reconnecting", extra={"errno": exc.errno, "error": exc.msg}
                        )
                        continue
                    raise DatabaseUnavailable(f"connection lost again: {exc.msg}", exc.errno) from exc
                if exc.errno == 1146:  # ER_NO_SUCH_TABLE: dropped behind our back; recreate next time
                    self._table_ready = False
                raise
            except Exception:
                self.close()  # unknown state: never reuse it
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def _still_connected(connection: Any) -> bool:
        try:
            return bool(connection.is_connected())
        except Exception:  # noqa: BLE001
            return False

    def _ensure_connection(self) -> tuple[Any, Any]:
        # The cursor is kept with its connection: the driver's cursor() pings the server (a round
        # trip) every time it is called, and a plain cursor can run any number of statements.
        if self._connection is None:
            connection = self._connect()
            try:
                self._cursor = connection.cursor()
            except mysql_errors.Error as exc:
                _close_quietly(connection)
                raise DatabaseUnavailable(f"connect failed: {exc.msg}", exc.errno) from exc
            self._connection = connection
        return self._connection, self._cursor

    def _connect(self) -> Any:
        s = self._settings
        started = time.perf_counter()
        try:
            params: dict[str, Any] = {
                "host": s.host,
                "port": s.port,
                "user": s.user,
                "password": self._password_provider(),
                "database": s.database,
                "use_pure": True,
                "autocommit": True,
                "connection_timeout": s.connect_timeout,
            }
            if s.auth == "iam":
                params["auth_plugin"] = "mysql_clear_password"  # how RDS Proxy receives IAM tokens
            if s.ssl_ca:
                params.update(ssl_ca=s.ssl_ca, ssl_verify_cert=True, ssl_verify_identity=s.ssl_verify_identity)
            else:
                params["ssl_disabled"] = True
            connection = mysql.connector.connect(**params)
        except mysql_errors.Error as exc:
            raise DatabaseUnavailable(f"connect failed: {exc.msg}", exc.errno) from exc
        except Exception as exc:  # e.g. no AWS credentials to sign the IAM token, unreadable CA file
            raise DatabaseUnavailable(f"connect failed: {type(exc).__name__}", None) from exc
        self._logger.info(
            "db connected",
            extra={
                "connection_id": connection.connection_id,
                "connect_ms": round((time.perf_counter() - started) * 1000, 2),
                "tls": bool(s.ssl_ca),
            },
        )
        return connection


def _close_quietly(connection: Any) -> None:
    with contextlib.suppress(Exception):  # it is broken already; only the socket must go
        connection.close()
