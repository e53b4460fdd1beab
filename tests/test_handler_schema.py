"""Schema migrations and the exact counter under concurrency, against a real MariaDB.

Concurrent cold starts are threads, each with its own store (its own connection), released together.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from handler.app_schema import COUNTER_SHARDS, LATEST_VERSION, MIGRATIONS, TableNames, migrate_and_close
from handler.app_settings import Settings
from handler.app_store import AccessSnapshot, AccessTimesStore, Deadline
from local.data_plane.mariadb import MariaDBServer

# The table exactly as the first release created it on first use (``CREATE TABLE IF NOT EXISTS`` per container).
V1_TABLE_SQL = (
    "CREATE TABLE IF NOT EXISTS `{table}` ("
    "id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY, "
    "created_at DATETIME(6) NOT NULL, "
    "KEY idx_created_at (created_at)) ENGINE=InnoDB"
)


ALL_VERSIONS = [migration.version for migration in MIGRATIONS]


@pytest.fixture(scope="module")
def server(mariadb_factory: Callable[..., MariaDBServer]) -> MariaDBServer:
    return mariadb_factory(max_connections=250)  # 100 stores at once, each with its own connection


def make_store(server: MariaDBServer, table: str) -> AccessTimesStore:
    settings = Settings(
        host=server.host,
        port=server.port,
        database=server.database,
        user=server.app_user,
        auth="password",
        password=server.app_password,
        table=table,
        connect_timeout=10,
    )
    return AccessTimesStore(settings, logging.getLogger("test_handler_schema"))


def admin_query(server: MariaDBServer, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with server.admin_connect(database=server.database) as admin:
        cursor = admin.cursor()
        cursor.execute(sql, params)
        return list(cursor.fetchall()) if cursor.with_rows else []


def counts(server: MariaDBServer, table: str) -> tuple[int, int]:
    ((rows, counted),) = admin_query(
        server, f"SELECT (SELECT COUNT(*) FROM `{table}`), (SELECT COALESCE(SUM(n), 0) FROM `{table}_count`)"
    )
    return int(rows), int(counted)


def versions(server: MariaDBServer, table: str) -> list[int]:
    return [int(row[0]) for row in admin_query(server, f"SELECT version FROM `{table}_schema` ORDER BY version")]


def run_together(stores: list[AccessTimesStore], requests_each: int = 1) -> list[AccessSnapshot | BaseException]:
    """Each store in its own thread, all released at once; returns every result or exception."""
    barrier = threading.Barrier(len(stores))
    results: list[AccessSnapshot | BaseException] = []
    lock = threading.Lock()

    def work(store: AccessTimesStore) -> None:
        barrier.wait(timeout=60)
        for _ in range(requests_each):
            try:
                outcome: AccessSnapshot | BaseException = store.record_access(
                    datetime.now(UTC), f"req-{uuid.uuid4()}", Deadline.none()
                )
            except BaseException as exc:  # noqa: BLE001 - collected and asserted on below
                outcome = exc
            with lock:
                results.append(outcome)

    threads = [threading.Thread(target=work, args=(store,)) for store in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    for store in stores:
        store.close()
    return results


def create_v1_table(server: MariaDBServer, table: str, rows: int) -> list[tuple[int, datetime]]:
    """A table created and filled the way the first release did; returns its rows."""
    start = datetime(2024, 1, 1)
    with server.app_connect() as connection:
        cursor = connection.cursor()
        cursor.execute(V1_TABLE_SQL.format(table=table))
        cursor.executemany(
            f"INSERT INTO `{table}` (created_at) VALUES (%s)", [(start + timedelta(seconds=i),) for i in range(rows)]
        )
    return [(int(i), t) for i, t in admin_query(server, f"SELECT id, created_at FROM `{table}` ORDER BY id")]


def test_v1_table_is_migrated_in_place_keeping_every_row(server: MariaDBServer) -> None:
    table = f"t_{uuid.uuid4().hex[:12]}"
    before = create_v1_table(server, table, rows=500)
    store = make_store(server, table)
    try:
        snapshot = store.record_access(datetime.now(UTC), "first-after-upgrade")
    finally:
        store.close()

    assert snapshot.total == 501
    after = admin_query(server, f"SELECT id, created_at, request_id FROM `{table}` ORDER BY id")
    assert [(int(i), t) for i, t, _ in after[:-1]] == before  # every old row, unchanged
    assert all(request_id is None for _, _, request_id in after[:-1])
    assert after[-1][2] == "first-after-upgrade"
    assert counts(server, table) == (501, 501)
    assert versions(server, table) == ALL_VERSIONS
    shards = admin_query(server, f"SELECT COUNT(*) FROM `{table}_count`")
    assert int(shards[0][0]) == COUNTER_SHARDS


@pytest.mark.parametrize("v1_rows", [0, 300])
def test_concurrent_cold_starts_apply_each_migration_once(server: MariaDBServer, v1_rows: int) -> None:
    table = f"t_{uuid.uuid4().hex[:12]}"
    if v1_rows:
        create_v1_table(server, table, rows=v1_rows)
    stores = [make_store(server, table) for _ in range(40)]

    results = run_together(stores)

    assert [r for r in results if isinstance(r, BaseException)] == []
    assert versions(server, table) == ALL_VERSIONS  # each recorded once (the version is the primary key)
    assert counts(server, table) == (v1_rows + 40, v1_rows + 40)
    # Only one container migrated: the others found the schema current after waiting for the lock.
    applied = admin_query(server, f"SELECT COUNT(*) FROM `{table}_schema`")
    assert int(applied[0][0]) == len(MIGRATIONS) == LATEST_VERSION


def test_count_stays_exact_under_100_concurrent_requests(server: MariaDBServer) -> None:
    table = f"t_{uuid.uuid4().hex[:12]}"
    first = make_store(server, table)
    first.record_access(datetime.now(UTC), "schema")
    first.close()
    stores = [make_store(server, table) for _ in range(100)]

    results = run_together(stores, requests_each=3)

    failures = [r for r in results if isinstance(r, BaseException)]
    assert failures == []
    assert counts(server, table) == (301, 301)
    totals = [r.total for r in results if isinstance(r, AccessSnapshot)]
    # Each saw its own row and the first one; concurrent transactions do not see each other's uncommitted rows.
    assert len(totals) == 300 and all(2 <= total <= 301 for total in totals)
    used = admin_query(server, f"SELECT COUNT(*) FROM `{table}_count` WHERE n > 0")
    assert int(used[0][0]) > 1  # the writes were spread over shards


def test_dropped_counter_table_is_rebuilt_with_the_exact_count(server: MariaDBServer) -> None:
    table = f"t_{uuid.uuid4().hex[:12]}"
    store = make_store(server, table)
    try:
        for i in range(5):
            store.record_access(datetime.now(UTC), f"r{i}")
        admin_query(server, f"DROP TABLE `{table}_count`")
        with pytest.raises(Exception):  # noqa: B017 - this request fails (ER_NO_SUCH_TABLE) ...
            store.record_access(datetime.now(UTC), "r-fails")
        snapshot = store.record_access(datetime.now(UTC), "r-next")  # ... the next one repairs
    finally:
        store.close()
    assert snapshot.total == 6
    assert counts(server, table) == (6, 6)
    assert versions(server, table) == ALL_VERSIONS


def write_as_v2_release(server: MariaDBServer, table: str, request_id: str) -> None:
    """One request as the v2 release stored it: its own transaction, no procedure."""
    with server.app_connect() as connection:
        cursor = connection.cursor()
        cursor.execute("START TRANSACTION")
        cursor.execute(
            f"INSERT INTO `{table}` (created_at, request_id) VALUES (%s, %s)",
            (datetime.now(UTC).replace(tzinfo=None), request_id),
        )
        cursor.execute(f"UPDATE `{table}_count` SET n = n + 1 WHERE shard = 5")
        cursor.execute("COMMIT")


def test_v2_schema_gets_the_procedure_without_a_recount_and_v2_writers_still_count(
    server: MariaDBServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    table = f"t_{uuid.uuid4().hex[:12]}"
    names = TableNames(server.database, table)
    with monkeypatch.context() as patched:
        patched.setattr("handler.app_schema.MIGRATIONS", MIGRATIONS[:2])  # the v2 release
        assert migrate_and_close(server.app_connect(), names, Deadline.none()) == [1, 2]
    for i in range(3):
        write_as_v2_release(server, table, f"v2-{i}")
    admin_query(server, f"UPDATE `{table}_count` SET n = n + 1000 WHERE shard = 7")  # a recount would undo this

    store = make_store(server, table)
    try:
        snapshot = store.record_access(datetime.now(UTC), "v3-first")
        write_as_v2_release(server, table, "v2-during-the-deploy")  # an old container, after the migration
        later = store.record_access(datetime.now(UTC), "v3-second")
    finally:
        store.close()

    assert versions(server, table) == ALL_VERSIONS
    assert (snapshot.total, later.total) == (1004, 1006)  # counted once each, by whichever release wrote them
    assert counts(server, table) == (6, 1006)


def test_dropped_procedure_is_recreated_without_touching_the_counter(server: MariaDBServer) -> None:
    table = f"t_{uuid.uuid4().hex[:12]}"
    store = make_store(server, table)
    try:
        for i in range(3):
            store.record_access(datetime.now(UTC), f"r{i}")
        before = admin_query(server, f"SELECT shard, n FROM `{table}_count` ORDER BY shard")
        admin_query(server, f"DROP PROCEDURE `{table}_record`")
        with pytest.raises(Exception):  # noqa: B017 - this request fails (ER_SP_DOES_NOT_EXIST) ...
            store.record_access(datetime.now(UTC), "r-fails")
        snapshot = store.record_access(datetime.now(UTC), "r-next")  # ... the next one repairs
        after = admin_query(server, f"SELECT shard, n FROM `{table}_count` ORDER BY shard")
    finally:
        store.close()
    # Only the procedure's own migration ran again: the shards kept their values (a recount would have moved the
    # total to shard 0), and the repaired request added one to one shard.
    added = [int(n_after) - int(n_before) for (_, n_before), (_, n_after) in zip(before, after, strict=True)]
    assert sorted(added)[-2:] == [0, 1] and sum(added) == 1
    assert snapshot.total == 4 and counts(server, table) == (4, 4)
    assert versions(server, table) == ALL_VERSIONS


def test_migrating_a_current_schema_again_changes_nothing(server: MariaDBServer) -> None:
    table = f"t_{uuid.uuid4().hex[:12]}"
    store = make_store(server, table)
    try:
        store.record_access(datetime.now(UTC), "r1")
        before = admin_query(server, f"SELECT shard, n FROM `{table}_count` ORDER BY shard")
        applied = migrate_and_close(server.app_connect(), TableNames(server.database, table), Deadline.none())
    finally:
        store.close()
    assert applied == []
    assert admin_query(server, f"SELECT shard, n FROM `{table}_count` ORDER BY shard") == before


def test_newest_rows_are_read_from_the_index_without_sorting_on_a_kept_connection(server: MariaDBServer) -> None:
    """The request's reads cost the same at any table size: a backward index scan of N entries, no sort.

    Measured on one kept connection after many calls, as a warm container runs them: MariaDB re-executes a
    cached procedure statement with its own plan, which without the index hint was a full scan and sort."""
    table = f"t_{uuid.uuid4().hex[:12]}"
    create_v1_table(server, table, rows=2000)
    names = TableNames(server.database, table)
    migrate_and_close(server.app_connect(), names, Deadline.none())
    with server.app_connect(database=server.database) as connection:
        cursor = connection.cursor()

        def call(request_id: str) -> None:
            cursor.execute(f"CALL {names.record_procedure}(%s, UTC_TIMESTAMP(6), 100)", (request_id,))
            while True:
                if cursor.with_rows:
                    cursor.fetchall()
                if not cursor.nextset():
                    break
            cursor.execute("COMMIT")

        def session_status() -> dict[str, int]:
            cursor.execute("SHOW SESSION STATUS WHERE Variable_name LIKE 'Handler_read%' OR Variable_name LIKE 'Sort%'")
            return {name: int(value) for name, value in cursor.fetchall()}

        for i in range(300):
            call(f"warm-{i}")
        before = session_status()
        call("measured")
        after = session_status()
    used = {name: after[name] - before[name] for name in after if after[name] != before[name]}
    assert used.get("Handler_read_prev") == 99, used  # the newest 100 rows, read backwards from the index
    assert used.get("Handler_read_rnd_next", 0) < 100, used  # the 32 counter shards (and SHOW STATUS), no scan
    assert not any(name.startswith("Sort_") for name in used), used
