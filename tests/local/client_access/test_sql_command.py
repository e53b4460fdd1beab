"""``python -m local sql``: the mariadb client through the running stand-in, as AWS documents it for RDS Proxy.

The command reads the running ``serve``'s record (written here as ``serve`` writes it), the stack's functions from
the emulator's Lambda API, signs a token with the caller's emulator credentials (or a session of the stack's role),
and runs the real ``mariadb`` client against the endpoint name with the certificate verified for it.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zipfile
from urllib.parse import urlsplit

import pytest

from handler.app_contract import REQUEST_HANDLER
from local.client_access.endpoint_names import hosts_line, resolving
from local.common.local_target import local_state_dir
from local.common.serve_record import ServeRecord, remove_record, write_record
from tests.local.client_access.client_access_support import (
    REPO_ROOT,
    Standin,
    client_environment,
    run_in_endpoint_namespace,
    standin,
)
from tests.local.data_plane.auth.auth_support import DB_USER, ENDPOINT, REGION, connect_arn
from tests.local.data_plane.auth.emulator_principals_support import (
    client,
    connect_grant,
    iam_user,
    role,
)

STACK = f"sqltest{os.getpid()}"


@pytest.fixture(scope="module")
def emulator(emulator) -> str:
    """The shared private emulator (conftest), by its endpoint: what these tests hand to clients."""
    return emulator.endpoint


@pytest.fixture(scope="module")
def target(mariadb_factory, emulator, tmp_path_factory) -> Standin:
    with standin(
        mariadb_factory(max_connections=30, app_user=DB_USER), emulator, tmp_path_factory.mktemp("auth")
    ) as running:
        yield running


@pytest.fixture(scope="module")
def function_role(emulator, target) -> str:
    """The stack's request function in the emulator, as deployed: its role may connect as its DB user."""
    role_arn = role(emulator, "sms-sqltest-api-exec", connect_grant(connect_arn(user=DB_USER)))
    package = io.BytesIO()
    with zipfile.ZipFile(package, "w") as archive:
        archive.writestr("handler/app.py", "def lambda_handler(event, context):\n    return {}\n")
    variables = {"DB_HOST": ENDPOINT, "DB_PORT": "3306", "DB_USER": DB_USER, "DB_NAME": target.database}
    client(emulator, "lambda").create_function(
        FunctionName="sms-sqltest-api",
        Runtime="python3.12",
        Role=role_arn,
        Handler=REQUEST_HANDLER,
        Code={"ZipFile": package.getvalue()},
        Environment={"Variables": variables},
    )
    return role_arn


@pytest.fixture
def record(target, function_role):
    """``serve``'s record for a running stack (this process stands in for ``serve``)."""
    written = ServeRecord(
        stack=STACK,
        pid=os.getpid(),
        http_url="http://127.0.0.1:1/",
        proxy_host="127.0.0.1",
        proxy_port=target.port,
        stats_url="",
        endpoint=ENDPOINT,
        endpoint_port=3306,
        ca_file=target.ca_file,
        db_port=0,
        region=REGION,
    )
    write_record(local_state_dir(), written)
    yield written
    remove_record(local_state_dir(), STACK)


def sql(target: Standin, credentials: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    port = str(urlsplit(target.emulator).port)
    env = {**client_environment(credentials, target.emulator), "PYTHONPATH": str(REPO_ROOT)}
    command = [sys.executable, "-m", "local", "--port", port, "sql", "--stack", STACK, *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, cwd=REPO_ROOT)


DUMMY = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}
QUERY = "SELECT id, label FROM access_log ORDER BY id"


def test_with_an_emulator_users_key_it_runs_the_mariadb_client(target, record, emulator):
    keys = iam_user(emulator, "sql-developer", connect_grant())
    result = sql(target, keys.environment(), "-e", QUERY)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["id\tlabel", "1\tfirst", "2\tsecond"]
    assert f"signing as your credentials ({keys.arn})" in result.stderr


def test_with_the_dummy_credentials_it_signs_as_a_session_of_the_stacks_role(target, record, function_role):
    result = sql(target, DUMMY, "-e", "SELECT CURRENT_USER() IS NOT NULL AS ok")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["ok", "1"]
    assert f"a session of {function_role} assumed through the emulator" in result.stderr
    assert ":assumed-role/sms-sqltest-api-exec/local-sql-" in result.stderr


def test_print_gives_what_another_client_needs_and_the_printed_command_works(target, record):
    result = sql(target, DUMMY, "--print")
    assert result.returncode == 0, result.stderr
    values = dict(line.split(None, 1) for line in result.stdout.splitlines())
    assert (values["host"], values["port"], values["user"]) == (ENDPOINT, str(target.port), DB_USER)
    assert (values["database"], values["ca_file"]) == (target.database, target.ca_file)
    assert values["token"].startswith(f"{ENDPOINT}:3306/?Action=connect&DBUser={DB_USER}&")  # the deployed port
    assert values["hosts_line"].startswith(hosts_line(ENDPOINT, "127.0.0.1"))
    printed = values["mariadb"] + f" --batch -e {json.dumps(QUERY)}"
    env = {**client_environment(DUMMY, target.emulator), "TOKEN": values["token"]}
    run = run_in_endpoint_namespace(["bash", "-c", printed], env)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[1:] == ["1\tfirst", "2\tsecond"]


def test_a_principal_without_the_grant_sees_the_proxys_1045(target, record, emulator):
    result = sql(target, iam_user(emulator, "sql-intern").environment(), "-e", "SELECT 1")
    assert result.returncode != 0
    assert "ERROR 1045 (28000)" in result.stderr and "IAM authentication failed: not authorized" in result.stderr


def test_a_user_no_role_connects_as_is_explained(target, record):
    result = sql(target, DUMMY, "--user", "root", "-e", "SELECT 1")
    assert result.returncode == 1
    assert "no role of the stack connects as this user: pass --role-arn" in result.stderr


def test_without_a_running_serve_it_says_to_start_one(target):
    result = sql(target, DUMMY, "-e", "SELECT 1")
    assert result.returncode == 1
    assert f"no `serve` is running for stack '{STACK}': start it with `python -m local serve`" in result.stderr


def test_a_serve_without_iam_auth_is_explained(target, record):
    write_record(local_state_dir(), ServeRecord(**{**record.__dict__, "endpoint": "", "ca_file": ""}))
    result = sql(target, DUMMY, "-e", "SELECT 1")
    assert result.returncode == 1 and "has no proxy with IAM authentication" in result.stderr


def test_a_name_that_already_resolves_is_used_as_it_is() -> None:
    with resolving("localhost", "127.0.0.1", ["true"]) as argv:
        assert argv == ["true"]
    with resolving(ENDPOINT, "127.0.0.1", ["getent", "hosts", ENDPOINT]) as argv:
        assert argv[0] == "unshare"
        found = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert found.stdout.split() == ["127.0.0.1", ENDPOINT]
    assert subprocess.run(["getent", "hosts", ENDPOINT], capture_output=True).returncode != 0  # system unchanged
