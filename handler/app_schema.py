"""Versioned, idempotent schema migrations of the access-times tables, applied once per database.

Objects (``<t>`` is ``DB_TABLE``):
  ``<t>``         one row per request: ``id`` (PK), ``created_at``, ``request_id`` (v2, UNIQUE, NULL for v1 rows)
  ``<t>_count``   (v2) the exact row count, split over ``COUNTER_SHARDS`` rows; total = SUM(n)
  ``<t>_record``  (v3) the stored procedure a request calls: the whole write and read in one round trip
  ``<t>_schema``  one row per applied migration version

How a container gets a current schema: on its first request it reads ``MAX(version)`` over its new connection
(a plain SELECT, so RDS Proxy keeps multiplexing it). Only when that is behind ``LATEST_VERSION`` does that
connection become the migration connection: it takes ``GET_LOCK`` (an advisory lock, which pins the client
connection in RDS Proxy), reads the version again, applies each missing migration in order and records it,
releases the lock, and is CLOSED; the request continues on a fresh connection, so the kept request connection
never carries session state. (Handing the connection over instead of opening a second one keeps a container at
one database connection at any time, which matters when connecting directly to a nearly full server.)
100 containers cold-starting together therefore run each migration exactly once; the others wait on the lock
(bounded by their invocation deadline) and then find the schema current.

Each step is safe to repeat if an earlier attempt died half-way: DDL is guarded by information_schema checks
(and "already exists" errors count as done, since MySQL 8 has no ``ADD COLUMN IF NOT EXISTS``), and the step
that writes data records its version in the same transaction. An object dropped by hand is noticed at the next
cold start (the version check fails or finds the procedure missing) and its migration runs again.

Adding a migration: append a ``Migration(version=N + 1, description=..., apply=...)`` to ``MIGRATIONS``, where
``apply(cursor, names)`` is idempotent as above (never edit a released one); the request path picks up the new
schema on the next cold start of the new code. A migration that rewrites a large table (minutes) should be run
ahead of the deploy with ``python -m handler.app_schema`` (``python -m app_schema`` in the unzipped package) and
the handler's environment variables, because a request only waits for it as long as its invocation deadline
allows (a request that times out leaves the lock to the next one; the steps are idempotent). Keep each release
working on the schema of the release before it (add first, remove a release later), since old and new containers
overlap during a deploy: a changed procedure gets a new name, and the old one is dropped a release later. For v2
that overlap has a cost: a row stored by a still-running v1 container after the migration is not counted (Lambda
sends new invocations to the new code once the deploy finishes). v2 and v3 containers count the same way.
"""

from __future__ import annotations

import contextlib
import hashlib
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mysql.connector import errors as mysql_errors

if __package__:
    from .app_db import DatabaseUnavailable, Deadline, apply_deadline, close_quietly
else:  # top level of the Lambda zip
    from app_db import DatabaseUnavailable, Deadline, apply_deadline, close_quietly  # type: ignore[no-redef]

COUNTER_SHARDS = 32
"""Counter rows: a request updates shard ``id % COUNTER_SHARDS`` of its new row, so concurrent requests (consecutive
ids) rarely wait for each other's commit."""

_ALREADY_DONE_ERRNOS = frozenset({1050, 1060, 1061, 1304})  # table, column, key name, procedure exists
_NO_SUCH_TABLE = 1146
_RECORD_VERSION = 3


@dataclass(frozen=True)
class TableNames:
    """The quoted identifiers of one access-times table and its companions (names validated in Settings)."""

    database: str
    table: str

    @property
    def rows(self) -> str:
        return f"`{self.table}`"

    @property
    def counter(self) -> str:
        return f"`{self.table}_count`"

    @property
    def versions(self) -> str:
        return f"`{self.table}_schema`"

    @property
    def record_procedure_name(self) -> str:
        return f"{self.table}_record"

    @property
    def record_procedure(self) -> str:
        return f"`{self.record_procedure_name}`"

    @property
    def lock_name(self) -> str:
        # GET_LOCK names are server-wide and at most 64 characters in MySQL 8.
        digest = hashlib.sha256(f"{self.database}.{self.table}".encode()).hexdigest()[:40]
        return f"access_times_migrate:{digest}"


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    apply: Callable[[Any, TableNames], None]
    """Runs the migration on an autocommit cursor; must be idempotent and must not record its version: ``migrate``
    does, in the transaction ``apply`` may leave open (so data changes and the version commit together)."""


def _v1_create_rows(cursor: Any, names: TableNames) -> None:
    # Exactly the table the first release created on first use.
    cursor.execute(
        f"CREATE TABLE IF NOT EXISTS {names.rows} ("
        "id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY, "
        "created_at DATETIME(6) NOT NULL, "
        "KEY idx_created_at (created_at)) ENGINE=InnoDB"
    )


def _v2_request_ids_and_counter(cursor: Any, names: TableNames) -> None:
    if not _has_column(cursor, names, names.table, "request_id"):
        _ddl(
            cursor,
            f"ALTER TABLE {names.rows} ADD COLUMN request_id VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NULL, "
            "ADD UNIQUE KEY uq_request_id (request_id)",
        )
    _ddl(
        cursor,
        f"CREATE TABLE IF NOT EXISTS {names.counter} ("
        "shard TINYINT UNSIGNED NOT NULL PRIMARY KEY, n BIGINT NOT NULL) ENGINE=InnoDB",
    )
    # Seed with the exact count. The shared locks block inserts until the commit, and the version row is
    # written in the same transaction (see ``migrate``), so a repeat starts from a clean counter again.
    cursor.execute("START TRANSACTION")
    cursor.execute(f"SELECT COUNT(*) FROM {names.rows} LOCK IN SHARE MODE")
    (total,) = cursor.fetchone()
    cursor.execute(f"DELETE FROM {names.counter}")
    values = ", ".join(f"({shard}, {int(total) if shard == 0 else 0})" for shard in range(COUNTER_SHARDS))
    cursor.execute(f"INSERT INTO {names.counter} (shard, n) VALUES {values}")


def _v3_record_procedure(cursor: Any, names: TableNames) -> None:
    # One CALL does a request's work on the server: no round trip between its statements, and RDS Proxy does not
    # pin a session for calling a stored procedure. It leaves the transaction open: the caller's COMMIT is the
    # only step whose loss leaves the outcome unknown, exactly as with separate statements. The first result set
    # is (created_at of the request's row, replayed, total), the second the newest rows. A request id that is
    # already stored (an earlier attempt whose reply was lost) adds nothing and reports the stored row. The
    # shard is the new id modulo COUNTER_SHARDS: concurrent inserts get consecutive ids, so different shards.
    # SQL SECURITY INVOKER: it does nothing its caller could not do directly. FORCE INDEX: MariaDB re-runs a cached
    # procedure statement with a plan (full scan and sort) that grows with the table; the index is always right.
    _ddl(
        cursor,
        f"CREATE PROCEDURE {names.record_procedure}("
        "IN p_request_id VARCHAR(64) CHARACTER SET ascii, IN p_created_at DATETIME(6), IN p_limit INT UNSIGNED) "
        "MODIFIES SQL DATA SQL SECURITY INVOKER "
        "BEGIN "
        "DECLARE v_replayed BOOLEAN DEFAULT FALSE; "
        "DECLARE v_created_at DATETIME(6) DEFAULT p_created_at; "
        "DECLARE EXIT HANDLER FOR SQLEXCEPTION BEGIN ROLLBACK; RESIGNAL; END; "
        "START TRANSACTION; "
        "BEGIN "
        "DECLARE CONTINUE HANDLER FOR 1062 SET v_replayed = TRUE; "
        f"INSERT INTO {names.rows} (created_at, request_id) VALUES (p_created_at, p_request_id); "
        "END; "
        "IF v_replayed THEN "
        f"SELECT created_at INTO v_created_at FROM {names.rows} WHERE request_id = p_request_id LOCK IN SHARE MODE; "
        "ELSE "
        f"UPDATE {names.counter} SET n = n + 1 WHERE shard = LAST_INSERT_ID() % {COUNTER_SHARDS}; "
        "END IF; "
        f"SELECT v_created_at, v_replayed, (SELECT SUM(n) FROM {names.counter}); "
        f"SELECT created_at FROM {names.rows} FORCE INDEX (idx_created_at) "
        "ORDER BY created_at DESC, id DESC LIMIT p_limit; "
        "END",
    )


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "access-times table (id, created_at)", _v1_create_rows),
    Migration(2, "request_id UNIQUE; sharded exact row counter", _v2_request_ids_and_counter),
    Migration(_RECORD_VERSION, "procedure recording one access in one round trip", _v3_record_procedure),
)
LATEST_VERSION = MIGRATIONS[-1].version


def _ddl(cursor: Any, sql: str) -> None:
    try:
        cursor.execute(sql)
    except mysql_errors.Error as exc:
        if exc.errno not in _ALREADY_DONE_ERRNOS:
            raise


def _has_column(cursor: Any, names: TableNames, table: str, column: str) -> bool:
    cursor.execute(
        "SELECT COUNT(*) FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s "
        "AND COLUMN_NAME = %s",
        (names.database, table, column),
    )
    return int(cursor.fetchone()[0]) > 0


def current_version(cursor: Any, names: TableNames) -> int:
    """Highest applied version whose objects all exist; 0 when nothing was recorded (a v1 table of the first
    release included) or when one of the tables is missing (dropped by hand, or v2 not applied yet): ``migrate``
    then re-runs every migration after the returned version, which are idempotent. Takes raw cursors too."""
    try:
        # One round trip per cold start. The empty subqueries cost nothing but make the statement fail with 1146
        # when a table is missing; the second column says whether the procedure exists.
        cursor.execute(
            f"SELECT MAX(version), (SELECT COUNT(*) FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = %s "
            f"AND ROUTINE_NAME = %s AND ROUTINE_TYPE = 'PROCEDURE') FROM {names.versions} "
            f"WHERE NOT EXISTS (SELECT 1 FROM {names.rows} WHERE 1 = 0) "
            f"AND NOT EXISTS (SELECT 1 FROM {names.counter} WHERE 1 = 0)",
            (names.database, names.record_procedure_name),
        )
    except mysql_errors.Error as exc:
        if exc.errno == _NO_SUCH_TABLE:
            return 0
        raise
    (version, procedures) = cursor.fetchone()
    version = int(version or 0)
    if version >= _RECORD_VERSION and not int(procedures):
        return _RECORD_VERSION - 1  # dropped by hand: only its own migration runs again
    return version


def _recorded_version(cursor: Any, names: TableNames) -> int:
    cursor.execute(f"SELECT MAX(version) FROM {names.versions}")
    (version,) = cursor.fetchone()
    return int(version or 0)


def migrate(connection: Any, names: TableNames, deadline: Deadline) -> list[int]:
    """Bring the schema to ``LATEST_VERSION`` on ``connection`` (dedicated: it holds an advisory lock).

    Returns the versions this call applied (empty when another container did it first).
    """
    cursor = connection.cursor()
    apply_deadline(connection, deadline)
    left = deadline.seconds_left()
    wait = 60 if left is None else max(1, int(left) - 1)
    cursor.execute("SELECT GET_LOCK(%s, %s)", (names.lock_name, wait))
    (locked,) = cursor.fetchone()
    if locked != 1:
        raise DatabaseUnavailable("schema migration lock not acquired in time", None)
    try:
        _ddl(
            cursor,
            f"CREATE TABLE IF NOT EXISTS {names.versions} (version INT UNSIGNED NOT NULL PRIMARY KEY, "
            "description VARCHAR(200) NOT NULL, applied_at DATETIME(6) NOT NULL) ENGINE=InnoDB",
        )
        # Versions whose objects are gone (a table or the procedure dropped by hand) run again; each migration is
        # idempotent, and the counter is recounted from the rows that exist when v2 runs again.
        cursor.execute(f"DELETE FROM {names.versions} WHERE version > %s", (current_version(cursor, names),))
        applied = []
        for migration in MIGRATIONS:
            if migration.version <= _recorded_version(cursor, names):
                continue
            apply_deadline(connection, deadline)
            migration.apply(cursor, names)
            if not connection.in_transaction:
                cursor.execute("START TRANSACTION")
            cursor.execute(
                f"INSERT INTO {names.versions} (version, description, applied_at) VALUES (%s, %s, UTC_TIMESTAMP(6))",
                (migration.version, migration.description),
            )
            cursor.execute("COMMIT")
            applied.append(migration.version)
        return applied
    finally:
        with contextlib.suppress(Exception):  # a broken connection loses its lock with it
            if connection.in_transaction:
                cursor.execute("ROLLBACK")
            cursor.execute("SELECT RELEASE_LOCK(%s)", (names.lock_name,))
            cursor.fetchall()


def migrate_and_close(connection: Any, names: TableNames, deadline: Deadline) -> list[int]:
    """Run ``migrate`` on ``connection`` and close it afterwards, so its pinned proxy session goes with it."""
    try:
        return migrate(connection, names, deadline)
    except mysql_errors.Error as exc:
        raise DatabaseUnavailable(f"schema migration failed: {exc.msg}", exc.errno) from exc
    finally:
        close_quietly(connection)


def main() -> int:
    """``python -m handler.app_schema``: apply pending migrations with the handler's environment, no deadline."""
    import os

    if __package__:
        from .app_db import connect
        from .app_iam import password_provider_for
        from .app_settings import Settings
    else:
        from app_db import connect  # type: ignore[no-redef]
        from app_iam import password_provider_for  # type: ignore[no-redef]
        from app_settings import Settings  # type: ignore[no-redef]

    settings = Settings.from_env(os.environ)
    names = TableNames(settings.database, settings.table)
    provider = password_provider_for(settings)
    applied = migrate_and_close(connect(settings, provider, Deadline.none()), names, Deadline.none())
    print(f"{names.database}.{names.table}: applied {applied or 'nothing'}; schema version {LATEST_VERSION}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
