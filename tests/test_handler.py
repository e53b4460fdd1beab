"""The Lambda handler against a real private MariaDB (password mode, as in the local target)."""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest

from handler.app_settings import LAMBDA_CA_BUNDLE, ConfigError, Settings
from local.data_plane.mariadb import MariaDBServer
from modules.project import REPO_ROOT

GET = {"version": "2.0", "requestContext": {"http": {"method": "GET", "path": "/"}}}
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

Loader = Callable[..., ModuleType]


def password_env(db: MariaDBServer, **overrides: str) -> dict[str, str]:
    env = {
        "DB_HOST": db.host,
        "DB_PORT": str(db.port),
        "DB_NAME": db.database,
        "DB_USER": db.app_user,
        "DB_PASSWORD": db.app_password,
        "DB_AUTH": "password",
        "DB_TABLE": f"t_{uuid.uuid4().hex[:12]}",  # each test starts from an empty table
    }
    env.update(overrides)
    return env


@pytest.fixture(scope="module")
def module_db(mariadb_factory: Callable[..., MariaDBServer]) -> MariaDBServer:
    """A server of this module only, so connection counts are not disturbed by other modules."""
    return mariadb_factory(max_connections=20)


@pytest.fixture
def db(module_db: MariaDBServer) -> MariaDBServer:
    """The module's server once the connections closed by earlier tests are really gone."""
    module_db.wait_for_connections(at_most=0)
    return module_db


@pytest.fixture
def load_handler(monkeypatch: pytest.MonkeyPatch) -> Iterator[Loader]:
    """Import ``handler.app`` afresh under the given environment (it reads the env at import)."""
    loaded: list[ModuleType] = []

    def load(env: dict[str, str]) -> ModuleType:
        for name in HANDLER_ENV_VARS:
            monkeypatch.delenv(name, raising=False)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        sys.modules.pop("handler.app", None)  # its sibling modules hold no per-container state
        module = importlib.import_module("handler.app")
        loaded.append(module)
        return module

    yield load
    for module in loaded:
        module.STORE.close()


def invoke(
    app: ModuleType, event: dict[str, Any] = GET, request_id: str | None = None
) -> tuple[int, dict[str, Any], dict[str, str]]:
    # A fresh id per call, as Lambda gives each invocation: a repeated id now means "the same request again".
    response = app.lambda_handler(event, SimpleNamespace(aws_request_id=request_id or f"req-{uuid.uuid4()}"))
    return response["statusCode"], json.loads(response["body"]), response["headers"]


def log_lines(captured: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in captured.splitlines() if line.strip()]


def parse_iso_utc(text: str) -> datetime:
    assert text.endswith("Z"), text
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ")


def test_get_records_each_access_and_lists_newest_first(db: MariaDBServer, load_handler: Loader) -> None:
    app = load_handler(password_env(db, RESPONSE_LIMIT="3"))
    inserted = []
    for expected_count in range(1, 6):
        status, body, headers = invoke(app)
        assert status == 200
        assert headers["Content-Type"] == "application/json"
        assert body["count"] == expected_count
        assert body["limit"] == 3
        assert len(body["times"]) == min(expected_count, 3)
        assert body["times"][0] == body["inserted"]
        inserted.append(body["inserted"])
    times = [parse_iso_utc(t) for t in body["times"]]
    assert times == sorted(times, reverse=True)
    assert body["times"] == list(reversed(inserted))[:3]
    now_utc = datetime.now(UTC).replace(tzinfo=None)
    assert abs((now_utc - times[0]).total_seconds()) < 60  # stored and returned as UTC


def test_table_schema_and_no_session_state_per_request(db: MariaDBServer, load_handler: Loader) -> None:
    env = password_env(db)
    app = load_handler(env)
    assert invoke(app)[0] == 200  # cold: connect (driver's SET NAMES/autocommit), migrations, one transaction

    def counters() -> dict[str, int]:
        names = (
            "Com_insert",
            "Com_select",
            "Com_set_option",
            "Com_stmt_prepare",
            "Com_create_table",
            "Com_update",
            "Com_begin",
            "Com_commit",
            "Com_call_procedure",
        )
        rows = db._query_as_monitor(
            f"SHOW GLOBAL STATUS WHERE Variable_name IN ({', '.join(['%s'] * len(names))})", names
        )
        return {name: int(value) for name, value in rows}

    before = counters()
    for _ in range(4):
        assert invoke(app)[0] == 200
    after = counters()
    delta = {name: after[name] - before[name] for name in before}
    # Warm requests: one CALL and one COMMIT each; the server counts the procedure's statements too (INSERT,
    # counter UPDATE, two SELECTs). No SET, no prepared statement, no CREATE TABLE (the schema is checked once
    # per container).
    expected = {
        "Com_call_procedure": 4,
        "Com_insert": 4,
        "Com_select": 8,
        "Com_set_option": 0,
        "Com_stmt_prepare": 0,
        "Com_create_table": 0,
        "Com_update": 4,
        "Com_begin": 4,
        "Com_commit": 4,
    }
    assert delta == expected

    with db.admin_connect() as admin:
        cursor = admin.cursor()
        cursor.execute(
            "SELECT COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE, COLUMN_KEY, EXTRA FROM information_schema.COLUMNS "
            "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s ORDER BY ORDINAL_POSITION",
            (db.database, env["DB_TABLE"]),
        )
        assert cursor.fetchall() == [
            ("id", "bigint(20)", "NO", "PRI", "auto_increment"),
            ("created_at", "datetime(6)", "NO", "MUL", ""),
            ("request_id", "varchar(64)", "YES", "UNI", ""),  # schema v2
        ]


def test_connection_is_reused_across_warm_invocations(db: MariaDBServer, load_handler: Loader) -> None:
    app = load_handler(password_env(db))
    assert app.STORE.connection_id is None  # nothing opened at import
    invoke(app)
    first_id = app.STORE.connection_id
    for _ in range(3):
        assert invoke(app)[0] == 200
    assert app.STORE.connection_id == first_id
    assert db.connection_ids(db.app_user) == [first_id]


def test_reconnects_once_after_the_server_killed_the_connection(
    db: MariaDBServer, load_handler: Loader, capsys: pytest.CaptureFixture[str]
) -> None:
    app = load_handler(password_env(db))
    invoke(app)
    old_id = app.STORE.connection_id
    assert db.kill_connections(db.app_user) == 1

    status, body, _ = invoke(app)

    assert status == 200
    assert body["count"] == 2  # the INSERT ran exactly once
    assert app.STORE.connection_id not in (None, old_id)
    assert db.connection_ids(db.app_user) == [app.STORE.connection_id]
    warnings = [line for line in log_lines(capsys.readouterr().out) if line["level"] == "WARNING"]
    assert [w["message"] for w in warnings] == ["db connection lost, reconnecting"]
    assert warnings[0]["errno"] in (2013, 2055, 2006)


def test_too_many_connections_gives_503_with_errno_1040(
    mariadb_factory: Callable[..., MariaDBServer], load_handler: Loader
) -> None:
    small = mariadb_factory(max_connections=10)
    app = load_handler(password_env(small))
    held: list = []
    try:
        held.extend(small.app_connect() for _ in range(10))  # every slot taken by the (unprivileged) app user
        assert small.threads_connected() == 10
        status, body, headers = invoke(app)
        assert status == 503
        assert body == {"error": "database unavailable", "code": 1040}
        assert headers["Retry-After"] == "1"
        assert app.STORE.connection_id is None

        held.pop().close()
        small.wait_for_connections(at_most=9)  # the server has released that slot
        status, body, _ = invoke(app)  # so the next invocation connects
        assert status == 200 and body["count"] == 1
    finally:
        for connection in held:
            connection.close()


def test_server_gone_while_warm_gives_503_after_one_reconnect_attempt(
    mariadb_factory: Callable[..., MariaDBServer], load_handler: Loader, capsys: pytest.CaptureFixture[str]
) -> None:
    doomed = mariadb_factory(max_connections=10)
    app = load_handler(password_env(doomed))
    assert invoke(app)[0] == 200
    doomed.stop()
    capsys.readouterr()

    status, body, _ = invoke(app)

    assert (status, body) == (503, {"error": "database unavailable", "code": 2003})  # the reconnect was refused
    assert app.STORE.connection_id is None
    messages = [line["message"] for line in log_lines(capsys.readouterr().out)]
    assert messages == ["db connection lost, reconnecting", "request"]


@pytest.fixture
def borrow_timeout_proxy() -> Iterator[int]:
    """A MySQL-protocol endpoint (mysql-mimic) that, like RDS Proxy whose pool is exhausted for
    ConnectionBorrowTimeout, accepts the client but answers every statement with error 9501."""
    from mysql_mimic import MysqlServer, Session
    from mysql_mimic.errors import MysqlError

    class BorrowTimeout(Session):
        async def query(self, expression: Any, sql: str, attrs: dict[str, str]) -> Any:
            raise MysqlError("Timed-out waiting to acquire database connection", code=9501)

    loop = asyncio.new_event_loop()
    server = MysqlServer(session_factory=BorrowTimeout)
    loop.run_until_complete(server.start_server(host="127.0.0.1", port=0))
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield server.sockets()[0].getsockname()[1]
    finally:
        loop.call_soon_threadsafe(server.close)
        asyncio.run_coroutine_threadsafe(server.wait_closed(), loop).result(timeout=5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)
        loop.close()


def test_proxy_borrow_timeout_on_a_live_connection_gives_503_9501(
    borrow_timeout_proxy: int, load_handler: Loader
) -> None:
    app = load_handler(
        {
            "DB_HOST": "127.0.0.1",
            "DB_PORT": str(borrow_timeout_proxy),
            "DB_NAME": "app",
            "DB_USER": "app",
            "DB_PASSWORD": "",
            "DB_AUTH": "password",
        }
    )
    status, body, _ = invoke(app)
    assert (status, body) == (503, {"error": "database unavailable", "code": 9501})
    assert app.STORE.connection_id is None  # dropped, so the next invocation starts afresh


def test_unreachable_host_gives_503_and_retries_next_time(load_handler: Loader) -> None:
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    app = load_handler(
        {
            "DB_HOST": "127.0.0.1",
            "DB_PORT": str(closed_port),
            "DB_NAME": "app",
            "DB_USER": "app",
            "DB_PASSWORD": "x",
            "DB_AUTH": "password",
            "DB_CONNECT_TIMEOUT": "1",
        }
    )
    for _ in range(2):
        status, body, _ = invoke(app)
        assert (status, body) == (503, {"error": "database unavailable", "code": 2003})
        assert app.STORE.connection_id is None


def test_wrong_password_gives_503_access_denied(db: MariaDBServer, load_handler: Loader) -> None:
    app = load_handler(password_env(db, DB_PASSWORD="not-the-password"))
    status, body, _ = invoke(app)
    assert (status, body) == (503, {"error": "database unavailable", "code": 1045})


def test_sql_error_gives_500_and_keeps_the_connection(db: MariaDBServer, load_handler: Loader) -> None:
    env = password_env(db)
    with db.app_connect() as conn:  # a table of that name with an unexpected schema
        conn.cursor().execute(f"CREATE TABLE `{env['DB_TABLE']}` (other INT)")
    app = load_handler(env)
    status, body, _ = invoke(app)
    assert (status, body) == (500, {"error": "internal error"})
    first_id = app.STORE.connection_id
    assert first_id is not None
    assert invoke(app)[0] == 500
    assert app.STORE.connection_id == first_id


def test_api_gateway_request_id_makes_a_repeated_invocation_store_nothing_new(
    db: MariaDBServer, load_handler: Loader
) -> None:
    app = load_handler(password_env(db))
    event = {**GET, "requestContext": {**GET["requestContext"], "requestId": "JKJaXmPLvHcESHA="}}
    status, first, _ = invoke(app, event, request_id="invocation-1")
    assert (status, first["count"]) == (200, 1)
    status, again, _ = invoke(app, event, request_id="invocation-2")  # the runtime retried the same request
    assert (status, again["count"], again["inserted"], again["times"]) == (200, 1, first["inserted"], first["times"])
    status, other, _ = invoke(app)
    assert (status, other["count"]) == (200, 2)


class LambdaContext:
    """What the Lambda runtime passes: the request id and the time left until the function timeout."""

    def __init__(self, seconds: float) -> None:
        self.aws_request_id = f"req-{uuid.uuid4()}"
        self._end = time.monotonic() + seconds

    def get_remaining_time_in_millis(self) -> int:
        return int((self._end - time.monotonic()) * 1000)


def test_hung_database_gives_503_before_the_function_timeout_and_stores_nothing(
    mariadb_factory: Callable[..., MariaDBServer], load_handler: Loader
) -> None:
    hung = mariadb_factory(max_connections=10)
    env = password_env(hung, DB_DEADLINE_MARGIN_MS="500")
    app = load_handler(env)
    assert app.lambda_handler(GET, LambdaContext(10))["statusCode"] == 200  # warm: schema and connection ready
    assert hung.pid is not None
    os.kill(hung.pid, signal.SIGSTOP)
    try:
        context = LambdaContext(3.0)  # a 3 s function timeout
        started = time.monotonic()
        response = app.lambda_handler(GET, context)
        elapsed = time.monotonic() - started
    finally:
        os.kill(hung.pid, signal.SIGCONT)
    assert response["statusCode"] == 503 and json.loads(response["body"])["code"] == 3024  # the read timed out
    assert elapsed < 3.0 and context.get_remaining_time_in_millis() > 0  # the handler answered, not the runtime
    with hung.admin_connect(database=hung.database) as admin:
        cursor = admin.cursor()
        cursor.execute(f"SELECT request_id FROM `{env['DB_TABLE']}` WHERE request_id = %s", (context.aws_request_id,))
        assert cursor.fetchall() == []  # a 503 stored nothing
    status, body, _ = invoke(app)
    assert (status, body["count"]) == (200, 2)  # the next request reconnects


def test_table_dropped_behind_our_back_is_recreated_on_the_next_request(
    db: MariaDBServer, load_handler: Loader
) -> None:
    env = password_env(db)
    app = load_handler(env)
    assert invoke(app)[0] == 200
    with db.app_connect() as conn:
        conn.cursor().execute(f"DROP TABLE `{env['DB_TABLE']}`")
    assert invoke(app)[0] == 500  # this request fails (ER_NO_SUCH_TABLE) ...
    status, body, _ = invoke(app)  # ... the next one creates the table again
    assert (status, body["count"]) == (200, 1)


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"])
def test_other_methods_get_405_without_touching_the_database(
    method: str, db: MariaDBServer, load_handler: Loader
) -> None:
    app = load_handler(password_env(db))
    status, body, headers = invoke(app, {"requestContext": {"http": {"method": method}}})
    assert status == 405
    assert headers["Allow"] == "GET"
    assert body == {"error": f"method {method} not allowed"}
    assert app.STORE.connection_id is None


def test_non_http_event_gives_400(db: MariaDBServer, load_handler: Loader) -> None:
    app = load_handler(password_env(db))
    for event in ({"foo": "bar"}, {"requestContext": "junk"}, {"requestContext": {"http": ["GET"]}}, None, []):
        assert app.lambda_handler(event, None)["statusCode"] == 400
    assert app.STORE.connection_id is None


def test_logs_are_json_lines_with_request_id_and_latency_and_no_secret(
    db: MariaDBServer, load_handler: Loader, capsys: pytest.CaptureFixture[str]
) -> None:
    app = load_handler(password_env(db))
    capsys.readouterr()
    invoke(app, request_id="abc-123")
    invoke(app, {"requestContext": {"http": {"method": "POST"}}}, request_id="def-456")
    out = capsys.readouterr().out
    assert db.app_password not in out
    lines = log_lines(out)  # every line parses as JSON
    requests = [line for line in lines if line["message"] == "request"]
    assert [(r["request_id"], r["method"], r["status"], r["cold_start"]) for r in requests] == [
        ("abc-123", "GET", 200, True),
        ("def-456", "POST", 405, False),
    ]
    assert all(isinstance(r["latency_ms"], float) and r["latency_ms"] >= 0 for r in requests)
    connected = [line for line in lines if line["message"] == "db connected"]
    # A fresh schema: the first connection migrates it and is closed, the second one is kept.
    assert len(connected) == 2 and connected[-1]["connection_id"] == app.STORE.connection_id
    (schema,) = [line for line in lines if line["message"] == "schema checked"]
    assert (schema["found_version"], schema["applied_versions"]) == (0, [1, 2, 3])


def test_503_is_logged_with_errno(load_handler: Loader, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    app = load_handler(
        {
            "DB_HOST": "127.0.0.1",
            "DB_PORT": str(closed_port),
            "DB_NAME": "d",
            "DB_USER": "u",
            "DB_PASSWORD": "pw",
            "DB_AUTH": "password",
        }
    )
    capsys.readouterr()
    invoke(app, request_id="r-503")
    (line,) = [entry for entry in log_lines(capsys.readouterr().out) if entry["message"] == "request"]
    assert (line["level"], line["status"], line["errno"], line["request_id"]) == ("WARNING", 503, 2003, "r-503")


# -- configuration ------------------------------------------------------------------------------------
BASE_ENV = {"DB_HOST": "proxy.example", "DB_NAME": "app", "DB_USER": "app", "AWS_REGION": "ap-northeast-1"}


@pytest.mark.parametrize(
    ("overrides", "removed", "fragment"),
    [
        ({}, "DB_HOST", "DB_HOST is required"),
        ({}, "DB_NAME", "DB_NAME is required"),
        ({}, "DB_USER", "DB_USER is required"),
        ({"DB_PORT": "abc"}, None, "DB_PORT='abc' is not an integer"),
        ({"DB_PORT": "70000"}, None, "DB_PORT=70000 is out of range; allowed 1..65535"),
        ({"DB_TABLE": "t; DROP TABLE x"}, None, "DB_TABLE='t; DROP TABLE x' is not a safe identifier"),
        ({"DB_TABLE": "a`b"}, None, "DB_TABLE='a`b' is not a safe identifier"),
        ({"DB_AUTH": "kerberos"}, None, "DB_AUTH='kerberos' is not supported; allowed iam, password"),
        ({"DB_AUTH": "password"}, None, "DB_PASSWORD must be set when DB_AUTH=password"),
        ({"RESPONSE_LIMIT": "0"}, None, "RESPONSE_LIMIT=0 is out of range; allowed 1..1000"),
        ({"RESPONSE_LIMIT": "1001"}, None, "RESPONSE_LIMIT=1001 is out of range; allowed 1..1000"),
        ({"DB_CONNECT_TIMEOUT": "0"}, None, "DB_CONNECT_TIMEOUT=0.0 is out of range"),
        ({"DB_CONNECT_TIMEOUT": "nan"}, None, "DB_CONNECT_TIMEOUT='nan' is not a number"),
        ({}, "AWS_REGION", "AWS_REGION must be set when DB_AUTH=iam"),
        ({"DB_SSL_CA": ""}, None, "DB_SSL_CA must not be empty when DB_AUTH=iam"),
        ({"DB_SSL_VERIFY_IDENTITY": "maybe"}, None, "DB_SSL_VERIFY_IDENTITY='maybe' is not a boolean"),
        ({"LOG_LEVEL": "LOUD"}, None, "LOG_LEVEL='LOUD' is not supported"),
        ({"DB_DEADLINE_MARGIN_MS": "10"}, None, "DB_DEADLINE_MARGIN_MS=10 is out of range; allowed 50..5000"),
        ({"DB_DEADLINE_MARGIN_MS": "x"}, None, "DB_DEADLINE_MARGIN_MS='x' is not an integer"),
        ({"DB_TABLE": "t" * 57}, None, "is not a safe identifier; allowed [A-Za-z_][A-Za-z0-9_]{0,55}"),
    ],
)
def test_invalid_configuration_is_rejected_naming_the_variable(
    overrides: dict[str, str], removed: str | None, fragment: str
) -> None:
    env = {**BASE_ENV, **overrides}
    if removed:
        del env[removed]
    with pytest.raises(ConfigError) as error:
        Settings.from_env(env)
    assert fragment in str(error.value)


def test_defaults_for_cloud_iam_mode() -> None:
    settings = Settings.from_env(BASE_ENV)
    assert (settings.auth, settings.port, settings.table, settings.response_limit, settings.connect_timeout) == (
        "iam",
        3306,
        "access_times",
        100,
        5.0,
    )
    assert settings.ssl_ca == LAMBDA_CA_BUNDLE and settings.ssl_verify_identity
    assert settings.password is None


def test_password_never_appears_in_settings_repr() -> None:
    settings = Settings.from_env({**BASE_ENV, "DB_AUTH": "password", "DB_PASSWORD": "s3cret-value"})
    assert "s3cret-value" not in repr(settings)
    assert settings.ssl_ca is None  # local mode: no TLS unless DB_SSL_CA is given


def test_import_fails_fast_on_bad_configuration(load_handler: Loader) -> None:
    with pytest.raises(ConfigError, match="DB_HOST is required"):
        load_handler({"DB_NAME": "app", "DB_USER": "app", "DB_AUTH": "password", "DB_PASSWORD": "x"})


# -- IAM mode -----------------------------------------------------------------------------------------
def test_iam_token_is_signed_locally_for_the_proxy_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    from handler.app_iam import IamTokenProvider

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    token = IamTokenProvider("proxy.example", 3306, "app_user", "ap-northeast-1")()
    assert token.startswith("proxy.example:3306/?")
    assert "Action=connect" in token and "DBUser=app_user" in token
    assert "X-Amz-Credential=AKIDEXAMPLE%2F" in token and "%2Fap-northeast-1%2Frds-db%2Faws4_request" in token


def test_iam_mode_connects_with_clear_password_over_verified_tls(
    load_handler: Loader, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = load_handler({**BASE_ENV, "DB_PORT": "3307"})
    import mysql.connector

    seen: dict[str, Any] = {}

    def refuse(**params: Any) -> None:  # capture what the handler would send, then fail like a dead proxy
        seen.update(params)
        raise mysql.connector.errors.InterfaceError(errno=2003, msg="Can't connect")

    monkeypatch.setattr(mysql.connector, "connect", refuse)
    app.STORE._password_provider = lambda: "signed-token"
    status, body, _ = invoke(app)
    assert (status, body["code"]) == (503, 2003)
    assert seen["password"] == "signed-token"
    assert seen["auth_plugin"] == "mysql_clear_password"
    assert (seen["ssl_ca"], seen["ssl_verify_cert"], seen["ssl_verify_identity"]) == (LAMBDA_CA_BUNDLE, True, True)
    assert (seen["host"], seen["port"], seen["use_pure"], seen["autocommit"]) == ("proxy.example", 3307, True, True)


def test_iam_mode_without_credentials_gives_503_not_a_crash(
    load_handler: Loader, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # never reach for the instance metadata service
    import boto3

    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)  # no credentials cached by an earlier test
    app = load_handler({**BASE_ENV, "DB_HOST": "127.0.0.1", "DB_PORT": "9"})
    status, body, _ = invoke(app)
    assert (status, body) == (503, {"error": "database unavailable", "code": None})


def test_password_mode_import_does_not_load_boto3() -> None:
    code = "import sys, handler.app; print('boto3' in sys.modules, 'botocore' in sys.modules)"
    env = {**os.environ, "DB_HOST": "h", "DB_NAME": "d", "DB_USER": "u", "DB_AUTH": "password", "DB_PASSWORD": "p"}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.split() == ["False", "False"]
