"""The migrator against a real MariaDB, logged in as a master with RDS's privileges (no SUPER): migrations applied
once, the application user created with exactly its grants, repaired when broader, re-synced on a new password."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime

import boto3
import mysql.connector
import pytest

from handler import app_contract as contract
from handler.app_db import Deadline
from handler.app_settings import ConfigError, MigratorSettings
from handler.migrator import AppCredentials, MigrationError, check_event, lambda_handler, read_app_secret, run
from local.control_plane.emulator import Emulator
from local.data_plane.mariadb import MariaDBServer
from modules.project import REPO_ROOT
from tests.handler.handler_support import (
    SECRET_ARN,
    Accounts,
    admin_query,
    app_store,
    create_master,
    grants_of,
    migrate,
    migrator_settings,
    new_table,
    stored,
)

FORBIDDEN_IN_GRANTS = re.compile(r"\b(ALL|CREATE|DROP|ALTER|DELETE|GRANT OPTION)\b")


@pytest.fixture(scope="module")
def server(mariadb_factory: Callable[..., MariaDBServer]) -> MariaDBServer:
    return mariadb_factory(max_connections=60)


@pytest.fixture
def accounts(server: MariaDBServer) -> Accounts:
    return create_master(server)


def versions(server: MariaDBServer, table: str) -> list[int]:
    return [int(row[0]) for row in admin_query(server, f"SELECT version FROM `{table}_schema` ORDER BY version")]


def test_app_user_gets_exactly_what_the_request_path_uses(server: MariaDBServer, accounts: Accounts) -> None:
    table = new_table()
    result = migrate(server, accounts, table)

    assert result == {"schema_version": 4, "applied": [1, 2, 3, 4], "app_user": accounts.app_user, "revoked": []}
    grants = [line for line in grants_of(server, accounts.app_user) if not line.startswith("GRANT USAGE ON *.*")]
    user = f"`{accounts.app_user}`@`%`"
    assert grants == sorted(
        [
            f"GRANT EXECUTE ON PROCEDURE `app`.`{table}_store` TO {user}",
            f"GRANT SELECT ON `app`.`{table}_schema` TO {user}",
            f"GRANT SELECT, INSERT, UPDATE ON `app`.`{table}_count` TO {user}",
            f"GRANT SELECT, INSERT, UPDATE ON `app`.`{table}` TO {user}",
        ]
    )
    assert not [line for line in grants if FORBIDDEN_IN_GRANTS.search(line.split(" ON ")[0])]


def test_request_path_connection_may_not_change_the_schema(server: MariaDBServer, accounts: Accounts) -> None:
    table = new_table()
    migrate(server, accounts, table)
    store = app_store(server, accounts, table)
    try:
        assert store.record_access(datetime.now(UTC), "r1").total == 1
        cursor = store._connection.cursor()  # the request path's own connection, as the application user
        for statement in ("CREATE TABLE sneaky (a INT)", f"DROP TABLE `{table}`", f"ALTER TABLE `{table}` ADD x INT"):
            with pytest.raises(mysql.connector.Error) as denied:
                cursor.execute(statement)
            assert denied.value.errno == 1142, statement
        with pytest.raises(mysql.connector.Error) as denied:
            cursor.execute(f"DELETE FROM `{table}`")
        assert denied.value.errno == 1142
        with pytest.raises(mysql.connector.Error) as denied:
            cursor.execute("SELECT * FROM mysql.user")
        assert denied.value.errno == 1142
    finally:
        store.close()
    assert stored(server, table)[:2] == (1, 1)


def test_twenty_migrators_at_once_apply_each_migration_once(server: MariaDBServer, accounts: Accounts) -> None:
    table = new_table()
    barrier = threading.Barrier(20)
    results: list[dict | BaseException] = []

    def one() -> None:
        barrier.wait(timeout=30)
        try:
            results.append(migrate(server, accounts, table))
        except BaseException as exc:  # noqa: BLE001 - collected and asserted on below
            results.append(exc)

    threads = [threading.Thread(target=one) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert [r for r in results if isinstance(r, BaseException)] == []
    applied = sorted(version for result in results for version in result["applied"])
    assert applied == [1, 2, 3, 4]  # each version applied by exactly one of the twenty
    assert versions(server, table) == [1, 2, 3, 4]
    assert admin_query(server, "SELECT COUNT(*) FROM mysql.user WHERE User = %s", (accounts.app_user,)) == [(1,)]
    assert len(grants_of(server, accounts.app_user)) == 5  # USAGE plus the four exact grants


def test_second_run_changes_nothing(server: MariaDBServer, accounts: Accounts) -> None:
    table = new_table()
    migrate(server, accounts, table)
    store = app_store(server, accounts, table)
    store.record_access(datetime.now(UTC), "before")
    before = (grants_of(server, accounts.app_user), admin_query(server, f"SELECT * FROM `{table}_count`"))

    again = migrate(server, accounts, table)

    assert again == {"schema_version": 4, "applied": [], "app_user": accounts.app_user, "revoked": []}
    assert (grants_of(server, accounts.app_user), admin_query(server, f"SELECT * FROM `{table}_count`")) == before
    assert store.record_access(datetime.now(UTC), "after").total == 2  # the kept connection works on
    store.close()
    fresh = app_store(server, accounts, table)  # and the same password still logs in
    assert fresh.record_access(datetime.now(UTC), "fresh").total == 3
    fresh.close()


def test_a_changed_secret_password_is_applied_to_the_user(server: MariaDBServer, accounts: Accounts) -> None:
    table = new_table()
    migrate(server, accounts, table)
    old_password = accounts.app_password

    migrate(server, accounts, table, password="rotated-" + old_password[:8])

    with pytest.raises(mysql.connector.Error) as refused:
        server.app_connect(user=accounts.app_user, password=old_password).close()
    assert refused.value.errno == 1045
    server.app_connect(user=accounts.app_user, password="rotated-" + old_password[:8]).close()


def test_broader_grants_are_revoked_and_the_exact_set_granted(server: MariaDBServer, accounts: Accounts) -> None:
    table = new_table()
    migrate(server, accounts, table)
    exact = grants_of(server, accounts.app_user)
    user = f"'{accounts.app_user}'@'%'"
    admin_query(server, f"GRANT ALL PRIVILEGES ON `app`.* TO {user} WITH GRANT OPTION")
    admin_query(server, f"GRANT DELETE, SELECT (`id`) ON `app`.`{table}` TO {user}")
    admin_query(server, f"GRANT PROCESS ON *.* TO {user}")
    with server.app_connect(user=accounts.master, password=accounts.master_password) as master:
        cursor = master.cursor()  # roles as the master made them (it may revoke what it administers)
        cursor.execute("CREATE ROLE IF NOT EXISTS sms_broad_role")
        cursor.execute(f"GRANT sms_broad_role TO {user}")

    result = migrate(server, accounts, table)

    assert sorted(result["revoked"]) == sorted(
        [
            "ALL PRIVILEGES ON `app`.*",
            "GRANT OPTION ON `app`.*",
            "PROCESS ON *.*",
            f"SELECT (`id`), DELETE ON `app`.`{table}`",  # in the order SHOW GRANTS prints them
            "`sms_broad_role`",
        ]
    )
    after = grants_of(server, accounts.app_user)
    assert len(after) == 5
    assert not [line for line in after if FORBIDDEN_IN_GRANTS.search(line.split(" ON ")[0]) or "PROCESS" in line]
    assert not [line for line in after if "sms_broad_role" in line]
    assert after == exact


def test_secret_for_another_user_is_refused(server: MariaDBServer, accounts: Accounts) -> None:
    other = AppCredentials("someone_else", "pw")
    with pytest.raises(MigrationError, match=f"is for user 'someone_else', but APP_DB_USER='{accounts.app_user}'"):
        run(migrator_settings(server, accounts, new_table()), Deadline.none(), secret_reader=lambda _arn: other)


def test_master_without_create_user_fails_clearly_without_the_password(server: MariaDBServer) -> None:
    accounts = create_master(server)
    master = f"'{accounts.master}'@'%'"  # privileges on the schema only: no CREATE USER, no INSERT on mysql.*
    admin_query(server, f"REVOKE ALL PRIVILEGES, GRANT OPTION FROM {master}")
    admin_query(server, f"GRANT ALL PRIVILEGES ON `app`.* TO {master} WITH GRANT OPTION")
    with pytest.raises(MigrationError) as failed:
        migrate(server, accounts, new_table(), password="never-printed-pw")
    assert "CREATE USER for the application user failed (MySQL error 1227)" in str(failed.value)
    assert "never-printed-pw" not in str(failed.value) and failed.value.__cause__ is not None
    assert "never-printed-pw" not in str(failed.value.__cause__)


def test_unreachable_database_fails_naming_the_master_and_the_address(server: MariaDBServer) -> None:
    accounts = create_master(server)
    settings = migrator_settings(server, accounts, new_table(), port=9)
    secret = AppCredentials(accounts.app_user, "pw")
    with pytest.raises(MigrationError, match=rf"connecting as {accounts.master} to 127.0.0.1:9 failed"):
        run(settings, Deadline.none(), secret_reader=lambda _arn: secret)


@pytest.mark.parametrize(
    ("event", "fragment"),
    [
        ([], "event must be a JSON object, got list"),
        ({"schema_version": 5}, "event schema_version=5 is newer than this code's 4"),
        ({"schema_version": "4"}, "event schema_version='4': allowed an integer from 1 to 4"),
        ({"schema_version": True}, "event schema_version=True: allowed an integer from 1 to 4"),
        ({"app_user": "other"}, "event app_user='other' differs from APP_DB_USER='app_user'"),
    ],
)
def test_bad_events_are_refused(event: object, fragment: str) -> None:
    settings = MigratorSettings.from_env(ENV)
    with pytest.raises(MigrationError) as refused:
        check_event(event, settings)
    assert fragment in str(refused.value)
    check_event({"schema_version": 4, "app_user": "app_user", "secret_version": "v1"}, settings)  # the deploy's input


ENV = {
    "DB_HOST": "proxy.example",
    "DB_NAME": "app",
    "DB_USER": "app_admin",
    "AWS_REGION": "ap-northeast-1",
    "APP_DB_USER": "app_user",
    "APP_DB_SECRET_ARN": SECRET_ARN,
}


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"APP_DB_USER": ""}, "APP_DB_USER is required but not set"),
        ({"APP_DB_USER": "app-user"}, "APP_DB_USER='app-user' is not a valid user name; allowed a letter, then"),
        (
            {"APP_DB_USER": "u" * 33},
            "is not a valid user name; allowed a letter, then letters, digits or _, at most 32",
        ),
        ({"APP_DB_USER": "app_admin"}, "APP_DB_USER='app_admin' must differ from DB_USER (the master user"),
        ({"APP_DB_SECRET_ARN": ""}, "APP_DB_SECRET_ARN is required but not set"),
        ({"APP_DB_SECRET_ARN": "my-secret"}, "APP_DB_SECRET_ARN='my-secret' is not a Secrets Manager secret ARN"),
        ({"DB_HOST": ""}, "DB_HOST is required but not set"),
    ],
)
def test_migrator_settings_name_the_variable(overrides: dict[str, str], fragment: str) -> None:
    with pytest.raises(ConfigError) as refused:
        MigratorSettings.from_env({**ENV, **overrides})
    assert fragment in str(refused.value)


# -- the real path: the secret from Secrets Manager (the emulator), the handler entry point -------------------
@pytest.fixture
def emulated_aws(emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> str:
    """The private emulator (conftest) as the function's Secrets Manager; returns its endpoint."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", emulator.endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return emulator.endpoint


def create_secret(endpoint: str, name: str, value: object) -> str:
    client = boto3.client("secretsmanager", region_name="ap-northeast-1", endpoint_url=endpoint)
    return client.create_secret(Name=name, SecretString=json.dumps(value))["ARN"]


def test_secret_is_read_from_secrets_manager(emulated_aws: str) -> None:
    arn = create_secret(emulated_aws, "sms-app-user-read", {"username": "app_user", "password": "from-the-secret"})
    assert read_app_secret(arn) == AppCredentials("app_user", "from-the-secret")
    missing = arn.replace("sms-app-user-read", "sms-app-user-gone")
    with pytest.raises(
        MigrationError, match="reading the secret APP_DB_SECRET_ARN=.* failed: ResourceNotFoundException"
    ):
        read_app_secret(missing)
    no_password = create_secret(emulated_aws, "sms-app-user-nopw", {"username": "app_user"})
    with pytest.raises(MigrationError, match="has no password"):
        read_app_secret(no_password)


def test_lambda_handler_migrates_with_the_secret_from_secrets_manager(
    emulated_aws: str, server: MariaDBServer, accounts: Accounts, monkeypatch: pytest.MonkeyPatch
) -> None:
    table = new_table()
    secret = {"username": accounts.app_user, "password": accounts.app_password}
    arn = create_secret(emulated_aws, f"sms-{table}", secret)
    environment = {
        contract.DB_HOST: server.host,
        contract.DB_PORT: str(server.port),
        contract.DB_NAME: server.database,
        contract.DB_USER: accounts.master,
        contract.DB_AUTH: contract.AUTH_PASSWORD,
        contract.DB_PASSWORD: accounts.master_password,
        contract.DB_TABLE: table,
        contract.APP_DB_USER: accounts.app_user,
        contract.APP_DB_SECRET_ARN: arn,
    }
    for name, value in environment.items():
        monkeypatch.setenv(name, value)

    result = lambda_handler({"schema_version": contract.SCHEMA_VERSION}, None)

    assert result == {"schema_version": 4, "applied": [1, 2, 3, 4], "app_user": accounts.app_user, "revoked": []}
    json.dumps(result)  # what Lambda returns to the deploy
    store = app_store(server, accounts, table)
    assert store.record_access(datetime.now(UTC), "served").total == 1
    store.close()


def test_python_m_handler_migrator_runs_it_once_and_prints_the_result(
    emulated_aws: str, server: MariaDBServer, accounts: Accounts
) -> None:
    table = new_table()
    arn = create_secret(emulated_aws, f"sms-cli-{table}", {"username": accounts.app_user, "password": "cli-pw-123"})
    environment = {
        **os.environ,
        contract.DB_HOST: server.host,
        contract.DB_PORT: str(server.port),
        contract.DB_NAME: server.database,
        contract.DB_USER: accounts.master,
        contract.DB_AUTH: contract.AUTH_PASSWORD,
        contract.DB_PASSWORD: accounts.master_password,
        contract.DB_TABLE: table,
        contract.APP_DB_USER: accounts.app_user,
        contract.APP_DB_SECRET_ARN: arn,
    }
    command = [sys.executable, "-m", "handler.migrator"]
    done = subprocess.run(command, env=environment, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "schema_version": 4,
        "applied": [1, 2, 3, 4],
        "app_user": accounts.app_user,
        "revoked": [],
    }
    del environment[contract.APP_DB_USER]
    refused = subprocess.run(command, env=environment, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert (refused.returncode, refused.stderr) == (1, "migrator: APP_DB_USER is required but not set\n")
