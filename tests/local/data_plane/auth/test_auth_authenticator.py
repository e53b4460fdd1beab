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
from tests.local.data_plane.auth.auth_support import (
    DB_USER,
    ENDPOINT,
    PRX_ID,
    ROLE_ARN,
    connect_arn,
    grant,
    signed_token,
    state,
)


def _authenticator(tmp_path: Path, deployed: dict | None = None, **overrides) -> IamAuthenticator:
    settings = IamAuthSettings.from_state(
        deployed or state(),
        ca=LocalCaSettings(directory=tmp_path / "ca"),
        issuer=IssuerSettings(key_path=tmp_path / "auth" / "issuer.key"),
        **overrides,
    )
    return IamAuthenticator(settings)


def _runtime_token(auth: IamAuthenticator, role_arn: str = ROLE_ARN, **token_args) -> str:
    env = RuntimeCredentials(auth.issuer, role_arn, "sms-local-api").environment()
    resolved = auth.issuer.resolve(env["AWS_ACCESS_KEY_ID"], env["AWS_SESSION_TOKEN"])
    return signed_token(resolved, **token_args)


def test_settings_come_from_state(tmp_path: Path) -> None:
    settings = _authenticator(tmp_path).settings
    assert (settings.proxy.endpoint, settings.port) == (ENDPOINT, 3306)
    assert settings.proxy.resource_id == PRX_ID
    assert ROLE_ARN in settings.roles and len(settings.roles) == 2  # every role of the stack, not one
    assert settings.emulator is None and settings.local_port is None
    path = tmp_path / "terraform.local.tfstate"
    path.write_text(json.dumps(state()))
    assert IamAuthSettings.from_state_file(path).proxy == settings.proxy


def test_a_container_token_is_admitted(tmp_path: Path) -> None:
    auth = _authenticator(tmp_path)
    principal = auth.check(DB_USER, _runtime_token(auth), host=ENDPOINT, port=3306)
    assert principal.db_user == DB_USER and principal.role_arn == ROLE_ARN
    assert principal.caller_arn.endswith(":assumed-role/sms-local-api-exec/sms-local-api")
    assert principal.source == "local issuer"


def test_any_db_user_the_policies_allow_is_admitted(tmp_path: Path) -> None:
    """Which DB users exist is the stand-in's business: the authenticator asks only what the signer may do."""
    auth = _authenticator(tmp_path, state(inline=[grant(connect_arn(user="*"))]))
    assert auth.check("reporting", _runtime_token(auth, user="reporting")).db_user == "reporting"
    narrow = _authenticator(tmp_path / "narrow")
    with pytest.raises(AuthError, match=r"not authorized: no policy of .* allows rds-db:connect on .*/reporting"):
        narrow.check("reporting", _runtime_token(narrow, user="reporting"))


def test_tokens_for_the_stand_ins_own_port_are_admitted_when_it_is_known(tmp_path: Path) -> None:
    local = _authenticator(tmp_path, local_port=24001)
    assert local.check(DB_USER, _runtime_token(local, port=24001), port=24001).db_user == DB_USER
    assert local.check(DB_USER, _runtime_token(local), port=3306).db_user == DB_USER  # the deployed port too
    with pytest.raises(AuthError, match=r"wrong host: signed for .*:24002, this proxy is .*:3306 \(or :24001"):
        local.check(DB_USER, _runtime_token(local, port=24002))
    unknown = _authenticator(tmp_path / "unknown")
    with pytest.raises(AuthError, match="wrong host"):
        unknown.check(DB_USER, _runtime_token(unknown, port=24001))


def test_each_check_has_its_reason(tmp_path: Path) -> None:
    auth = _authenticator(tmp_path)
    token = _runtime_token(auth)
    cases = [
        (lambda: auth.check(DB_USER, token, host="other.example"), WRONG_HOST),
        (lambda: auth.check(DB_USER, token, port=3307), WRONG_HOST),
        (lambda: auth.check("root", token), WRONG_USER),
        (lambda: auth.check("root", _runtime_token(auth, user="root")), NOT_AUTHORIZED),
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
        IamAuthSettings(proxy=settings.proxy, port=70000, roles=settings.roles)
    with pytest.raises(SettingsError, match="local_port=0"):
        IamAuthSettings(proxy=settings.proxy, port=3306, roles=settings.roles, local_port=0)
    two_ports = state()
    two_ports["resources"].append(
        {
            "mode": "managed",
            "type": "aws_lambda_function",
            "name": "other",
            "instances": [{"attributes": {"role": ROLE_ARN, "environment": [{"variables": {"DB_PORT": "3307"}}]}}],
        }
    )
    with pytest.raises(SettingsError, match="one proxy port for every function"):
        IamAuthSettings.from_state(two_ports)


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
