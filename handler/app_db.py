"""Opening MySQL connections within an invocation's time budget, and classifying the driver's errors.

Shared by the request path (``app_store``) and the migrator (``migrator``). Every socket wait is bounded by the
invocation's deadline: the connect by ``min(DB_CONNECT_TIMEOUT, time left)``, and each later read or write by the
driver's ``read_timeout`` / ``write_timeout`` (whole seconds, re-applied before each statement), so a hung database
turns into an answer from the handler before the function timeout instead of an error from the Lambda runtime.
A first attempt may keep half of what is left for its retry: a reply that never came can then still be asked for
again within the same invocation.
"""

from __future__ import annotations

import contextlib
import math
import select
import ssl
import time
from collections.abc import Callable
from typing import Any

import mysql.connector
from mysql.connector import errors as mysql_errors

from handler.app_settings import Settings

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
# The transaction was rolled back by the server; running it again is safe.
TRANSACTION_RETRY_ERRNOS = frozenset(
    {
        1205,  # ER_LOCK_WAIT_TIMEOUT
        1213,  # ER_LOCK_DEADLOCK
    }
)
TIMEOUT_ERRNO = 3024  # the driver's read/write timeout (it closes the connection itself)
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
    TIMEOUT_ERRNO,
    9501,  # RDS Proxy: timed out waiting to borrow a database connection
}


class DatabaseUnavailable(Exception):
    """The database refused or dropped us; ``errno`` is the MySQL error number when there is one."""

    def __init__(self, message: str, errno: int | None) -> None:
        super().__init__(message)
        self.errno = errno if errno is not None and errno > 0 else None  # the driver uses -1 for "none"


class Deadline:
    """The point (monotonic clock) by which the handler must have its answer, margin already subtracted.

    ``None`` as ``at`` means no deadline (no Lambda context, e.g. a script): socket waits are then unbounded
    after the connect, as the driver does by default.
    """

    def __init__(self, at: float | None) -> None:
        self.at = at

    @classmethod
    def from_context(cls, context: Any, margin_ms: int) -> Deadline:
        remaining = getattr(context, "get_remaining_time_in_millis", None)
        if not callable(remaining):
            return cls(None)
        return cls(time.monotonic() + (float(remaining()) - margin_ms) / 1000.0)

    @classmethod
    def none(cls) -> Deadline:
        return cls(None)

    def seconds_left(self) -> float | None:
        return None if self.at is None else self.at - time.monotonic()

    def socket_timeout(self, keep_for_retry: bool = False) -> int | None:
        """Whole seconds a single read or write may wait (the driver accepts integers only).

        Rounded down so one wait never passes the deadline; with ``keep_for_retry`` at most half of what is left
        (but at least a second), so a retry still has time. Raises when less than a second is left, because the
        driver reads 0 as "wait forever".
        """
        left = self.seconds_left()
        if left is None:
            return None
        if left < 1.0:
            raise DatabaseUnavailable(f"invocation deadline: {max(left, 0.0):.3f}s left for the database", None)
        usable = left / 2 if keep_for_retry else left
        return max(1, int(math.floor(usable)))

    def connect_timeout(self, configured: float) -> float:
        left = self.seconds_left()
        if left is None:
            return configured
        if left <= 0.05:
            raise DatabaseUnavailable("invocation deadline: no time left to connect", None)
        return min(configured, left)


def apply_deadline(connection: Any, deadline: Deadline, keep_for_retry: bool = False) -> None:
    """Bound every following socket read/write of ``connection`` by the time left (no round trip)."""
    timeout = deadline.socket_timeout(keep_for_retry)
    connection.read_timeout = timeout
    connection.write_timeout = timeout


def connect(settings: Settings, password_provider: Callable[[], str], deadline: Deadline) -> Any:
    """A new autocommit connection in the handler's fixed shape (pure Python, TLS and IAM when configured)."""
    s = settings
    try:
        params: dict[str, Any] = {
            "host": s.host,
            "port": s.port,
            "user": s.user,
            "password": password_provider(),
            "database": s.database,
            "use_pure": True,
            "autocommit": True,
            "connection_timeout": deadline.connect_timeout(s.connect_timeout),
        }
        timeout = deadline.socket_timeout() if deadline.at is not None else None
        if timeout is not None:
            params.update(read_timeout=timeout, write_timeout=timeout)
        if s.auth == "iam":
            params["auth_plugin"] = "mysql_clear_password"  # how RDS Proxy receives IAM tokens
        if s.ssl_ca:
            params.update(ssl_ca=s.ssl_ca, ssl_verify_cert=True, ssl_verify_identity=s.ssl_verify_identity)
        else:
            params["ssl_disabled"] = True
        return mysql.connector.connect(**params)
    except DatabaseUnavailable:
        raise
    except mysql_errors.Error as exc:
        raise DatabaseUnavailable(f"connect failed: {exc.msg}", exc.errno) from exc
    except Exception as exc:  # e.g. no AWS credentials to sign the IAM token, unreadable CA file
        raise DatabaseUnavailable(f"connect failed: {type(exc).__name__}", None) from exc


def closed_by_peer(connection: Any) -> bool:
    """Whether an idle connection was closed by the server or proxy (an idle timeout, KILL, a restart), seen
    without a round trip: a connection nobody asked anything is readable only when it has ended or carries an
    unasked notice (MySQL 8 sends error 4031 before it closes an idle client). Checked before a statement is sent,
    so such a connection is replaced while nothing has been sent yet. Reads the pinned driver's socket
    (``_socket.sock``); without one it says False and the statement's own error is classified as before."""
    sock = getattr(getattr(connection, "_socket", None), "sock", None)
    if sock is None:
        return False
    try:
        if isinstance(sock, ssl.SSLSocket) and sock.pending():
            return True
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):  # closed or unusable socket
        return True
    return bool(readable)


def still_connected(connection: Any) -> bool:
    try:
        return bool(connection.is_connected())
    except Exception:  # noqa: BLE001
        return False


def close_quietly(connection: Any) -> None:
    with contextlib.suppress(Exception):  # it may be broken already; only the socket must go
        connection.close()
