"""Which schema version a database has, and bringing it to the newest one exactly once.

Migrations belong to the deploy, not to requests: the migrator (``handler.migrator``, run once per deploy as the
master user) calls ``migrate``; the request function only reads the version (``schema_version_query``, a plain
SELECT its application user may run) and answers 503 while it is behind ``app_contract.SCHEMA_VERSION``.

``migrate`` takes ``GET_LOCK`` (an advisory lock, which pins the client connection in RDS Proxy, so it runs on a
connection of its own that is closed afterwards), reads the version again, applies each missing migration in
order and records it, then releases the lock: migrators started together apply each migration exactly once, the
others wait on the lock and find the schema current. Each step is safe to repeat if an earlier attempt died
half-way (see ``app_migrations``); a table or procedure dropped by hand is found (``current_version``) and only
the migrations that create it run again.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

from mysql.connector import errors as mysql_errors

from handler.app_db import DatabaseUnavailable, Deadline, apply_deadline
from handler.app_migrations import LATEST_VERSION, MIGRATIONS, Migration
from handler.app_names import COUNTER_SHARDS, TableNames

__all__ = [
    "COUNTER_SHARDS",
    "LATEST_VERSION",
    "MIGRATIONS",
    "TableNames",
    "current_version",
    "migrate",
    "migration_lock",
    "schema_version_query",
]

_NO_SUCH_TABLE = 1146


def schema_version_query(names: TableNames) -> str:
    """The request path's version check: one plain SELECT (no session state, so RDS Proxy keeps multiplexing)."""
    return f"SELECT MAX(version) FROM {names.versions}"


def current_version(cursor: Any, names: TableNames, migrations: Sequence[Migration] = MIGRATIONS) -> int:
    """Highest applied version whose objects all exist; 0 when nothing was recorded (a v1 table of the first
    release included) or when one of the tables is missing (dropped by hand, or v2 not applied yet): ``migrate``
    then re-runs every migration after the returned version, which are idempotent."""
    routines = {m.version: m.routine(names) for m in migrations if m.routine is not None}
    placeholders = ", ".join(["%s"] * len(routines)) or "NULL"
    try:
        # One round trip. The empty subqueries cost nothing but make the statement fail with 1146 when a table is
        # missing; the second column lists the procedures that exist.
        cursor.execute(
            f"SELECT MAX(version), (SELECT GROUP_CONCAT(ROUTINE_NAME) FROM information_schema.ROUTINES "
            f"WHERE ROUTINE_SCHEMA = %s AND ROUTINE_TYPE = 'PROCEDURE' AND ROUTINE_NAME IN ({placeholders})) "
            f"FROM {names.versions} "
            f"WHERE NOT EXISTS (SELECT 1 FROM {names.rows} WHERE 1 = 0) "
            f"AND NOT EXISTS (SELECT 1 FROM {names.counter} WHERE 1 = 0)",
            (names.database, *routines.values()),
        )
    except mysql_errors.Error as exc:
        if exc.errno == _NO_SUCH_TABLE:
            return 0
        raise
    (version, present) = cursor.fetchone()
    version = int(version or 0)
    found = set(_text(present).split(",")) if present else set()
    for routine_version, name in sorted(routines.items()):
        if routine_version <= version and name not in found:
            return routine_version - 1  # dropped by hand: its migration (and the later ones) run again
    return version


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, (bytes, bytearray)) else str(value)


@contextlib.contextmanager
def migration_lock(connection: Any, names: TableNames, deadline: Deadline) -> Iterator[Any]:
    """Hold the schema's advisory lock on ``connection`` (dedicated: the lock pins it); yields a cursor."""
    cursor = connection.cursor()
    apply_deadline(connection, deadline)
    left = deadline.seconds_left()
    wait = 60 if left is None else max(1, int(left) - 1)
    cursor.execute("SELECT GET_LOCK(%s, %s)", (names.lock_name, wait))
    (locked,) = cursor.fetchone()
    if locked != 1:
        raise DatabaseUnavailable("schema migration lock not acquired in time", None)
    try:
        yield cursor
    finally:
        with contextlib.suppress(Exception):  # a broken connection loses its lock with it
            if connection.in_transaction:
                cursor.execute("ROLLBACK")
            cursor.execute("SELECT RELEASE_LOCK(%s)", (names.lock_name,))
            cursor.fetchall()


def apply_migrations(
    connection: Any, cursor: Any, names: TableNames, deadline: Deadline, migrations: Sequence[Migration] = MIGRATIONS
) -> list[int]:
    """Apply the missing ``migrations`` in order, recording each; the caller holds ``migration_lock``."""
    _create_versions_table(cursor, names)
    # Versions whose objects are gone (a table or a procedure dropped by hand) run again; each migration is
    # idempotent, and the counter is recounted from the rows that exist when v2 runs again.
    cursor.execute(f"DELETE FROM {names.versions} WHERE version > %s", (current_version(cursor, names, migrations),))
    applied = []
    for migration in migrations:
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


def migrate(
    connection: Any, names: TableNames, deadline: Deadline, migrations: Sequence[Migration] = MIGRATIONS
) -> list[int]:
    """Bring the schema to the newest of ``migrations`` on ``connection`` (dedicated: it holds an advisory lock).

    Returns the versions this call applied (empty when another migrator did it first).
    """
    with migration_lock(connection, names, deadline) as cursor:
        return apply_migrations(connection, cursor, names, deadline, migrations)


def _create_versions_table(cursor: Any, names: TableNames) -> None:
    cursor.execute(
        f"CREATE TABLE IF NOT EXISTS {names.versions} (version INT UNSIGNED NOT NULL PRIMARY KEY, "
        "description VARCHAR(200) NOT NULL, applied_at DATETIME(6) NOT NULL) ENGINE=InnoDB"
    )


def _recorded_version(cursor: Any, names: TableNames) -> int:
    cursor.execute(f"SELECT MAX(version) FROM {names.versions}")
    (version,) = cursor.fetchone()
    return int(version or 0)
