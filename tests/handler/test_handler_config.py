"""The request function's configuration (validated at import, naming the variable) and its IAM auth path."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from handler.app_settings import LAMBDA_CA_BUNDLE, ConfigError, Settings
from modules.project import REPO_ROOT
from tests.handler.handler_support import HandlerLoader, invoke


@pytest.fixture
def load_handler(monkeypatch: pytest.MonkeyPatch) -> Iterator[HandlerLoader]:
    loader = HandlerLoader(monkeypatch)
    yield loader
    loader.close()


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


def test_import_fails_fast_on_bad_configuration(load_handler: HandlerLoader) -> None:
    with pytest.raises(ConfigError, match="DB_HOST is required"):
        load_handler({"DB_NAME": "app", "DB_USER": "app", "DB_AUTH": "password", "DB_PASSWORD": "x"})


# -- IAM mode -----------------------------------------------------------------------------------------------
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
    load_handler: HandlerLoader, monkeypatch: pytest.MonkeyPatch
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
    load_handler: HandlerLoader, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
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
