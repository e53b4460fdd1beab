"""The access-times table and the one connection a Lambda container keeps to it (through RDS Proxy).

One request is one transaction on the kept autocommit connection, in two round trips:

    CALL <t>_record(request_id, created_at, N)    -- INSERT (request_id UNIQUE), +1 on a counter shard,
                                                  -- SELECT (row, total), SELECT newest N; leaves the trx open
    COMMIT

Why this shape:
- Constant cost per request. ``SELECT COUNT(*)`` scans an index, so it grows with the table (66 ms at 1M rows);
  the total is instead kept as a counter in the same transaction as the row, so it stays exact, and read as a
  SUM over 32 rows. The newest rows come from a backward scan of ``idx_created_at`` (whose entries end with the
  primary key), which stops after N entries at any table size.
- No hot row. A single counter row would serialize every writer on its row lock from the UPDATE until COMMIT.
  The shard is the new row's id modulo 32, so concurrent requests (consecutive ids) update different rows. The
  UPDATE is the only locking step after the INSERT (whose insert-intention locks do not conflict) and the reads
  are consistent reads, so there is no lock cycle.
- Few round trips. The statements run inside the database (``app_schema`` creates the procedure), so a request
  costs the proxy, the database and this container two statements instead of five (START TRANSACTION, INSERT,
  UPDATE, SELECT, COMMIT), with the same transaction and the same failure semantics.
- Exactly one row per request. The request id (API Gateway's ``requestContext.requestId``, else the Lambda
  ``aws_request_id``) is stored under a UNIQUE key. If the connection drops after COMMIT but before its OK
  arrives, the retry's INSERT meets the duplicate key (or waits for the first transaction's outcome, then
  does): the procedure then bumps nothing and answers with the row already stored.
- A 503 means nothing was stored: the COMMIT is sent last, after the read. A dropped connection before COMMIT
  makes the server roll the transaction back.
- RDS Proxy multiplexing: autocommit, plain (client-side interpolated) statements, no prepared statements, no
  SET of our own, no advisory locks or temporary tables on this connection (schema migrations use their own,
  see ``app_schema``). Calling a stored procedure does not pin; RDS Proxy keeps the database connection only
  while the transaction is open, from the CALL to the COMMIT.
- Cheap decoding: a raw cursor returns the columns as bytes, converted here (``datetime.fromisoformat``) instead
  of by the driver's per-value converters, which took about a fifth of the handler's CPU per request.
- Deadline: every socket wait is bounded by the invocation's time left (``app_db.Deadline``).
"""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from mysql.connector import errors as mysql_errors

if __package__:
    from .app_db import (
        CONNECTION_LOST_ERRNOS,
        TRANSACTION_RETRY_ERRNOS,
        UNAVAILABLE_ERRNOS,
        DatabaseUnavailable,
        Deadline,
        apply_deadline,
        close_quietly,
        connect,
        still_connected,
    )
    from .app_iam import password_provider_for
    from .app_schema import LATEST_VERSION, TableNames, current_version, migrate_and_close
    from .app_settings import Settings
else:  # top level of the Lambda zip
    from app_db import (  # type: ignore[no-redef]
        CONNECTION_LOST_ERRNOS,
        TRANSACTION_RETRY_ERRNOS,
        UNAVAILABLE_ERRNOS,
        DatabaseUnavailable,
        Deadline,
        apply_deadline,
        close_quietly,
        connect,
        still_connected,
    )
    from app_iam import password_provider_for  # type: ignore[no-redef]
    from app_schema import LATEST_VERSION, TableNames, current_version, migrate_and_close  # type: ignore[no-redef]
    from app_settings import Settings  # type: ignore[no-redef]

__all__ = ["AccessSnapshot", "AccessTimesStore", "DatabaseUnavailable", "Deadline", "OutcomeUnknown", "request_key"]


class OutcomeUnknown(DatabaseUnavailable):
    """The connection failed after COMMIT was sent and no retry could tell whether it was applied.

    Answered with 502, never 503: a 503 promises that nothing was stored.
    """


@dataclass
class _Progress:
    """How far a request got; once a COMMIT has been sent, a failure no longer means "nothing stored"."""

    commit_sent: bool = False


_NO_SUCH_TABLE = 1146
_NO_SUCH_PROCEDURE = 1305
_KEY_MAX = 64
_TOO_MANY_CONNECTIONS = 1040
_SLOT_WAITS = (0.01, 0.02, 0.05, 0.1, 0.2, None)  # about 0.4 s in all


def request_key(request_id: str | None) -> str:
    """The stored form of a request id: as is when short printable ASCII, else its SHA-256 (64 hex digits)."""
    if not request_id:
        return uuid.uuid4().hex  # no id at all: still one row per call, retries within the call included
    if len(request_id) <= _KEY_MAX and request_id.isascii() and request_id.isprintable():
        return request_id
    return hashlib.sha256(request_id.encode("utf-8", "surrogatepass")).hexdigest()


def _datetime(text: bytes | bytearray) -> datetime:
    """A DATETIME(6) as the text protocol sends it (``2026-11-24 10:00:00.123456``), naive UTC."""
    return datetime.fromisoformat(text.decode("ascii"))


@dataclass(frozen=True)
class AccessSnapshot:
    """Result of one recorded access: when its row was stored, how many rows exist, the newest rows."""

    inserted_at: datetime
    total: int
    newest: list[datetime]
    replayed: bool = False
    """True when the row had been stored by an earlier attempt with the same request id."""


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
        self._password_provider = password_provider or password_provider_for(settings)
        self._connection: Any = None
        self._cursor: Any = None
        self._schema_ready = False
        self.names = TableNames(settings.database, settings.table)  # validated as safe identifiers in Settings
        self._call_sql = f"CALL {self.names.record_procedure}(%s, %s, %s)"

    @property
    def connection_id(self) -> int | None:
        """Server thread id of the kept connection (from the handshake, no round trip)."""
        return self._connection.connection_id if self._connection is not None else None

    def record_access(
        self, now: datetime, request_id: str | None = None, deadline: Deadline | None = None
    ) -> AccessSnapshot:
        """Store ``now`` (UTC) once for ``request_id``; return the newest ``response_limit`` rows and the total."""
        deadline = deadline or Deadline.none()
        progress = _Progress()
        try:
            return self._record(now.replace(tzinfo=None), request_key(request_id), deadline, progress)
        except DatabaseUnavailable as exc:
            if progress.commit_sent:  # the COMMIT may have been applied: saying "nothing stored" could be false
                raise OutcomeUnknown(f"commit outcome unknown: {exc}", exc.errno) from exc
            raise

    def _record(self, naive_utc: datetime, key: str, deadline: Deadline, progress: _Progress) -> AccessSnapshot:
        for attempt in (1, 2):
            connection, cursor = self._ensure_connection(deadline)
            try:
                if not self._schema_ready:
                    connection, cursor = self._ensure_schema(connection, cursor, deadline)
                return self._transaction(connection, cursor, naive_utc, key, deadline, progress)
            except DatabaseUnavailable:
                self.close()
                raise
            except mysql_errors.Error as exc:
                if exc.errno in UNAVAILABLE_ERRNOS - CONNECTION_LOST_ERRNOS:  # e.g. 9501, a read timeout
                    self.close()
                    raise DatabaseUnavailable(f"query failed: {exc.msg}", exc.errno) from exc
                # Only an unclassified error costs a ping, to tell "SQL error" from "connection gone".
                if exc.errno in CONNECTION_LOST_ERRNOS or not still_connected(connection):
                    self.close()  # the server rolls back whatever was not committed
                    if attempt == 1:
                        self._logger.warning(
                            "db connection lost, reconnecting", extra={"errno": exc.errno, "error": exc.msg}
                        )
                        continue
                    raise DatabaseUnavailable(f"connection lost again: {exc.msg}", exc.errno) from exc
                self._rollback(connection)  # never leave the kept connection inside a transaction
                if exc.errno in TRANSACTION_RETRY_ERRNOS and attempt == 1:
                    self._logger.warning("transaction rolled back, retrying", extra={"errno": exc.errno})
                    continue
                if exc.errno in (_NO_SUCH_TABLE, _NO_SUCH_PROCEDURE):  # dropped behind our back; migrate next time
                    self._schema_ready = False
                raise
            except Exception:
                self.close()  # unknown state: never reuse it
                raise
        raise DatabaseUnavailable("transaction rolled back twice", None)

    def close(self) -> None:
        """Drop the kept connection; the next request opens a new one."""
        connection, self._connection, self._cursor = self._connection, None, None
        if connection is not None:
            close_quietly(connection)

    # -- internals --------------------------------------------------------------------------------
    def _transaction(
        self, connection: Any, cursor: Any, created_at: datetime, key: str, deadline: Deadline, progress: _Progress
    ) -> AccessSnapshot:
        apply_deadline(connection, deadline)  # each wait gets only what is left of the budget
        cursor.execute(self._call_sql, (key, created_at, self._settings.response_limit))
        ((stored_at, replayed, total),) = cursor.fetchall()
        cursor.nextset()
        newest = [_datetime(value) for (value,) in cursor.fetchall()]
        while cursor.nextset():  # the CALL's own final status
            pass
        apply_deadline(connection, deadline)  # raises before sending when no time is left: then nothing was sent
        progress.commit_sent = True
        cursor.execute("COMMIT")
        return AccessSnapshot(
            inserted_at=_datetime(stored_at).replace(tzinfo=UTC),
            total=int(total),
            newest=newest,
            replayed=replayed == b"1",
        )

    def _ensure_schema(self, connection: Any, cursor: Any, deadline: Deadline) -> tuple[Any, Any]:
        """Check the schema version once per container; migrate on this connection, then replace it."""
        found = current_version(cursor, self.names)
        if found < LATEST_VERSION:
            started = time.perf_counter()
            self._connection, self._cursor = None, None  # handed over: it will hold an advisory lock
            applied = migrate_and_close(connection, self.names, deadline)
            self._logger.info(
                "schema checked",
                extra={
                    "found_version": found,
                    "applied_versions": applied,
                    "migrate_ms": round((time.perf_counter() - started) * 1000, 2),
                },
            )
            connection, cursor = self._reconnect_after_release(deadline)
        self._schema_ready = True
        return connection, cursor

    def _reconnect_after_release(self, deadline: Deadline) -> tuple[Any, Any]:
        # The server frees a closed connection's slot a moment after close() returns; on a full server
        # (direct connections) wait for our own slot briefly instead of failing the request.
        for pause in _SLOT_WAITS:
            try:
                return self._ensure_connection(deadline)
            except DatabaseUnavailable as exc:
                left = deadline.seconds_left()
                if exc.errno != _TOO_MANY_CONNECTIONS or pause is None or (left is not None and left < 1.0 + pause):
                    raise
                time.sleep(pause)
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def _rollback(connection: Any) -> None:
        try:
            connection.rollback()
        except Exception:  # noqa: BLE001 - the caller raises the original error
            pass

    def _ensure_connection(self, deadline: Deadline) -> tuple[Any, Any]:
        # The cursor is kept with its connection: the driver's cursor() pings the server (a round
        # trip) every time it is called, and a plain cursor can run any number of statements.
        if self._connection is None:
            started = time.perf_counter()
            connection = connect(self._settings, self._password_provider, deadline)
            try:
                self._cursor = connection.cursor(raw=True)
            except mysql_errors.Error as exc:
                close_quietly(connection)
                raise DatabaseUnavailable(f"connect failed: {exc.msg}", exc.errno) from exc
            self._connection = connection
            self._logger.info(
                "db connected",
                extra={
                    "connection_id": connection.connection_id,
                    "connect_ms": round((time.perf_counter() - started) * 1000, 2),
                    "tls": bool(getattr(connection, "is_secure", False)),  # what the handshake did, not the config
                },
            )
        return self._connection, self._cursor
