"""RDS IAM auth token verification against real tokens from boto3's generate_db_auth_token."""

from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from local.data_plane.auth.credentials import CredentialIssuer, IssuedCredentials, IssuerSettings
from local.data_plane.auth.errors import BAD_SIGNATURE, EXPIRED, MALFORMED, WRONG_HOST, WRONG_USER, AuthError
from local.data_plane.auth.rds_token import TokenCheckSettings, parse_token, verify_token
from modules.validation import SettingsError
from tests.local.data_plane.auth.auth_support import DB_USER, ENDPOINT, REGION, ROLE_ARN, signed_token

CHECK = TokenCheckSettings(host=ENDPOINT, port=3306, region=REGION)


@pytest.fixture(scope="module")
def issuer(tmp_path_factory) -> CredentialIssuer:
    return CredentialIssuer(IssuerSettings(key_path=tmp_path_factory.mktemp("auth") / "issuer.key"))


@pytest.fixture(scope="module")
def creds(issuer: CredentialIssuer) -> IssuedCredentials:
    return issuer.issue(ROLE_ARN, "sms-local-api")


def _reason(token: str, issuer: CredentialIssuer, user: str = DB_USER, now: float | None = None) -> str:
    with pytest.raises(AuthError) as caught:
        verify_token(token, user, CHECK, issuer, now)
    return caught.value.reason


def test_a_boto3_token_is_accepted(issuer: CredentialIssuer, creds: IssuedCredentials) -> None:
    verified = verify_token(signed_token(creds), DB_USER, CHECK, issuer)
    assert verified.db_user == DB_USER
    assert verified.credentials.role_arn == ROLE_ARN
    assert verified.expires_at - verified.signed_at == 900
    assert abs(verified.signed_at - time.time()) < 60


def test_host_port_and_region_must_be_the_proxys(issuer: CredentialIssuer, creds: IssuedCredentials) -> None:
    other = ENDPOINT.replace("sms-local-proxy", "sms-other-proxy")
    assert _reason(signed_token(creds, host=other), issuer) == WRONG_HOST
    assert _reason(signed_token(creds, port=3307), issuer) == WRONG_HOST
    assert _reason(signed_token(creds, region="us-east-1"), issuer) == WRONG_HOST
    assert verify_token(signed_token(creds, host=ENDPOINT.upper()), DB_USER, CHECK, issuer)  # names ignore case


def test_db_user_must_be_the_login_user(issuer: CredentialIssuer, creds: IssuedCredentials) -> None:
    assert _reason(signed_token(creds, user="someone_else"), issuer) == WRONG_USER
    assert _reason(signed_token(creds), issuer, user="App_Admin") == WRONG_USER  # MySQL user names are exact


def test_expiry_and_clock_skew(issuer: CredentialIssuer, creds: IssuedCredentials) -> None:
    token = signed_token(creds)
    now = time.time()
    assert verify_token(token, DB_USER, CHECK, issuer, now + 890)
    assert _reason(token, issuer, now=now + 901) == EXPIRED
    assert verify_token(token, DB_USER, CHECK, issuer, now - 290)  # a client clock a little ahead is fine
    assert _reason(token, issuer, now=now - 400) == EXPIRED  # "not valid yet"


def test_tampering_breaks_the_signature(issuer: CredentialIssuer, creds: IssuedCredentials) -> None:
    token = signed_token(creds)
    signature = token[-64:]
    flipped = token[:-64] + ("0" if signature[0] != "0" else "1") + signature[1:]
    assert _reason(flipped, issuer) == BAD_SIGNATURE
    assert _reason(token.replace("X-Amz-Expires=900", "X-Amz-Expires=899"), issuer) == BAD_SIGNATURE
    retargeted = token.replace(f"DBUser={DB_USER}", "DBUser=root")
    assert _reason(retargeted, issuer, user="root") == BAD_SIGNATURE


def test_credentials_from_another_issuer_are_refused(issuer: CredentialIssuer, tmp_path: Path) -> None:
    foreign = CredentialIssuer(IssuerSettings(key_path=tmp_path / "k")).issue(ROLE_ARN, "fn")
    assert _reason(signed_token(foreign), issuer) == BAD_SIGNATURE


def test_a_forged_secret_key_is_refused(issuer: CredentialIssuer, creds: IssuedCredentials) -> None:
    forged = IssuedCredentials(creds.access_key_id, "x" * 40, creds.session_token, ROLE_ARN, "fn", creds.expiration)
    assert _reason(signed_token(forged), issuer) == BAD_SIGNATURE


def test_expired_credentials_make_the_token_expire(tmp_path: Path) -> None:
    short = CredentialIssuer(IssuerSettings(key_path=tmp_path / "k", lifetime_s=900))
    old = short.issue(ROLE_ARN, "fn", now=time.time() - 900)
    assert _reason(signed_token(old), short) == EXPIRED


@pytest.mark.parametrize(
    "mutation",
    [
        lambda t: "",
        lambda t: "https://" + t,
        lambda t: t.replace("Action=connect", "Action=dump"),
        lambda t: t.replace("&X-Amz-Algorithm=AWS4-HMAC-SHA256", ""),
        lambda t: t.replace("X-Amz-Algorithm=AWS4-HMAC-SHA256", "X-Amz-Algorithm=AWS4-HMAC-SHA1"),
        lambda t: t.replace("X-Amz-SignedHeaders=host", "X-Amz-SignedHeaders=host%3Bx-amz-date"),
        lambda t: t.replace("X-Amz-Expires=900", "X-Amz-Expires=3600"),
        lambda t: t.replace("X-Amz-Expires=900", "X-Amz-Expires=-1"),
        lambda t: t.replace("%2Frds-db%2F", "%2Frds%2F"),
        lambda t: t + "&DBUser=root",
        lambda t: t + "&Extra=1",
        lambda t: t.replace(":3306/", ":99999/"),
        lambda t: t.replace(":3306/", "/"),
        lambda t: t.replace("/?", "/x?"),
        lambda t: t[:-1],
        lambda t: t + " ",
    ],
)
def test_malformed_tokens(issuer: CredentialIssuer, creds: IssuedCredentials, mutation) -> None:
    assert _reason(mutation(signed_token(creds)), issuer) == MALFORMED


def test_settings_are_validated() -> None:
    with pytest.raises(SettingsError, match="port=0: allowed an integer from 1 to 65535"):
        TokenCheckSettings(host=ENDPOINT, port=0, region=REGION)
    with pytest.raises(SettingsError, match="region"):
        TokenCheckSettings(host=ENDPOINT, port=3306, region="Tokyo")
    with pytest.raises(SettingsError, match="host"):
        TokenCheckSettings(host="proxy host", port=3306, region=REGION)


_user_names = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=32)


@settings(max_examples=60, deadline=None)
@given(user=_user_names)
def test_any_user_name_round_trips_through_botocore_encoding(issuer: CredentialIssuer, creds, user: str) -> None:
    verified = verify_token(signed_token(creds, user=user), user, CHECK, issuer)
    assert verified.db_user == user


@settings(max_examples=60, deadline=None)
@given(user=_user_names, other=_user_names)
def test_a_token_for_one_user_never_admits_another(issuer: CredentialIssuer, creds, user: str, other: str) -> None:
    token = signed_token(creds, user=user)
    if other != user:
        assert _reason(token, issuer, user=other) == WRONG_USER
        swapped = token.replace(f"DBUser={quote(user, safe='-_.~')}&", f"DBUser={quote(other, safe='-_.~')}&", 1)
        assert _reason(swapped, issuer, user=other) == BAD_SIGNATURE


@settings(max_examples=300, deadline=None)
@given(token=st.text(max_size=400))
def test_arbitrary_text_is_refused_with_an_auth_error(issuer: CredentialIssuer, token: str) -> None:
    with pytest.raises(AuthError):
        verify_token(token, DB_USER, CHECK, issuer)


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_any_single_character_change_is_refused(issuer: CredentialIssuer, creds, data) -> None:
    token = signed_token(creds)
    index = data.draw(st.integers(0, len(token) - 1))
    replacement = data.draw(st.characters(codec="ascii").filter(lambda c: c.lower() != token[index].lower()))
    changed = token[:index] + replacement + token[index + 1 :]
    try:
        parse_token(changed)
    except AuthError:
        return  # refused on its shape
    with pytest.raises(AuthError):
        verify_token(changed, DB_USER, CHECK, issuer)
