"""Migrations, upgrades and the exact counter against a real MariaDB: the previous release's own code (run from git,
as the master, calling v3's procedure and committing itself) next to this release's request path (the application
user, v4's one-statement procedure), a v3 database with rows upgraded in place, 100 concurrent containers."""

from __future__ import annotations

import importlib
import logging
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from types import ModuleType
from typing import Any

import pytest

from handler import app_contract as contract
from handler.app_db import Deadline
from handler.app_schema import COUNTER_SHARDS, MIGRATIONS, TableNames, migrate
from handler.app_store import AccessSnapshot
from local.data_plane.mariadb import MariaDBServer
from modules.project import REPO_ROOT
from tests.handler.handler_support import (
    Accounts,
    admin_query,
    app_store,
    create_master,
    new_table,
    stored,
)
from tests.handler.handler_support import (
    migrate as run_migrator,
)

PREVIOUS_RELEASE = "8d0fb8a"
"""The release before the one-statement GET: its request path runs as the master, migrates v1-v3 itself and sends
``CALL <t>_record`` then ``COMMIT``."""
PREVIOUS_MODULES = ("__init__", "app_contract", "app_db", "app_iam", "app_logging", "app_schema", "app_settings")
PREVIOUS_MODULES += ("app_store",)
V1_TABLE_SQL = (
    "CREATE TABLE IF NOT EXISTS `{table}` (id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY, "
    "created_at DATETIME(6) NOT NULL, KEY idx_created_at (created_at)) ENGINE=InnoDB"
)


@pytest.fixture(scope="module")
def server(mariadb_factory: Callable[..., MariaDBServer]) -> MariaDBServer:
    return mariadb_factory(max_connections=250)  # 100 stores at once, each with its own connection


@pytest.fixture(scope="module")
def accounts(server: MariaDBServer) -> Accounts:
    return create_master(server)


@pytest.fixture(scope="module")
def previous(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    """The previous release's handler package, as ``handler_v3`` (its modules import each other relatively)."""
    root = tmp_path_factory.mktemp("previous_release")
    package = root / "handler_v3"
    package.mkdir()
    for name in PREVIOUS_MODULES:
        shown = subprocess.run(
            ["git", "show", f"{PREVIOUS_RELEASE}:handler/{name}.py"], cwd=REPO_ROOT, capture_output=True, text=True
        )
        assert shown.returncode == 0, f"the previous release {PREVIOUS_RELEASE} must be in this checkout's history"
        (package / f"{name}.py").write_text(shown.stdout)
    sys.path.insert(0, str(root))
    try:
        yield importlib.import_module("handler_v3.app_store")
    finally:
        sys.path.remove(str(root))
        for name in [name for name in sys.modules if name.startswith("handler_v3")]:
            del sys.modules[name]


def previous_store(previous: ModuleType, server: MariaDBServer, accounts: Accounts, table: str) -> Any:
    """A container of the previous release: logged in as the master, as that release deployed it."""
    settings_module = sys.modules["handler_v3.app_settings"]
    previous_settings = settings_module.Settings(
        host=server.host,
        port=server.port,
        database=server.database,
        user=accounts.master,
        auth="password",
        password=accounts.master_password,
        table=table,
    )
    return previous.AccessTimesStore(previous_settings, logging.getLogger("previous_release"))


def versions(server: MariaDBServer, table: str) -> list[int]:
    return [int(row[0]) for row in admin_query(server, f"SELECT version FROM `{table}_schema` ORDER BY version")]


def run_together(stores: list[Any], requests_each: int = 1) -> list[Any]:
    """Each store in its own thread, all released at once; returns every result or exception."""
    barrier = threading.Barrier(len(stores))
    results: list[Any] = []
    lock = threading.Lock()

    def work(store: Any) -> None:
        barrier.wait(timeout=60)
        for _ in range(requests_each):
            try:
                outcome = store.record_access(datetime.now(UTC), f"req-{uuid.uuid4()}")
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


def test_a_v3_database_with_rows_upgrades_in_place_losing_nothing(
    server: MariaDBServer, accounts: Accounts, previous: ModuleType
) -> None:
    table = new_table()
    old = previous_store(previous, server, accounts, table)  # the deployed release: migrates v1-v3 on its own
    for i in range(50):
        old.record_access(datetime.now(UTC), f"old-{i}")
    old.close()
    before = admin_query(server, f"SELECT id, created_at, request_id FROM `{table}` ORDER BY id")
    assert versions(server, table) == [1, 2, 3] and len(before) == 50

    result = run_migrator(server, accounts, table)  # the deploy of this release

    assert (result["applied"], result["schema_version"]) == ([4], 4)
    store = app_store(server, accounts, table)
    try:
        snapshot = store.record_access(datetime.now(UTC), "new-1")
    finally:
        store.close()
    assert snapshot.total == 51
    after = admin_query(server, f"SELECT id, created_at, request_id FROM `{table}` ORDER BY id")
    assert after[:-1] == before and after[-1][2] == "new-1"  # every old row, unchanged
    assert stored(server, table)[:2] == (51, 51)


def test_previous_and_new_containers_together_keep_the_count_exact(
    server: MariaDBServer, accounts: Accounts, previous: ModuleType
) -> None:
    table = new_table()
    seed = previous_store(previous, server, accounts, table)
    seed.record_access(datetime.now(UTC), "seed")
    seed.close()
    run_migrator(server, accounts, table)
    old = [previous_store(previous, server, accounts, table) for _ in range(20)]  # still serving during the deploy
    new = [app_store(server, accounts, table) for _ in range(20)]

    results = run_together(old + new, requests_each=5)

    assert [r for r in results if isinstance(r, BaseException)] == []
    assert stored(server, table)[:2] == (201, 201)
    assert versions(server, table) == [1, 2, 3, 4]  # the previous release's cold starts found v4 current
    assert int(admin_query(server, f"SELECT COUNT(*) FROM `{table}_count` WHERE n > 0")[0][0]) > 1


def test_count_stays_exact_under_100_concurrent_containers(server: MariaDBServer, accounts: Accounts) -> None:
    table = new_table()
    run_migrator(server, accounts, table)
    stores = [app_store(server, accounts, table, connect_timeout=10) for _ in range(100)]

    results = run_together(stores, requests_each=3)

    assert [r for r in results if isinstance(r, BaseException)] == []
    assert stored(server, table)[:2] == (300, 300)
    totals = [r.total for r in results if isinstance(r, AccessSnapshot)]
    # Each saw its own row; concurrent transactions do not see each other's uncommitted rows.
    assert len(totals) == 300 and all(1 <= total <= 300 for total in totals)


def test_a_v1_table_of_the_first_release_is_migrated_keeping_every_row(
    server: MariaDBServer, accounts: Accounts
) -> None:
    table = new_table()
    start = datetime(2024, 1, 1)
    admin_query(server, V1_TABLE_SQL.format(table=table))
    with server.admin_connect(database=server.database) as admin:
        admin.cursor().executemany(
            f"INSERT INTO `{table}` (created_at) VALUES (%s)", [(start + timedelta(seconds=i),) for i in range(500)]
        )
    before = admin_query(server, f"SELECT id, created_at FROM `{table}` ORDER BY id")

    assert run_migrator(server, accounts, table)["applied"] == [1, 2, 3, 4]

    store = app_store(server, accounts, table)
    assert store.record_access(datetime.now(UTC), "first-after-upgrade").total == 501
    store.close()
    after = admin_query(server, f"SELECT id, created_at, request_id FROM `{table}` ORDER BY id")
    assert [(i, t) for i, t, _ in after[:-1]] == before and {r for _, _, r in after[:-1]} == {None}
    assert stored(server, table)[:2] == (501, 501)
    assert int(admin_query(server, f"SELECT COUNT(*) FROM `{table}_count`")[0][0]) == COUNTER_SHARDS


def test_a_dropped_counter_table_is_rebuilt_by_the_migrator_with_the_exact_count(
    server: MariaDBServer, accounts: Accounts
) -> None:
    table = new_table()
    run_migrator(server, accounts, table)
    store = app_store(server, accounts, table)
    for i in range(5):
        store.record_access(datetime.now(UTC), f"r{i}")
    admin_query(server, f"DROP TABLE `{table}_count`")

    assert run_migrator(server, accounts, table)["applied"] == [1, 2, 3, 4]  # idempotent, from a missing table
    assert store.record_access(datetime.now(UTC), "r-next").total == 6
    store.close()
    assert stored(server, table)[:2] == (6, 6)
    assert versions(server, table) == [1, 2, 3, 4]


def test_a_v2_schema_gets_both_procedures_without_a_recount(server: MariaDBServer, accounts: Accounts) -> None:
    table = new_table()
    names = TableNames(server.database, table)
    with server.admin_connect(database=server.database) as connection:
        assert migrate(connection, names, Deadline.none(), MIGRATIONS[:2]) == [1, 2]  # the v2 release
    admin_query(server, f"UPDATE `{table}_count` SET n = n + 1000 WHERE shard = 7")  # a recount would undo this

    assert run_migrator(server, accounts, table)["applied"] == [3, 4]

    store = app_store(server, accounts, table)
    assert store.record_access(datetime.now(UTC), "v4-first").total == 1001
    store.close()


def test_every_derived_name_fits_mysqls_identifier_limit(server: MariaDBServer, accounts: Accounts) -> None:
    longest = "t" * contract.TABLE_NAME_MAX_LENGTH
    assert len(longest) + max(map(len, contract.TABLE_SUFFIXES)) <= contract.MYSQL_IDENTIFIER_MAX_LENGTH
    admin_query(server, f"DROP TABLE IF EXISTS `{longest}`, `{longest}_count`, `{longest}_schema`")
    assert run_migrator(server, accounts, longest)["applied"] == [1, 2, 3, 4]
    store = app_store(server, accounts, longest)
    assert store.record_access(datetime.now(UTC), "long").total == 1
    store.close()


def test_reads_cost_the_same_at_any_size_on_a_kept_connection(server: MariaDBServer, accounts: Accounts) -> None:
    """Both routes read the newest rows by a backward scan of the index (N entries, no sort of the table) and the
    total from 32 counter rows: the server's row reads per request are the same at 2,300 and at 42,300 rows.
    Measured on one kept connection after many calls, as a warm container runs them: MariaDB re-executes a cached
    procedure statement with its own plan, which without the index hint was a scan and sort of the table."""
    table = new_table()
    run_migrator(server, accounts, table)

    def add_rows(count: int) -> None:
        with server.admin_connect(database=server.database) as admin:
            admin.cursor().execute(
                f"INSERT INTO `{table}` (created_at) "
                f"SELECT TIMESTAMP'2020-01-01 00:00:00' + INTERVAL seq SECOND FROM seq_1_to_{count}"
            )

    add_rows(2000)
    store = app_store(server, accounts, table)
    try:
        for i in range(300):
            store.record_access(datetime.now(UTC), f"warm-{i}")
        cursor = store._connection.cursor()  # the request path's own session

        def reads(action: Callable[[], Any]) -> dict[str, int]:
            query = "SHOW SESSION STATUS WHERE Variable_name LIKE 'Handler_read%' OR Variable_name LIKE 'Sort%'"
            cursor.execute(query)
            before = {name: int(value) for name, value in cursor.fetchall()}
            action()
            cursor.execute(query)
            after = {name: int(value) for name, value in cursor.fetchall()}
            return {name: after[name] - before[name] for name in after if after[name] != before[name]}

        def both_routes() -> tuple[dict[str, int], dict[str, int]]:
            return (
                reads(lambda: store.record_access(datetime.now(UTC), f"measured-{uuid.uuid4()}")),
                reads(store.newest_times),
            )

        small = both_routes()
        add_rows(40_000)
        large = both_routes()
    finally:
        store.close()
    assert large == small
    for used in small:
        assert used.get("Handler_read_prev") == 99, used  # the newest 100 rows, read backwards from the index
        assert used.get("Handler_read_rnd_next", 0) < 400, used  # counter shards, N rows, SHOW STATUS: no scan
