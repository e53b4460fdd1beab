"""Test support for the handler: a master user like RDS's, the migrator run against a private MariaDB, the request
path's store as the application user, and what the database holds."""

from __future__ import annotations

import importlib
import json
import logging
import secrets
import sys
import time
import uuid
from dataclasses import dataclass, field
from types import ModuleType, SimpleNamespace
from typing import Any

from handler.app_db import Deadline
from handler.app_settings import MigratorSettings, Settings
from handler.app_store import AccessTimesStore
from handler.migrator import AppCredentials, run
from local.data_plane.mariadb import MariaDBServer

#: What RDS for MySQL gives its master user (those MariaDB knows; no SUPER), per the RDS user guide's "Master user
#: account privileges". The migrator must manage schema and users with exactly this.
RDS_MASTER_PRIVILEGES = (
    "SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, RELOAD, PROCESS, REFERENCES, INDEX, ALTER, SHOW DATABASES, "
    "CREATE TEMPORARY TABLES, LOCK TABLES, EXECUTE, REPLICATION SLAVE, REPLICATION CLIENT, CREATE VIEW, SHOW VIEW, "
    "CREATE ROUTINE, ALTER ROUTINE, CREATE USER, EVENT, TRIGGER"
)
SECRET_ARN = "arn:aws:secretsmanager:ap-northeast-1:123456789012:secret:sms-app-user-AbCdEf"


@dataclass
class Accounts:
    """A master user (RDS's privileges) and an application user (its password as the secret holds it)."""

    master: str
    master_password: str = field(repr=False)
    app_user: str
    app_password: str = field(repr=False)


def new_table() -> str:
    return f"t_{uuid.uuid4().hex[:12]}"


def create_master(server: MariaDBServer) -> Accounts:
    """A fresh master with RDS's master privileges, and the name and password of a fresh application user."""
    suffix = uuid.uuid4().hex[:8]
    accounts = Accounts(f"master_{suffix}", secrets.token_hex(12), f"app_{suffix}", secrets.token_hex(12))
    with server.admin_connect() as admin:
        cursor = admin.cursor()
        cursor.execute(f"CREATE USER '{accounts.master}'@'%' IDENTIFIED BY %s", (accounts.master_password,))
        cursor.execute(f"GRANT {RDS_MASTER_PRIVILEGES} ON *.* TO '{accounts.master}'@'%' WITH GRANT OPTION")
    return accounts


def settings(server: MariaDBServer, user: str, password: str, table: str, port: int | None = None, **extra) -> Settings:
    return Settings(
        host=server.host,
        port=port or server.port,
        database=server.database,
        user=user,
        auth="password",
        password=password,
        table=table,
        connect_timeout=extra.pop("connect_timeout", 5),
        **extra,
    )


def migrator_settings(server: MariaDBServer, accounts: Accounts, table: str, port: int | None = None):
    master = settings(server, accounts.master, accounts.master_password, table, port)
    return MigratorSettings(master, accounts.app_user, SECRET_ARN)


def migrate(server: MariaDBServer, accounts: Accounts, table: str, password: str | None = None) -> dict[str, Any]:
    """One migrator run, the secret holding ``password`` (default: the accounts' application password)."""
    secret = AppCredentials(accounts.app_user, password or accounts.app_password)
    return run(migrator_settings(server, accounts, table), Deadline.none(), secret_reader=lambda _arn: secret)


def app_store(
    server: MariaDBServer, accounts: Accounts, table: str, port: int | None = None, **extra
) -> AccessTimesStore:
    """The request path's store, logged in as the application user."""
    return AccessTimesStore(
        settings(server, accounts.app_user, accounts.app_password, table, port, **extra),
        logging.getLogger("tests.handler"),
    )


def admin_query(server: MariaDBServer, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with server.admin_connect(database=server.database) as admin:
        cursor = admin.cursor()
        cursor.execute(sql, params)
        return list(cursor.fetchall()) if cursor.with_rows else []


def stored(server: MariaDBServer, table: str) -> tuple[int, int, list[str | None]]:
    """(COUNT(*), SUM of the counter shards, request ids in id order) as the database has them."""
    ((rows, counted),) = admin_query(
        server, f"SELECT (SELECT COUNT(*) FROM `{table}`), (SELECT COALESCE(SUM(n), 0) FROM `{table}_count`)"
    )
    ids = [row[0] for row in admin_query(server, f"SELECT request_id FROM `{table}` ORDER BY id")]
    return int(rows), int(counted), ids


def grants_of(server: MariaDBServer, user: str) -> list[str]:
    return sorted(str(row[0]) for row in admin_query(server, f"SHOW GRANTS FOR '{user}'@'%'"))


def wait_for_no_open_transactions(server: MariaDBServer, timeout: float = 5.0) -> None:
    """Until the server has ended every transaction (dropped connections' ones rolled back)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        rows = server._query_as_monitor("SELECT COUNT(*) FROM information_schema.INNODB_TRX")
        if int(rows[0][0]) == 0:
            return
        time.sleep(0.02)
    raise AssertionError("open transactions remained")


# -- the request function as Lambda imports it ---------------------------------------------------------------
GET = {"version": "2.0", "rawPath": "/", "requestContext": {"http": {"method": "GET", "path": "/"}}}
HANDLER_ENV_VARS = (
    "DB_HOST",
    "DB_PORT",
    "DB_NAME",
    "DB_USER",
    "DB_PASSWORD",
    "DB_TABLE",
    "DB_AUTH",
    "DB_SSL_CA",
    "DB_SSL_VERIFY_IDENTITY",
    "RESPONSE_LIMIT",
    "DB_CONNECT_TIMEOUT",
    "DB_DEADLINE_MARGIN_MS",
    "LOG_LEVEL",
    "AWS_REGION",
)


class HandlerLoader:
    """Imports ``handler.app`` afresh under a given environment (it reads the environment at import, as at a cold
    start); ``close()`` drops the connections of every module it loaded."""

    def __init__(self, monkeypatch: Any) -> None:
        self._monkeypatch = monkeypatch
        self._loaded: list[ModuleType] = []

    def __call__(self, env: dict[str, str]) -> ModuleType:
        for name in HANDLER_ENV_VARS:
            self._monkeypatch.delenv(name, raising=False)
        for name, value in env.items():
            self._monkeypatch.setenv(name, value)
        sys.modules.pop("handler.app", None)  # its sibling modules hold no per-container state
        module = importlib.import_module("handler.app")
        self._loaded.append(module)
        return module

    def close(self) -> None:
        for module in self._loaded:
            module.STORE.close()


def invoke(
    app: ModuleType, event: dict[str, Any] | None = None, request_id: str | None = None, path: str | None = None
) -> tuple[int, dict[str, Any], dict[str, str]]:
    """One invocation with a fresh Lambda request id (a repeated id means "the same request again")."""
    event = event if event is not None else GET
    if path is not None:
        event = {**event, "rawPath": path}
    response = app.lambda_handler(event, SimpleNamespace(aws_request_id=request_id or f"req-{uuid.uuid4()}"))
    return response["statusCode"], json.loads(response["body"]), response["headers"]


def log_lines(captured: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in captured.splitlines() if line.strip()]
