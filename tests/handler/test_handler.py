"""The request function against a real private MariaDB, logged in as the application user (password mode, as in
the local target), on tables the migrator created."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from local.data_plane.mariadb import MariaDBServer
from tests.handler.handler_support import (
    GET,
    Accounts,
    HandlerLoader,
    admin_query,
    create_master,
    invoke,
    log_lines,
    migrate,
    new_table,
    stored,
)
from tests.sync_support import stop_process


@pytest.fixture(scope="module")
def module_db(mariadb_factory: Callable[..., MariaDBServer]) -> MariaDBServer:
    """A server of this module only, so connection counts are not disturbed by other modules."""
    return mariadb_factory(max_connections=20)


@pytest.fixture(scope="module")
def accounts(module_db: MariaDBServer) -> Accounts:
    return create_master(module_db)


@pytest.fixture
def db(module_db: MariaDBServer) -> MariaDBServer:
    """The module's server once the connections closed by earlier tests are really gone."""
    module_db.wait_for_connections(at_most=0)
    return module_db


@pytest.fixture
def load_handler(monkeypatch: pytest.MonkeyPatch) -> Iterator[HandlerLoader]:
    loader = HandlerLoader(monkeypatch)
    yield loader
    loader.close()


def app_env(db: MariaDBServer, accounts: Accounts, migrated: bool = True, **overrides: str) -> dict[str, str]:
    """The request function's environment: the application user and a new table, migrated unless told not to."""
    env = {
        "DB_HOST": db.host,
        "DB_PORT": str(db.port),
        "DB_NAME": db.database,
        "DB_USER": accounts.app_user,
        "DB_PASSWORD": accounts.app_password,
        "DB_AUTH": "password",
        "DB_TABLE": new_table(),
    }
    env.update(overrides)
    if migrated:
        migrate(db, accounts, env["DB_TABLE"])
    return env


def parse_iso_utc(text: str) -> datetime:
    assert text.endswith("Z"), text
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ")


def global_status(db: MariaDBServer, *names: str) -> dict[str, int]:
    rows = db._query_as_monitor(f"SHOW GLOBAL STATUS WHERE Variable_name IN ({', '.join(['%s'] * len(names))})", names)
    return {name: int(value) for name, value in rows}


def test_get_records_each_access_and_lists_newest_first(
    db: MariaDBServer, accounts: Accounts, load_handler: HandlerLoader
) -> None:
    app = load_handler(app_env(db, accounts, RESPONSE_LIMIT="3"))
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


def test_a_warm_get_is_one_autocommitted_statement_with_no_session_state(
    db: MariaDBServer, accounts: Accounts, load_handler: HandlerLoader
) -> None:
    app = load_handler(app_env(db, accounts))
    assert invoke(app)[0] == 200  # cold: connect (the driver's SET NAMES/autocommit), the schema version check
    names = ("Questions", "Com_call_procedure", "Com_insert", "Com_update", "Com_select", "Com_begin", "Com_commit")
    names += ("Com_set_option", "Com_stmt_prepare", "Com_create_table", "Com_alter_table")
    before = global_status(db, *names)
    for _ in range(4):
        assert invoke(app)[0] == 200
    after = global_status(db, *names)
    delta = {name: after[name] - before[name] for name in names}
    # Questions counts the statements clients send (not those inside a procedure): one per GET, plus the SHOW
    # STATUS that reads the counters. The procedure's own statements are counted by the Com_ counters: its INSERT,
    # counter UPDATE, two SELECTs, START TRANSACTION and COMMIT. No SET, no prepared statement, no DDL.
    assert delta == {
        "Questions": 4 + 1,
        "Com_call_procedure": 4,
        "Com_insert": 4,
        "Com_update": 4,
        "Com_select": 8,
        "Com_begin": 4,
        "Com_commit": 4,
        "Com_set_option": 0,
        "Com_stmt_prepare": 0,
        "Com_create_table": 0,
        "Com_alter_table": 0,
    }


def test_connection_is_reused_across_warm_invocations(
    db: MariaDBServer, accounts: Accounts, load_handler: HandlerLoader
) -> None:
    app = load_handler(app_env(db, accounts))
    assert app.STORE.connection_id is None  # nothing opened at import
    invoke(app)
    first_id = app.STORE.connection_id
    for _ in range(3):
        assert invoke(app)[0] == 200
    assert app.STORE.connection_id == first_id
    assert db.connection_ids(accounts.app_user) == [first_id]


def test_a_connection_the_server_closed_while_idle_is_replaced_before_anything_is_sent(
    db: MariaDBServer, accounts: Accounts, load_handler: HandlerLoader, capsys: pytest.CaptureFixture[str]
) -> None:
    app = load_handler(app_env(db, accounts))
    invoke(app)
    old_id = app.STORE.connection_id
    assert db.kill_connections(accounts.app_user) == 1
    capsys.readouterr()

    status, body, _ = invoke(app)

    assert status == 200 and body["count"] == 2  # stored exactly once
    assert app.STORE.connection_id not in (None, old_id)
    assert db.connection_ids(accounts.app_user) == [app.STORE.connection_id]
    warnings = [line["message"] for line in log_lines(capsys.readouterr().out) if line["level"] == "WARNING"]
    assert warnings == ["db connection closed while idle, reconnecting"]


def test_too_many_connections_gives_503_with_errno_1040(
    mariadb_factory: Callable[..., MariaDBServer], load_handler: HandlerLoader
) -> None:
    small = mariadb_factory(max_connections=10)
    owners = create_master(small)
    app = load_handler(app_env(small, owners))
    held: list = []
    try:
        held.extend(small.app_connect() for _ in range(10))  # every slot taken by an unprivileged user
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


def test_server_gone_while_warm_gives_503_without_sending_anything(
    mariadb_factory: Callable[..., MariaDBServer], load_handler: HandlerLoader, capsys: pytest.CaptureFixture[str]
) -> None:
    doomed = mariadb_factory(max_connections=10)
    app = load_handler(app_env(doomed, create_master(doomed)))
    assert invoke(app)[0] == 200
    doomed.stop()
    capsys.readouterr()

    status, body, _ = invoke(app)

    assert (status, body) == (503, {"error": "database unavailable", "code": 2003})  # the reconnect was refused
    assert app.STORE.connection_id is None
    messages = [line["message"] for line in log_lines(capsys.readouterr().out)]
    assert messages == ["db connection closed while idle, reconnecting", "request"]


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


PROXY_ENV = {"DB_HOST": "127.0.0.1", "DB_NAME": "app", "DB_USER": "app_user", "DB_PASSWORD": "", "DB_AUTH": "password"}


def test_proxy_borrow_timeout_on_a_live_connection_gives_503_9501(
    borrow_timeout_proxy: int, load_handler: HandlerLoader
) -> None:
    app = load_handler({**PROXY_ENV, "DB_PORT": str(borrow_timeout_proxy)})
    status, body, _ = invoke(app)
    assert (status, body) == (503, {"error": "database unavailable", "code": 9501})
    assert app.STORE.connection_id is None  # dropped, so the next invocation starts afresh


def test_unreachable_host_gives_503_and_retries_next_time(load_handler: HandlerLoader) -> None:
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    app = load_handler({**PROXY_ENV, "DB_PORT": str(closed_port), "DB_CONNECT_TIMEOUT": "1"})
    for _ in range(2):
        status, body, _ = invoke(app)
        assert (status, body) == (503, {"error": "database unavailable", "code": 2003})
        assert app.STORE.connection_id is None


def test_wrong_password_gives_503_access_denied(
    db: MariaDBServer, accounts: Accounts, load_handler: HandlerLoader
) -> None:
    app = load_handler(app_env(db, accounts, DB_PASSWORD="not-the-password"))
    status, body, _ = invoke(app)
    assert (status, body) == (503, {"error": "database unavailable", "code": 1045})


def test_a_server_error_rolls_the_request_back_is_a_500_and_keeps_the_connection(
    db: MariaDBServer, accounts: Accounts, load_handler: HandlerLoader
) -> None:
    env = app_env(db, accounts)
    app = load_handler(env)
    assert invoke(app)[0] == 200
    table = env["DB_TABLE"]
    admin_query(
        db,
        f"CREATE TRIGGER `{table}_refuse` BEFORE UPDATE ON `{table}_count` FOR EACH ROW "
        "SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'refused by a trigger'",
    )
    first_id = app.STORE.connection_id
    status, body, _ = invoke(app)  # the row is inserted, then the counter update fails inside the procedure
    assert (status, body) == (500, {"error": "internal error"})
    assert app.STORE.connection_id == first_id
    assert stored(db, table)[:2] == (1, 1)  # the procedure's exit handler rolled the INSERT back
    admin_query(db, f"DROP TRIGGER `{table}_refuse`")
    assert invoke(app)[1]["count"] == 2


def test_api_gateway_request_id_makes_a_repeated_invocation_store_nothing_new(
    db: MariaDBServer, accounts: Accounts, load_handler: HandlerLoader
) -> None:
    app = load_handler(app_env(db, accounts))
    event = {**GET, "requestContext": {**GET["requestContext"], "requestId": "JKJaXmPLvHcESHA="}}
    status, first, _ = invoke(app, event, request_id="invocation-1")
    assert (status, first["count"]) == (200, 1)
    status, again, _ = invoke(app, event, request_id="invocation-2")  # the runtime retried the same request
    assert (status, again["count"], again["inserted"], again["times"]) == (200, 1, first["inserted"], first["times"])
    status, other, _ = invoke(app)
    assert (status, other["count"]) == (200, 2)


class LambdaContext:
    """What the Lambda runtime passes: the request id and the time left until the function timeout."""

    def __init__(self, seconds: float, request_id: str | None = None) -> None:
        self.aws_request_id = request_id or f"req-{uuid.uuid4()}"
        self._end = time.monotonic() + seconds

    def get_remaining_time_in_millis(self) -> int:
        return int((self._end - time.monotonic()) * 1000)


def test_hung_database_gets_an_answer_before_the_function_timeout(
    mariadb_factory: Callable[..., MariaDBServer], load_handler: HandlerLoader
) -> None:
    """The GET was sent and never answered, and the retry cannot reach the server: 502 (it may have been stored),
    still before the function timeout; once the server is back, the same request is answered from its row."""
    hung = mariadb_factory(max_connections=10)
    env = app_env(hung, create_master(hung), DB_DEADLINE_MARGIN_MS="500")
    app = load_handler(env)
    assert app.lambda_handler(GET, LambdaContext(10))["statusCode"] == 200  # warm: schema and connection ready
    assert hung.pid is not None
    stop_process(hung.pid)  # really stopped: the GET below reaches a server that cannot answer
    try:
        context = LambdaContext(3.0)  # a 3 s function timeout
        started = time.monotonic()
        response = app.lambda_handler(GET, context)
        elapsed = time.monotonic() - started
    finally:
        os.kill(hung.pid, signal.SIGCONT)
    assert response["statusCode"] == 502, response
    assert json.loads(response["body"])["error"] == "outcome unknown: the time may have been stored"
    assert elapsed < 3.0 and context.get_remaining_time_in_millis() > 0  # the handler answered, not the runtime

    again = app.lambda_handler(GET, LambdaContext(10, context.aws_request_id))  # the client retries the request
    assert again["statusCode"] == 200
    rows, counted, ids = stored(hung, env["DB_TABLE"])
    assert ids.count(context.aws_request_id) == 1 and rows == counted == json.loads(again["body"])["count"]


def test_the_request_path_never_migrates_and_serves_once_the_migrator_ran(
    db: MariaDBServer, accounts: Accounts, load_handler: HandlerLoader, capsys: pytest.CaptureFixture[str]
) -> None:
    env = app_env(db, accounts, migrated=False)
    migrate(db, accounts, new_table())  # the application user exists, but this table's schema does not
    app = load_handler(env)
    ddl = ("Com_create_table", "Com_alter_table", "Com_create_procedure", "Com_grant")
    before = global_status(db, *ddl)
    capsys.readouterr()

    answers = [invoke(app) for _ in range(3)]

    assert [(status, body) for status, body, _ in answers] == [(503, {"error": "database schema not migrated yet"})] * 3
    assert all(headers["Retry-After"] == "1" for _, _, headers in answers)
    lines = log_lines(capsys.readouterr().out)
    complaints = [line["message"] for line in lines if line["message"].startswith("schema not ready")]
    assert len(complaints) == 1  # one line per container, not one per request
    assert f"`{env['DB_TABLE']}_schema` (error 1142)" in complaints[0]  # no grant yet: the table is not even visible
    assert complaints[0].endswith("answering 503 until the migrator (handler.migrator.lambda_handler) has run")
    assert global_status(db, *ddl) == before  # nothing was created

    migrate(db, accounts, env["DB_TABLE"])
    status, body, _ = invoke(app)  # the same container checks again and serves
    assert (status, body["count"]) == (200, 1)


def test_a_schema_behind_this_code_is_a_503_naming_both_versions(
    db: MariaDBServer, accounts: Accounts, load_handler: HandlerLoader, capsys: pytest.CaptureFixture[str]
) -> None:
    env = app_env(db, accounts)
    admin_query(db, f"DELETE FROM `{env['DB_TABLE']}_schema` WHERE version = 4")  # as before the migrator ran
    app = load_handler(env)
    capsys.readouterr()
    assert invoke(app)[:2] == (503, {"error": "database schema not migrated yet"})
    (complaint,) = [line for line in log_lines(capsys.readouterr().out) if line["message"].startswith("schema")]
    assert complaint["level"] == "WARNING"
    assert complaint["message"].startswith("schema not ready: schema version 3 is behind 4;")
    migrate(db, accounts, env["DB_TABLE"])
    assert invoke(app)[0] == 200


def test_a_procedure_dropped_behind_our_back_is_a_503_until_the_migrator_restores_it(
    db: MariaDBServer, accounts: Accounts, load_handler: HandlerLoader
) -> None:
    env = app_env(db, accounts)
    app = load_handler(env)
    assert invoke(app)[0] == 200
    admin_query(db, f"DROP PROCEDURE `{env['DB_TABLE']}_store`")
    assert invoke(app)[:2] == (503, {"error": "database schema not migrated yet"})  # ER_SP_DOES_NOT_EXIST
    assert stored(db, env["DB_TABLE"])[:2] == (1, 1)

    result = migrate(db, accounts, env["DB_TABLE"])

    assert result["applied"] == [4]  # only the procedure's migration ran again
    status, body, _ = invoke(app)
    assert (status, body["count"]) == (200, 2)


def test_logs_are_json_lines_with_request_id_and_latency_and_no_secret(
    db: MariaDBServer, accounts: Accounts, load_handler: HandlerLoader, capsys: pytest.CaptureFixture[str]
) -> None:
    app = load_handler(app_env(db, accounts))
    capsys.readouterr()
    invoke(app, request_id="abc-123")
    invoke(app, {"requestContext": {"http": {"method": "POST"}}}, request_id="def-456")
    invoke(app, path="/nowhere", request_id="ghi-789")
    out = capsys.readouterr().out
    assert accounts.app_password not in out
    lines = log_lines(out)  # every line parses as JSON
    requests = [line for line in lines if line["message"] == "request"]
    assert [(r["request_id"], r["method"], r["path"], r["status"], r["cold_start"]) for r in requests] == [
        ("abc-123", "GET", "/", 200, True),
        ("def-456", "POST", "/", 405, False),
        ("ghi-789", "GET", "/nowhere", 404, False),
    ]
    assert all(isinstance(r["latency_ms"], float) and r["latency_ms"] >= 0 for r in requests)
    (connected,) = [line for line in lines if line["message"] == "db connected"]
    assert connected["connection_id"] == app.STORE.connection_id and connected["tls"] is False
    (schema,) = [line for line in lines if line["message"] == "schema checked"]
    assert schema["schema_version"] == 4


def test_503_is_logged_with_errno(load_handler: HandlerLoader, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    app = load_handler({**PROXY_ENV, "DB_PORT": str(closed_port)})
    capsys.readouterr()
    invoke(app, request_id="r-503")
    (line,) = [entry for entry in log_lines(capsys.readouterr().out) if entry["message"] == "request"]
    assert (line["level"], line["status"], line["errno"], line["request_id"]) == ("WARNING", 503, 2003, "r-503")
