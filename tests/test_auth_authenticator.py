"""The authenticator facade built from deployed state, runtime credentials, and the resolver shim."""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path

import pytest

from local.data_plane.auth import resolver_shim
from local.data_plane.auth.authenticator import (
    IamAuthenticator,
    IamAuthSettings,
    RuntimeCredentials,
    clear_text_password,
)
from local.data_plane.auth.credentials import CredentialIssuer, IssuerSettings
from local.data_plane.auth.errors import (
    ER_ACCESS_DENIED,
    MALFORMED,
    NOT_AUTHORIZED,
    WRONG_HOST,
    WRONG_USER,
    AuthError,
)
from local.data_plane.auth.local_ca import LocalCaSettings
from local.data_plane.auth.resolver_shim import AddressOverride
from modules.validation import SettingsError
from tests.auth_support import DB_USER, ENDPOINT, PRX_ID, ROLE_ARN, grant, signed_token, state


def _authenticator(tmp_path: Path, deployed: dict | None = None) -> IamAuthenticator:
    settings = IamAuthSettings.from_state(
        deployed or state(),
        ca=LocalCaSettings(directory=tmp_path / "ca"),
        issuer=IssuerSettings(key_path=tmp_path / "auth" / "issuer.key"),
    )
    return IamAuthenticator(settings)


def _runtime_token(auth: IamAuthenticator, role_arn: str = ROLE_ARN, **token_args) -> str:
    env = RuntimeCredentials(auth.issuer, role_arn, "sms-local-api").environment()
    resolved = auth.issuer.resolve(env["AWS_ACCESS_KEY_ID"], env["AWS_SESSION_TOKEN"])
    return signed_token(resolved, **token_args)


def test_settings_come_from_state(tmp_path: Path) -> None:
    settings = _authenticator(tmp_path).settings
    assert (settings.proxy.endpoint, settings.port, settings.db_user) == (ENDPOINT, 3306, DB_USER)
    assert settings.proxy.resource_id == PRX_ID
    assert settings.policies.role_arn == ROLE_ARN
    path = tmp_path / "terraform.local.tfstate"
    path.write_text(json.dumps(state()))
    assert IamAuthSettings.from_state_file(path).proxy == settings.proxy


def test_a_container_token_is_admitted(tmp_path: Path) -> None:
    auth = _authenticator(tmp_path)
    principal = auth.check(DB_USER, _runtime_token(auth), host=ENDPOINT, port=3306)
    assert principal.db_user == DB_USER and principal.role_arn == ROLE_ARN
    assert principal.caller_arn.endswith(":assumed-role/sms-local-api-exec/sms-local-api")


def test_each_check_has_its_reason(tmp_path: Path) -> None:
    auth = _authenticator(tmp_path)
    token = _runtime_token(auth)
    cases = [
        (lambda: auth.check(DB_USER, token, host="other.example"), WRONG_HOST),
        (lambda: auth.check(DB_USER, token, port=3307), WRONG_HOST),
        (lambda: auth.check("root", _runtime_token(auth, user="root")), WRONG_USER),
        (lambda: auth.check(DB_USER, "not-a-token"), MALFORMED),
        (
            lambda: auth.check(DB_USER, _runtime_token(auth, role_arn="arn:aws:iam::123456789012:role/other")),
            NOT_AUTHORIZED,
        ),
    ]
    for attempt, reason in cases:
        with pytest.raises(AuthError) as caught:
            attempt()
        assert caught.value.reason == reason
        assert reason in caught.value.client_message(DB_USER)


@pytest.mark.parametrize(
    "inline",
    [[], [grant(effect="Deny"), grant()], [grant("arn:aws:rds-db:ap-northeast-1:123456789012:dbuser:prx-0other/*")]],
    ids=["no-grant", "explicit-deny", "other-proxy"],
)
def test_a_valid_token_without_the_grant_is_not_authorized(tmp_path: Path, inline: list) -> None:
    auth = _authenticator(tmp_path, state(inline=inline))
    with pytest.raises(AuthError) as caught:
        auth.check(DB_USER, _runtime_token(auth))
    assert caught.value.reason == NOT_AUTHORIZED


def test_each_container_gets_fresh_credentials(tmp_path: Path) -> None:
    auth = _authenticator(tmp_path)
    runtime = RuntimeCredentials(CredentialIssuer(auth.settings.issuer), ROLE_ARN, "sms-local-api")
    first, second = runtime.environment(), runtime.environment()
    assert first["AWS_ACCESS_KEY_ID"] != second["AWS_ACCESS_KEY_ID"]
    with pytest.raises(SettingsError, match="role_arn"):
        RuntimeCredentials(auth.issuer, "not-an-arn", "fn")


def test_clear_text_password_and_error_text() -> None:
    assert clear_text_password(b"host:3306/?Action=connect\x00") == "host:3306/?Action=connect"
    with pytest.raises(AuthError, match="malformed token"):
        clear_text_password("é".encode())
    assert ER_ACCESS_DENIED == 1045
    with pytest.raises(ValueError, match="allowed one of"):
        AuthError("nope")


def test_settings_are_validated(tmp_path: Path) -> None:
    settings = _authenticator(tmp_path).settings
    with pytest.raises(SettingsError, match="port=70000"):
        IamAuthSettings(proxy=settings.proxy, port=70000, db_user=DB_USER, policies=settings.policies)
    with pytest.raises(SettingsError, match="db_user"):
        IamAuthSettings(proxy=settings.proxy, port=3306, db_user="", policies=settings.policies)


# --- resolver shim -------------------------------------------------------------------------------------
def test_resolver_shim_routes_the_endpoint_to_loopback() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    accepted: list[bool] = []
    thread = threading.Thread(target=lambda: accepted.append(bool(listener.accept())), daemon=True)
    thread.start()
    with pytest.raises(OSError):
        socket.getaddrinfo(ENDPOINT, 3306)  # not resolvable without the shim
    resolver_shim.install([AddressOverride(ENDPOINT, 3306, port)])
    try:
        with socket.create_connection((ENDPOINT.upper(), 3306), timeout=5) as connection:
            assert connection.getpeername() == ("127.0.0.1", port)
        assert socket.getaddrinfo(ENDPOINT, 443)[0][4] == ("127.0.0.1", 443)  # the name resolves for any port
        assert socket.getaddrinfo("127.0.0.1", 80)[0][4] == ("127.0.0.1", 80)  # other names untouched
    finally:
        resolver_shim.uninstall()
        listener.close()
    thread.join(5)
    assert accepted == [True]
    with pytest.raises(OSError):
        socket.getaddrinfo(ENDPOINT, 3306)


def test_address_overrides_encode_and_validate() -> None:
    override = AddressOverride(ENDPOINT, 3306, 40123)
    assert AddressOverride.decode(override.encode()) == override
    with pytest.raises(SettingsError, match="target_host"):
        AddressOverride(ENDPOINT, 3306, 1, target_host="localhost")
    with pytest.raises(SettingsError, match="address_override"):
        AddressOverride.decode("no-port=127.0.0.1")
