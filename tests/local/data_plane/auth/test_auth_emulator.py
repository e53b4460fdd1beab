"""Tokens signed with keys the real emulator issued: its credentials lookup, and the policies that decide.

One emulator (the project's launcher, so its lookup route is installed) for the module; every principal is made
through its IAM and STS APIs with boto3, tokens are signed by boto3, and the authenticator checks them.
"""

from __future__ import annotations

import datetime
from pathlib import Path
from unittest import mock

import pytest
from botocore.compat import get_current_datetime
from hypothesis import given, settings
from hypothesis import strategies as st

from local.common.emulator_credentials import (
    ASSUMED_ROLE,
    LOOKUP_PATH,
    USER,
    EmulatorCredentials,
    EmulatorLookupError,
    lookup_credentials,
)
from local.data_plane.auth.authenticator import IamAuthenticator, IamAuthSettings
from local.data_plane.auth.credentials import IssuerSettings
from local.data_plane.auth.emulator_principals import EmulatorPrincipals, EmulatorPrincipalSettings
from local.data_plane.auth.errors import BAD_SIGNATURE, EXPIRED, NOT_AUTHORIZED, AuthError
from local.data_plane.auth.local_ca import LocalCaSettings
from local.data_plane.auth.rds_token import TokenCheckSettings, verify_token
from modules.validation import SettingsError
from tests.local.data_plane.auth.auth_support import (
    ACCOUNT,
    DB_USER,
    ENDPOINT,
    PRX_ID,
    REGION,
    connect_arn,
    signed_token,
    state,
)
from tests.local.data_plane.auth.emulator_principals_support import (
    Keys,
    assume,
    client,
    connect_grant,
    document,
    iam_user,
    role,
)

CHECK = TokenCheckSettings(ENDPOINT, 3306, REGION)


@pytest.fixture(scope="module")
def emulator(emulator) -> str:
    """The shared private emulator (conftest), by its endpoint: what these tests hand to clients."""
    return emulator.endpoint


def authenticator(tmp_path: Path, endpoint: str, **emulator_settings) -> IamAuthenticator:
    emulator_settings.setdefault("cache_s", 0)
    return IamAuthenticator(
        IamAuthSettings.from_state(
            state(),
            ca=LocalCaSettings(directory=tmp_path / "ca"),
            issuer=IssuerSettings(key_path=tmp_path / "issuer.key"),
            emulator=EmulatorPrincipalSettings(endpoint, **emulator_settings),
        )
    )


def refusal(auth: IamAuthenticator, token: str, user: str = DB_USER, now: float | None = None) -> AuthError:
    with pytest.raises(AuthError) as caught:
        auth.check(user, token, now=now)
    return caught.value


# --- the lookup itself ------------------------------------------------------------------------------
def test_the_lookup_answers_for_users_and_sessions_and_nothing_else(emulator: str) -> None:
    user = iam_user(emulator, "lookup-user", connect_grant())
    found = lookup_credentials(emulator, user.access_key_id)
    assert found is not None and found.kind == USER and found.active
    assert (found.secret_access_key, found.session_token, found.expiration) == (user.secret_access_key, "", None)
    assert found.principal_arn == f"arn:aws:iam::{ACCOUNT}:user/lookup-user"
    assert [p.name for p in found.policies] == ["user/lookup-user:inline/connect"]
    assert user.secret_access_key not in repr(found)
    session = assume(emulator, role(emulator, "lookup-role", connect_grant()), document(connect_grant()))
    found = lookup_credentials(emulator, session.access_key_id)
    assert found is not None and found.kind == ASSUMED_ROLE and found.session_token == session.session_token
    assert found.principal_arn == session.arn and found.role_arn.endswith(":role/lookup-role")
    assert found.expiration is not None and found.session_policy
    assert lookup_credentials(emulator, "AKIA" + "Z" * 16) is None  # never issued
    assert lookup_credentials(emulator, "test") is None  # the dummy credentials are nobody's


def test_the_lookup_route_refuses_bad_requests(emulator: str) -> None:
    import urllib.error
    import urllib.request

    cases = ((b'{"AccessKeyId": "x"}', "POST", 400), (b"not json", "POST", 400), (None, "GET", 405))
    for data, method, status in cases:
        request = urllib.request.Request(emulator + LOOKUP_PATH, data=data, method=method)
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(request, timeout=5)
        assert caught.value.code == status


def test_an_unreachable_emulator_is_named() -> None:
    with pytest.raises(EmulatorLookupError, match=r"cannot reach the emulator at http://127\.0\.0\.1:9"):
        lookup_credentials("http://127.0.0.1:9", "AKIA" + "A" * 16, timeout_s=1)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
_fields = st.fixed_dictionaries(
    {},
    optional={
        "Kind": st.sampled_from([USER, ASSUMED_ROLE, "x"]) | _json,
        "AccessKeyId": st.text(max_size=4) | _json,
        "SecretAccessKey": st.text(max_size=4) | _json,
        "PrincipalArn": st.text(max_size=4) | _json,
        "Status": st.sampled_from(["Active", "Inactive"]) | _json,
        "Expiration": st.integers() | _json,
        "Policies": st.lists(st.fixed_dictionaries({"Name": _json, "Document": _json}), max_size=2) | _json,
    },
)


@settings(max_examples=300, deadline=None)
@given(data=_fields | _json)
def test_any_answer_parses_or_is_a_lookup_error(data) -> None:
    try:
        parsed = EmulatorCredentials.from_json(data)
    except EmulatorLookupError:
        return
    assert parsed.kind in (USER, ASSUMED_ROLE) and isinstance(parsed.secret_access_key, str)


# --- IAM users ----------------------------------------------------------------------------------------
def test_an_iam_users_key_is_admitted_by_its_inline_policy(tmp_path: Path, emulator: str) -> None:
    keys = iam_user(emulator, "alice", connect_grant())
    principal = authenticator(tmp_path, emulator).check(DB_USER, signed_token(keys))
    assert (principal.caller_arn, principal.role_arn, principal.source) == (keys.arn, "", "emulator")


def test_group_and_attached_policies_count_with_wildcards(tmp_path: Path, emulator: str) -> None:
    iam = client(emulator, "iam")
    keys = iam_user(emulator, "bob")
    iam.create_group(GroupName="dbas")
    iam.add_user_to_group(GroupName="dbas", UserName="bob")
    wildcard = connect_grant(f"arn:aws:rds-db:{REGION}:{ACCOUNT}:dbuser:prx-*/app_*")
    iam.put_group_policy(GroupName="dbas", PolicyName="connect", PolicyDocument=document(wildcard))
    auth = authenticator(tmp_path, emulator)
    assert auth.check(DB_USER, signed_token(keys)).caller_arn == keys.arn
    iam.delete_group_policy(GroupName="dbas", PolicyName="connect")
    assert refusal(auth, signed_token(keys)).reason == NOT_AUTHORIZED
    arn = iam.create_policy(PolicyName="connect-any", PolicyDocument=document(connect_grant("*")))["Policy"]["Arn"]
    iam.attach_user_policy(UserName="bob", PolicyArn=arn)
    assert auth.check(DB_USER, signed_token(keys)).db_user == DB_USER


def test_a_principal_without_the_grant_gets_not_authorized_naming_the_check(tmp_path: Path, emulator: str) -> None:
    auth = authenticator(tmp_path, emulator)
    nobody = iam_user(emulator, "no-grant")
    error = refusal(auth, signed_token(nobody))
    assert error.reason == NOT_AUTHORIZED
    assert f"no policy of {nobody.arn} allows rds-db:connect on {connect_arn()}" in str(error)
    assert "IAM authentication failed: not authorized" in error.client_message(DB_USER)
    elsewhere = iam_user(emulator, "other-proxy", connect_grant(connect_arn(prx_id="prx-0ffffffffffffffff")))
    assert refusal(auth, signed_token(elsewhere)).reason == NOT_AUTHORIZED
    other_user = iam_user(emulator, "other-user", connect_grant(connect_arn(user="reader")))
    assert refusal(auth, signed_token(other_user)).reason == NOT_AUTHORIZED
    assert auth.check("reader", signed_token(other_user, user="reader")).db_user == "reader"


def test_an_explicit_deny_wins(tmp_path: Path, emulator: str) -> None:
    deny = connect_grant(f"arn:aws:rds-db:*:*:dbuser:{PRX_ID}/*", "Deny")
    keys = iam_user(emulator, "denied", connect_grant("*"), deny)
    error = refusal(authenticator(tmp_path, emulator), signed_token(keys))
    assert error.reason == NOT_AUTHORIZED and "explicitly denied by policy 'user/denied:inline/connect'" in str(error)


def test_inactive_and_deleted_keys_and_forged_secrets_are_refused(tmp_path: Path, emulator: str) -> None:
    iam = client(emulator, "iam")
    auth = authenticator(tmp_path, emulator)
    keys = iam_user(emulator, "carol", connect_grant())
    forged = Keys(keys.access_key_id, "x" * 40)
    assert refusal(auth, signed_token(forged)).reason == BAD_SIGNATURE
    with_token = Keys(keys.access_key_id, keys.secret_access_key, "FQoGZXIvYXdzEBYaD" + "A" * 40)
    assert "session token came with an IAM user's long-term key" in str(refusal(auth, signed_token(with_token)))
    iam.update_access_key(UserName="carol", AccessKeyId=keys.access_key_id, Status="Inactive")
    assert "is inactive" in str(refusal(auth, signed_token(keys)))
    iam.update_access_key(UserName="carol", AccessKeyId=keys.access_key_id, Status="Active")
    assert auth.check(DB_USER, signed_token(keys))
    iam.delete_access_key(UserName="carol", AccessKeyId=keys.access_key_id)
    error = refusal(auth, signed_token(keys))
    assert error.reason == BAD_SIGNATURE and "was not issued by the emulator" in str(error)


def test_the_dummy_credentials_are_nobodys(tmp_path: Path, emulator: str) -> None:
    dummy = Keys("test", "test")
    assert refusal(authenticator(tmp_path, emulator), signed_token(dummy)).reason == BAD_SIGNATURE


# --- assumed-role sessions ----------------------------------------------------------------------------
def test_an_assumed_role_session_is_admitted_by_the_roles_policy(tmp_path: Path, emulator: str) -> None:
    role_arn = role(emulator, "reporting", connect_grant())
    session = assume(emulator, role_arn)
    principal = authenticator(tmp_path, emulator).check(DB_USER, signed_token(session))
    assert (principal.role_arn, principal.caller_arn) == (role_arn, session.arn)
    assert principal.caller_arn == f"arn:aws:sts::{ACCOUNT}:assumed-role/reporting/tester"


def test_session_policies_narrow_the_role(tmp_path: Path, emulator: str) -> None:
    auth = authenticator(tmp_path, emulator)
    role_arn = role(emulator, "narrowed", connect_grant("*"))
    denying = assume(emulator, role_arn, document(connect_grant(effect="Deny")))
    assert "explicitly denied by the session policy" in str(refusal(auth, signed_token(denying)))
    unrelated = assume(emulator, role_arn, document({"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}))
    assert "the session policy does not allow rds-db:connect" in str(refusal(auth, signed_token(unrelated)))
    allowing = assume(emulator, role_arn, document(connect_grant()))
    assert auth.check(DB_USER, signed_token(allowing)).role_arn == role_arn


def test_sessions_of_missing_roles_wrong_tokens_and_expired_sessions_are_refused(tmp_path: Path, emulator: str) -> None:
    auth = authenticator(tmp_path, emulator)
    ghost = assume(emulator, "arn:aws:iam::123456789012:role/does-not-exist")  # moto lets anyone assume it
    assert refusal(auth, signed_token(ghost)).reason == NOT_AUTHORIZED
    session = assume(emulator, role(emulator, "short", connect_grant()), duration_s=900)
    swapped = Keys(session.access_key_id, session.secret_access_key, ghost.session_token)
    assert "does not belong to access key" in str(refusal(auth, signed_token(swapped)))
    later = get_current_datetime() + datetime.timedelta(seconds=1000)  # after the session, within a token's life
    with mock.patch("botocore.auth.get_current_datetime", return_value=later):
        token = signed_token(session)
    error = refusal(auth, token, now=later.timestamp() + 1)
    assert error.reason == EXPIRED and "session's credentials expired" in str(error)


# --- caching and the lookup budget --------------------------------------------------------------------
def test_answers_are_cached_and_new_keys_are_rationed(tmp_path: Path, emulator: str) -> None:
    keys = iam_user(emulator, "cached", connect_grant())
    now = [1000.0]  # the cache's and the budget's clock, moved by hand
    principals = EmulatorPrincipals(
        EmulatorPrincipalSettings(emulator, cache_s=5, lookups_per_s=2), clock=lambda: now[0]
    )
    token, made_up = signed_token(keys), [signed_token(Keys(f"AKIA{c * 16}", "y" * 40)) for c in "QRS"]
    for _ in range(5):
        verify_token(token, DB_USER, CHECK, principals)
    assert principals.lookups == 1  # cached
    assert "was not issued by the emulator" in str(_refused(made_up[0], principals))  # the second lookup
    assert "too many new keys" in str(_refused(made_up[1], principals))  # this second's budget (2) is spent
    assert verify_token(token, DB_USER, CHECK, principals)  # a known key keeps working meanwhile
    now[0] += 0.5  # half a second refills one lookup
    assert "was not issued by the emulator" in str(_refused(made_up[2], principals))
    assert principals.lookups == 3
    now[0] += 5  # the cached answer is now old: asked again
    verify_token(token, DB_USER, CHECK, principals)
    assert principals.lookups == 4


def _refused(token: str, principals: EmulatorPrincipals) -> AuthError:
    with pytest.raises(AuthError) as caught:
        verify_token(token, DB_USER, CHECK, principals)
    assert caught.value.reason == BAD_SIGNATURE
    return caught.value


def test_an_unreachable_emulator_refuses_with_a_reason(tmp_path: Path) -> None:
    auth = authenticator(tmp_path, "http://127.0.0.1:9", timeout_s=0.5)
    error = refusal(auth, signed_token(Keys("AKIA" + "B" * 16, "z" * 40)))
    assert error.reason == BAD_SIGNATURE and "cannot look up access key" in str(error)


def test_emulator_settings_are_validated() -> None:
    with pytest.raises(SettingsError, match="cache_s=-1: allowed a number from 0 to 300"):
        EmulatorPrincipalSettings("http://127.0.0.1:4599", cache_s=-1)
    with pytest.raises(SettingsError, match="emulator endpoint"):
        EmulatorPrincipalSettings("127.0.0.1:4599")
