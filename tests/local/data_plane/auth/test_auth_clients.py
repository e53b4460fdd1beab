"""Any MySQL client connects the AWS way with credentials the emulator issued, and hostile logins stay refused.

Real components only: the emulator (IAM, STS, Secrets Manager, the credentials lookup), the RDS Proxy stand-in with
TLS required and IAM auth, MariaDB with a table, and three clients in their own processes (PyMySQL as the reference
experiment uses it, mysql-connector as the handler does, the ``mariadb`` CLI with a token from the AWS CLI), each
reaching the deployed endpoint name and verifying the stand-in's certificate for it.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import time
from unittest import mock

import mysql.connector
import pytest
from botocore.compat import get_current_datetime

from tests.local.client_access.client_access_support import (
    CONNECTOR_CLIENT,
    PYMYSQL_CLIENT,
    TABLE_ROWS,
    Standin,
    mariadb_cli,
    python_client,
    standin,
)
from tests.local.data_plane.auth.auth_support import DB_USER, connect_arn, signed_token
from tests.local.data_plane.auth.emulator_principals_support import (
    Keys,
    assume,
    connect_grant,
    iam_user,
    role,
)

ER_ACCESS_DENIED, ER_HANDSHAKE_ERROR, ER_SECURE_TRANSPORT_REQUIRED, CR_LOST = 1045, 1043, 3159, 2055


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
def principals(emulator) -> dict[str, Keys]:
    """An IAM user's access key and an assumed-role session, both granted rds-db:connect; one principal not."""
    return {
        "iam-user": iam_user(emulator, "developer", connect_grant()),
        "assumed-role": assume(emulator, role(emulator, "db-reader", connect_grant(connect_arn(user="*")))),
        "no-grant": iam_user(emulator, "intern"),
    }


def _rows(result) -> list:
    assert result.returncode == 0, result.stderr
    reply = json.loads(result.stdout.strip().splitlines()[-1])
    assert reply["tls"] in (True, "TLSv1.3", "TLSv1.2")
    return [tuple(row) for row in reply["rows"]]


@pytest.mark.parametrize("principal", ["iam-user", "assumed-role"])
def test_pymysql_with_the_reference_code_reads_the_table(target, principals, principal):
    result = python_client(PYMYSQL_CLIENT, target, principals[principal].environment())
    assert _rows(result) == TABLE_ROWS


@pytest.mark.parametrize("principal", ["iam-user", "assumed-role"])
def test_mysql_connector_reads_the_table(target, principals, principal):
    result = python_client(CONNECTOR_CLIENT, target, principals[principal].environment())
    assert _rows(result) == TABLE_ROWS


@pytest.mark.parametrize("principal", ["iam-user", "assumed-role"])
def test_the_mariadb_cli_with_an_aws_cli_token_reads_the_table(target, principals, principal):
    result = mariadb_cli(target, principals[principal].environment(), "SELECT id, label FROM access_log ORDER BY id")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["id\tlabel", "1\tfirst", "2\tsecond"]


def test_a_principal_without_the_grant_gets_1045_not_authorized_in_every_client(target, principals):
    credentials = principals["no-grant"].environment()
    cli = mariadb_cli(target, credentials, "SELECT 1")
    assert cli.returncode != 0
    assert "ERROR 1045 (28000)" in cli.stderr and "IAM authentication failed: not authorized" in cli.stderr
    for script in (PYMYSQL_CLIENT, CONNECTOR_CLIENT):
        result = python_client(script, target, credentials)
        assert result.returncode != 0 and "1045" in result.stderr and "not authorized" in result.stderr


# --- hostile logins: each refused with its reason, and a normal client gets in right after -------------------
def _connect(target: Standin, password: str, user: str = DB_USER, **options):
    params = dict(
        host="127.0.0.1",
        port=target.port,
        user=user,
        password=password,
        database=target.database,
        use_pure=True,
        auth_plugin="mysql_clear_password",
        ssl_ca=target.ca_file,
        ssl_verify_identity=True,
        connection_timeout=10,
    )
    return mysql.connector.connect(**{**params, **options})


def _expired(keys: Keys) -> str:
    with mock.patch(
        "botocore.auth.get_current_datetime", return_value=get_current_datetime() - datetime.timedelta(minutes=20)
    ):
        return signed_token(keys, port=3306)


def _refusals_after(target: Standin, before: int, timeout_s: float = 5.0) -> int:
    """The stand-in counts a refusal just after the client has read it: poll for it."""
    deadline = time.monotonic() + timeout_s
    while (count := target.server.stats()["auth_failures"]) <= before and time.monotonic() < deadline:
        time.sleep(0.02)
    return count


HOSTILE = {
    "expired-token": (lambda k: _expired(k), {}, ER_ACCESS_DENIED, "IAM authentication failed: expired"),
    "wrong-key": (
        lambda k: signed_token(Keys("AKIA" + "W" * 16, k.secret_access_key)),
        {},
        ER_ACCESS_DENIED,
        "IAM authentication failed: bad signature",
    ),
    "wrong-host": (
        lambda k: signed_token(k, host="other-proxy.proxy-abcdefghijkl.ap-northeast-1.rds.amazonaws.com"),
        {},
        ER_ACCESS_DENIED,
        "IAM authentication failed: wrong host",
    ),
    "wrong-user": (
        lambda k: signed_token(k),
        {"user": "reader"},
        ER_ACCESS_DENIED,
        "IAM authentication failed: wrong user",
    ),
    "empty-token": (lambda k: "", {}, ER_ACCESS_DENIED, "IAM authentication failed: malformed token"),
    "oversized-token": (
        lambda k: signed_token(k) + "&X" * 5000,
        {},
        ER_ACCESS_DENIED,
        "IAM authentication failed: malformed token",
    ),
    # refused unread (error 1043, then closed): a client still writing its packet sees the connection drop
    "oversized-login-packet": (lambda k: "x" * 100_000, {}, (ER_HANDSHAKE_ERROR, CR_LOST), ""),
    "plain-text": (
        lambda k: signed_token(k),
        {"ssl_disabled": True, "auth_plugin": "mysql_native_password"},
        ER_SECURE_TRANSPORT_REQUIRED,
        "TLS is required",
    ),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_a_hostile_login_is_refused_and_a_normal_client_gets_in_afterwards(target, principals, case):
    make_token, options, errno, text = HOSTILE[case]
    keys = principals["iam-user"]
    before = target.server.stats()["auth_failures"]
    with pytest.raises(mysql.connector.Error) as caught:
        _connect(target, make_token(keys), **options).close()
    assert caught.value.errno in (errno if isinstance(errno, tuple) else (errno,)) and text in caught.value.msg
    assert _refusals_after(target, before) == before + 1  # counted as a refused login, not a crash
    with contextlib.closing(_connect(target, signed_token(keys, port=target.port))) as conn:
        cur = conn.cursor()
        cur.execute("SELECT COUNT(*) FROM access_log")
        assert cur.fetchall() == [(len(TABLE_ROWS),)]


def test_the_token_must_name_the_endpoint_not_the_loopback_address(target, principals):
    keys = principals["iam-user"]
    with pytest.raises(mysql.connector.Error) as caught:
        _connect(target, signed_token(keys, host="127.0.0.1", port=target.port)).close()
    assert caught.value.errno == ER_ACCESS_DENIED and "wrong host" in caught.value.msg
