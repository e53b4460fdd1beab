"""The access-times table and the one connection a Lambda container keeps to it (through RDS Proxy).

A GET is ONE autocommitted statement on the kept connection:

    CALL <t>_store(request_id, created_at, N)   -- START TRANSACTION; INSERT (request_id UNIQUE); +1 on a counter
                                                -- shard; SELECT (row, total); SELECT newest N; COMMIT

and ``GET /times`` one read-only SELECT (the total and the newest N, one consistent snapshot).

Why this shape:
- RDS Proxy multiplexing. The proxy can give a database connection to another client only between transactions.
  The previous release's ``CALL <t>_record`` left its transaction open until the client's COMMIT, so every request
  held a database connection across a second round trip to its container, which on a busy host may be waiting for
  a CPU. Now the transaction begins and ends inside the statement: the connection goes back to the pool as soon
  as the reply has been relayed. The connection itself carries no session state (autocommit, client-side
  interpolated statements, no SET, no prepared statements, no locks, no temporary tables), and calling a stored
  procedure does not pin a session.
- Constant cost per request. The total is a counter kept in the same transaction as the row, read as a SUM over
  32 shards (``COUNT(*)`` grows with the table); the newest rows come from a backward scan of ``idx_created_at``
  (``FORCE INDEX``), which stops after N entries at any table size. One shard per new id modulo 32 means
  concurrent requests (consecutive ids) rarely wait for each other's row lock.
- Exactly one row per request. The request id (API Gateway's ``requestContext.requestId``, else the Lambda
  ``aws_request_id``) is stored under a UNIQUE key. A reply that never arrives (connection lost, read timeout)
  leaves the outcome open, so the store reconnects and sends the same CALL again: the retry either stores the row
  (the first attempt never ran or was rolled back) or meets the duplicate key, bumps nothing and answers from the
  stored row (``replayed``). An attempt still running on the server holds the key's lock, so the retry waits for
  its outcome instead of guessing.
- Status codes keep their promises. A 503 means nothing was stored: the statement was never sent (no connection,
  no time left; a kept connection the server or proxy closed while idle is noticed without a round trip and
  replaced before sending), or the database answered it with an error, which the procedure's exit handler has
  rolled back (its COMMIT is its last statement). A 502 (``OutcomeUnknown``) only when a statement was sent, its
  reply never came, and the retry could not learn the outcome either. The first attempt may use half of the
  invocation's time, so the retry has the other half.
- The request path never migrates. It reads the schema version once per container (one plain SELECT) and answers
  503 (``SchemaNotReady``, logged once) while the schema is behind ``SCHEMA_VERSION`` or its objects are missing,
  checking again on later requests, so it serves as soon as the deploy's migrator has run.
- Cheap decoding: a raw cursor returns the columns as bytes; the times are rewritten into the response's ISO 8601
  text directly (``iso_utc``), with no datetime parsing and formatting (the driver's per-value converters, or our
  own parse and format, took a fifth of the handler's CPU per request at 100 rows).
"""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from mysql.connector import errors as mysql_errors

from handler import app_contract as contract
from handler.app_db import (
    CONNECTION_LOST_ERRNOS,
    TIMEOUT_ERRNO,
    TRANSACTION_RETRY_ERRNOS,
    UNAVAILABLE_ERRNOS,
    DatabaseUnavailable,
    Deadline,
    apply_deadline,
    close_quietly,
    closed_by_peer,
    connect,
    still_connected,
)
from handler.app_iam import password_provider_for
from handler.app_names import TableNames
from handler.app_schema import schema_version_query
from handler.app_settings import Settings

__all__ = [
    "AccessSnapshot",
    "AccessTimesStore",
    "DatabaseUnavailable",
    "Deadline",
    "OutcomeUnknown",
    "SchemaNotReady",
    "TimesSnapshot",
    "request_key",
]

T = TypeVar("T")

_KEY_MAX = 64
_SERVER_SHUTDOWN = 1053  # may come instead of the OK of a statement that committed: the outcome is open
_REPLY_LOST_ERRNOS = CONNECTION_LOST_ERRNOS | {TIMEOUT_ERRNO, _SERVER_SHUTDOWN}
# The statement failed because the schema or the application user's grants are not what this code needs.
_SCHEMA_ERRNOS = frozenset(
    {
        1142,  # ER_TABLEACCESS_DENIED_ERROR: a grant is missing
        1146,  # ER_NO_SUCH_TABLE
        1305,  # ER_SP_DOES_NOT_EXIST
        1370,  # ER_PROCACCESS_DENIED_ERROR: EXECUTE not granted
    }
)


class OutcomeUnknown(DatabaseUnavailable):
    """A write was sent, its reply never came, and no retry could tell whether it was applied.

    Answered with 502, never 503: a 503 promises that nothing was stored.
    """


class SchemaNotReady(DatabaseUnavailable):
    """The schema is behind ``SCHEMA_VERSION`` or its objects or grants are missing: the deploy's migrator has not
    run (or something was dropped by hand). Nothing was stored; answered with 503."""


def request_key(request_id: str | None) -> str:
    """The stored form of a request id: as is when short printable ASCII, else its SHA-256 (64 hex digits)."""
    if not request_id:
        return uuid.uuid4().hex  # no id at all: still one row per call, retries within the call included
    if len(request_id) <= _KEY_MAX and request_id.isascii() and request_id.isprintable():
        return request_id
    return hashlib.sha256(request_id.encode("utf-8", "surrogatepass")).hexdigest()


def iso_utc(text: bytes | bytearray) -> str:
    """A UTC DATETIME(6) as the text protocol sends it (``2026-11-24 10:00:00.123456``) in ISO 8601 with ``Z``
    (``2026-11-24T10:00:00.123456Z``): a string rewrite, no parsing, since a response holds up to 1000 of them."""
    return text.decode("ascii").replace(" ", "T", 1) + "Z"


@dataclass(frozen=True)
class AccessSnapshot:
    """Result of one recorded access: when its row was stored, how many rows exist, the newest rows (times in
    ISO 8601 UTC, as the response carries them)."""

    inserted: str
    total: int
    newest: list[str]
    replayed: bool = False
    """True when the row had been stored by an earlier attempt with the same request id."""


@dataclass(frozen=True)
class TimesSnapshot:
    """The stored total and the newest rows, read without storing anything."""

    total: int
    newest: list[str]


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
        self._schema_complaint: str | None = None  # the last reason logged, so a waiting container logs it once
        self.names = TableNames(settings.database, settings.table)  # validated as safe identifiers in Settings
        self._store_sql = f"CALL {self.names.store_procedure}(%s, %s, %s)"
        self._times_sql = (
            f"SELECT c.total, r.created_at FROM (SELECT COALESCE(SUM(n), 0) AS total FROM {self.names.counter}) AS c "
            f"LEFT JOIN (SELECT id, created_at FROM {self.names.rows} FORCE INDEX (idx_created_at) "
            "ORDER BY created_at DESC, id DESC LIMIT %s) AS r ON TRUE ORDER BY r.created_at DESC, r.id DESC"
        )

    @property
    def connection_id(self) -> int | None:
        """Server thread id of the kept connection (from the handshake, no round trip)."""
        return self._connection.connection_id if self._connection is not None else None

    def record_access(
        self, now: datetime, request_id: str | None = None, deadline: Deadline | None = None
    ) -> AccessSnapshot:
        """Store ``now`` (UTC) once for ``request_id``; return the newest ``response_limit`` rows and the total."""
        params = (request_key(request_id), now.replace(tzinfo=None), self._settings.response_limit)
        return self._execute(self._store_sql, params, _read_store, deadline or Deadline.none(), writes=True)

    def newest_times(self, deadline: Deadline | None = None) -> TimesSnapshot:
        """The newest ``response_limit`` rows and the total, storing nothing."""
        params = (self._settings.response_limit,)
        return self._execute(self._times_sql, params, _read_times, deadline or Deadline.none(), writes=False)

    def close(self) -> None:
        """Drop the kept connection; the next request opens a new one."""
        connection, self._connection, self._cursor = self._connection, None, None
        if connection is not None:
            close_quietly(connection)

    # -- internals --------------------------------------------------------------------------------
    def _execute(
        self, sql: str, params: tuple[Any, ...], read: Callable[[Any], T], deadline: Deadline, writes: bool
    ) -> T:
        unknown = False  # a write was sent in an earlier attempt and its reply never came
        for attempt in (1, 2):
            sent = False
            try:
                connection, cursor = self._ensure_connection(deadline)
                if not self._schema_ready:
                    self._check_schema(connection, cursor, deadline)
                apply_deadline(connection, deadline, keep_for_retry=attempt == 1)  # raises before sending
                sent = True
                cursor.execute(sql, params)
                return read(cursor)
            except DatabaseUnavailable as exc:  # this attempt sent nothing, or the schema is not ready
                if not isinstance(exc, SchemaNotReady):
                    self.close()
                if unknown:
                    raise _unknown(exc) from exc
                raise
            except mysql_errors.Error as exc:
                if exc.errno in _REPLY_LOST_ERRNOS or (
                    exc.errno not in UNAVAILABLE_ERRNOS and not still_connected(self._connection)
                ):
                    self.close()  # the server rolls back whatever the statement had not committed
                    unknown = unknown or (writes and sent)
                    if attempt == 1:
                        message = "db reply lost, asking again" if sent else "db connection lost, reconnecting"
                        self._logger.warning(message, extra={"errno": exc.errno, "error": exc.msg})
                        continue
                    failure = DatabaseUnavailable(f"connection lost again: {exc.msg}", exc.errno)
                # The database (or the proxy) answered with an error: the procedure's exit handler rolled back.
                elif exc.errno in UNAVAILABLE_ERRNOS:  # e.g. 9501: RDS Proxy had no connection to lend in time
                    self.close()
                    failure = DatabaseUnavailable(f"query failed: {exc.msg}", exc.errno)
                elif exc.errno in TRANSACTION_RETRY_ERRNOS:
                    if attempt == 1:
                        self._logger.warning("transaction rolled back, retrying", extra={"errno": exc.errno})
                        continue
                    failure = DatabaseUnavailable("transaction rolled back twice", exc.errno)
                elif exc.errno in _SCHEMA_ERRNOS:
                    self._schema_ready = False  # checked again on the next request
                    failure = self._not_ready(f"{exc.msg} (error {exc.errno})")
                elif unknown:
                    failure = DatabaseUnavailable(f"retry failed: {exc.msg}", exc.errno)
                else:
                    raise  # an unexpected SQL error: a 500, and the connection is kept
                raise (_unknown(failure) if unknown else failure) from exc
            except Exception:
                self.close()  # unknown state: never reuse it
                raise
        raise AssertionError("unreachable")  # pragma: no cover - every second attempt returns or raises

    def _check_schema(self, connection: Any, cursor: Any, deadline: Deadline) -> None:
        """One plain SELECT per container: is the schema at least ``SCHEMA_VERSION``? Never migrates."""
        apply_deadline(connection, deadline)
        try:
            cursor.execute(schema_version_query(self.names))
            ((raw_version,),) = cursor.fetchall()
        except mysql_errors.Error as exc:
            if exc.errno not in _SCHEMA_ERRNOS:
                raise
            raise self._not_ready(f"{exc.msg} (error {exc.errno})") from exc
        found = int(raw_version or 0)
        if found < contract.SCHEMA_VERSION:
            raise self._not_ready(f"schema version {found} is behind {contract.SCHEMA_VERSION}")
        self._schema_ready, self._schema_complaint = True, None
        self._logger.info("schema checked", extra={"schema_version": found})

    def _not_ready(self, reason: str) -> SchemaNotReady:
        if reason != self._schema_complaint:
            self._schema_complaint = reason
            self._logger.warning(
                f"schema not ready: {reason}; answering 503 until the migrator ({contract.MIGRATOR_HANDLER}) has run",
                extra={"table": self.names.table},
            )
        return SchemaNotReady(f"schema not ready: {reason}", None)

    def _ensure_connection(self, deadline: Deadline) -> tuple[Any, Any]:
        # The cursor is kept with its connection: the driver's cursor() pings the server (a round
        # trip) every time it is called, and a plain cursor can run any number of statements.
        if self._connection is not None and closed_by_peer(self._connection):
            self._logger.warning("db connection closed while idle, reconnecting")
            self.close()
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


def _unknown(exc: DatabaseUnavailable) -> OutcomeUnknown:
    return OutcomeUnknown(f"outcome unknown: a reply was lost, then {exc}", exc.errno)


def _read_store(cursor: Any) -> AccessSnapshot:
    ((stored_at, replayed, total),) = cursor.fetchall()
    cursor.nextset()
    newest = [iso_utc(value) for (value,) in cursor.fetchall()]
    while cursor.nextset():  # the CALL's final status: only its OK says that the COMMIT happened
        pass
    return AccessSnapshot(
        inserted=iso_utc(stored_at),
        total=int(total),
        newest=newest,
        replayed=replayed == b"1",
    )


def _read_times(cursor: Any) -> TimesSnapshot:
    rows = cursor.fetchall()
    return TimesSnapshot(total=int(rows[0][0]), newest=[iso_utc(value) for _, value in rows if value is not None])
