"""The ordered schema migrations of the access-times tables. Released migrations are never edited.

Objects (``<t>`` is ``DB_TABLE``):
  ``<t>``         one row per request: ``id`` (PK), ``created_at``, ``request_id`` (v2, UNIQUE, NULL for v1 rows)
  ``<t>_count``   (v2) the exact row count, split over ``COUNTER_SHARDS`` rows; total = SUM(n)
  ``<t>_record``  (v3) the previous release's procedure: a request's write and read, committed by the caller
  ``<t>_store``   (v4) this release's procedure: the write, the read and the COMMIT in one statement
  ``<t>_schema``  one row per applied migration version (``app_schema``)

Adding a migration: append ``Migration(version=N + 1, description=..., apply=...)`` to ``MIGRATIONS`` and raise
``app_contract.SCHEMA_VERSION`` to N + 1. ``apply(cursor, names)`` must be idempotent: DDL guarded by
information_schema checks or by "already exists" errors (MySQL 8 has no ``ADD COLUMN IF NOT EXISTS``), and a step
that writes data leaves its transaction open so that ``app_schema.migrate`` records the version in it. A migration
that creates a procedure names it in ``routine``, so a procedure dropped by hand is found and created again. Keep
each release working on the schema of the release before it, because old and new containers overlap during a
deploy: a changed procedure gets a new name, and the old one is dropped a release later.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mysql.connector import errors as mysql_errors

from handler import app_contract as contract
from handler.app_names import COUNTER_SHARDS, TableNames

_ALREADY_DONE_ERRNOS = frozenset({1050, 1060, 1061, 1304})  # table, column, key name, procedure exists


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    apply: Callable[[Any, TableNames], None]
    """Runs the migration on an autocommit cursor; must be idempotent and must not record its version: ``migrate``
    does, in the transaction ``apply`` may leave open (so data changes and the version commit together)."""
    routine: Callable[[TableNames], str] | None = None
    """The procedure this migration creates, if any: when it is missing, the migration runs again."""


def _ddl(cursor: Any, sql: str) -> None:
    try:
        cursor.execute(sql)
    except mysql_errors.Error as exc:
        if exc.errno not in _ALREADY_DONE_ERRNOS:
            raise


def _has_column(cursor: Any, names: TableNames, column: str) -> bool:
    cursor.execute(
        "SELECT COUNT(*) FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s "
        "AND COLUMN_NAME = %s",
        (names.database, names.table, column),
    )
    return int(cursor.fetchone()[0]) > 0


def _v1_create_rows(cursor: Any, names: TableNames) -> None:
    # Exactly the table the first release created on first use.
    cursor.execute(
        f"CREATE TABLE IF NOT EXISTS {names.rows} ("
        "id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY, "
        "created_at DATETIME(6) NOT NULL, "
        "KEY idx_created_at (created_at)) ENGINE=InnoDB"
    )


def _v2_request_ids_and_counter(cursor: Any, names: TableNames) -> None:
    if not _has_column(cursor, names, "request_id"):
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


def _v4_store_procedure(cursor: Any, names: TableNames) -> None:
    # v3's work plus the COMMIT, so a request is ONE autocommitted statement: RDS Proxy can hand the database
    # connection to another client as soon as the CALL's final OK has been relayed, instead of holding it across
    # a second round trip to a container that may be waiting for a CPU. The COMMIT is the last statement, after
    # both result sets: any error before or at it makes the exit handler roll everything back, so an error reply
    # always means "nothing stored", and only a reply that never arrives leaves the outcome open (the caller then
    # asks again with the same request id). v3's procedure stays for containers of the previous release.
    _ddl(
        cursor,
        f"CREATE PROCEDURE {names.store_procedure}("
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
        "COMMIT; "
        "END",
    )


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "access-times table (id, created_at)", _v1_create_rows),
    Migration(2, "request_id UNIQUE; sharded exact row counter", _v2_request_ids_and_counter),
    Migration(
        3,
        "procedure recording one access in one round trip",
        _v3_record_procedure,
        routine=lambda names: names.record_procedure_name,
    ),
    Migration(
        4,
        "procedure storing one access in one autocommitted statement",
        _v4_store_procedure,
        routine=lambda names: names.store_procedure_name,
    ),
)
LATEST_VERSION = MIGRATIONS[-1].version
if LATEST_VERSION != contract.SCHEMA_VERSION:  # a migration added without raising the version, or the reverse
    raise ImportError(f"newest migration v{LATEST_VERSION} != app_contract.SCHEMA_VERSION v{contract.SCHEMA_VERSION}")
