"""The local credential issuer: credentials the stand-in can resolve, and forged or expired ones it rejects."""

from __future__ import annotations

import stat
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from local.data_plane.auth.credentials import ACCESS_KEY_ID, CredentialIssuer, IssuerSettings
from local.data_plane.auth.errors import BAD_SIGNATURE, EXPIRED, AuthError
from modules.validation import SettingsError
from tests.local.data_plane.auth.auth_support import ROLE_ARN


@pytest.fixture
def issuer(tmp_path: Path) -> CredentialIssuer:
    return CredentialIssuer(IssuerSettings(key_path=tmp_path / "auth" / "issuer.key"))


def test_issued_credentials_look_like_lambdas_and_resolve(issuer: CredentialIssuer) -> None:
    issued = issuer.issue(ROLE_ARN, "sms-local-api")
    assert ACCESS_KEY_ID.match(issued.access_key_id)
    assert len(issued.secret_access_key) == 40
    assert set(issued.environment()) == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"}
    assert issued.secret_access_key not in repr(issued) and issued.session_token not in repr(issued)
    assert issued.assumed_role_arn == "arn:aws:sts::123456789012:assumed-role/sms-local-api-exec/sms-local-api"
    resolved = issuer.resolve(issued.access_key_id, issued.session_token)
    assert resolved == issued
    assert issuer.issue(ROLE_ARN, "sms-local-api").access_key_id != issued.access_key_id  # fresh per container


def test_issuer_key_is_private_and_shared_by_every_issuer_on_the_path(tmp_path: Path) -> None:
    key_path = tmp_path / "auth" / "issuer.key"
    issued = CredentialIssuer(IssuerSettings(key_path=key_path)).issue(ROLE_ARN, "fn")
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    verifier = CredentialIssuer(IssuerSettings(key_path=key_path))  # e.g. the proxy stand-in's process
    assert verifier.resolve(issued.access_key_id, issued.session_token).secret_access_key == issued.secret_access_key


def test_another_issuer_key_cannot_vouch_for_a_token(issuer: CredentialIssuer, tmp_path: Path) -> None:
    foreign = CredentialIssuer(IssuerSettings(key_path=tmp_path / "other.key")).issue(ROLE_ARN, "fn")
    with pytest.raises(AuthError) as caught:
        issuer.resolve(foreign.access_key_id, foreign.session_token)
    assert caught.value.reason == BAD_SIGNATURE


def test_a_token_with_a_changed_role_is_rejected(issuer: CredentialIssuer) -> None:
    import base64
    import json

    issued = issuer.issue(ROLE_ARN, "fn")
    prefix, body, mac = issued.session_token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    claims["r"] = "arn:aws:iam::123456789012:role/admin"
    forged_body = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    with pytest.raises(AuthError, match="bad signature: the security token is invalid"):
        issuer.resolve(issued.access_key_id, f"{prefix}.{forged_body}.{mac}")


def test_a_token_is_bound_to_its_access_key(issuer: CredentialIssuer) -> None:
    one, two = issuer.issue(ROLE_ARN, "fn"), issuer.issue(ROLE_ARN, "fn")
    with pytest.raises(AuthError, match="belongs to another access key"):
        issuer.resolve(one.access_key_id, two.session_token)


def test_expired_credentials_are_rejected(tmp_path: Path) -> None:
    issuer = CredentialIssuer(IssuerSettings(key_path=tmp_path / "k", lifetime_s=900))
    issued = issuer.issue(ROLE_ARN, "fn", now=time.time() - 901)
    with pytest.raises(AuthError) as caught:
        issuer.resolve(issued.access_key_id, issued.session_token)
    assert caught.value.reason == EXPIRED
    assert issuer.resolve(issued.access_key_id, issued.session_token, now=time.time() - 2).role_arn == ROLE_ARN


def test_settings_and_inputs_are_validated(issuer: CredentialIssuer, tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="lifetime_s=60: allowed an integer from 900 to 43200"):
        IssuerSettings(key_path=tmp_path / "k", lifetime_s=60)
    with pytest.raises(SettingsError, match="role_arn"):
        issuer.issue("arn:aws:iam::123:user/bob", "fn")
    with pytest.raises(SettingsError, match="session_name"):
        issuer.issue(ROLE_ARN, "a b")
    (tmp_path / "short.key").write_bytes(b"x")
    with pytest.raises(SettingsError, match="key_path"):
        CredentialIssuer(IssuerSettings(key_path=tmp_path / "short.key"))


@settings(max_examples=200, deadline=None)
@given(access_key_id=st.text(max_size=30), token=st.text(max_size=300))
def test_arbitrary_input_is_refused_with_bad_signature(tmp_path_factory, access_key_id: str, token: str) -> None:
    issuer = _shared_issuer(tmp_path_factory)
    with pytest.raises(AuthError) as caught:
        issuer.resolve(access_key_id, token)
    assert caught.value.reason == BAD_SIGNATURE


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_any_single_character_change_to_a_token_is_refused(tmp_path_factory, data) -> None:
    issuer = _shared_issuer(tmp_path_factory)
    issued = issuer.issue(ROLE_ARN, "fn")
    token = issued.session_token
    index = data.draw(st.integers(0, len(token) - 1))
    replacement = data.draw(st.characters(codec="ascii").filter(lambda c: c != token[index]))
    with pytest.raises(AuthError):
        issuer.resolve(issued.access_key_id, token[:index] + replacement + token[index + 1 :])


_ISSUERS: dict[int, CredentialIssuer] = {}


def _shared_issuer(tmp_path_factory) -> CredentialIssuer:
    key = id(tmp_path_factory)
    if key not in _ISSUERS:
        _ISSUERS[key] = CredentialIssuer(IssuerSettings(key_path=tmp_path_factory.mktemp("auth") / "issuer.key"))
    return _ISSUERS[key]
