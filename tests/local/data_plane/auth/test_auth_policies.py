"""rds-db:connect decisions from the function role's deployed policies (moto's IAM engine, fail-closed wrapper)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from local.data_plane.auth.policies import (
    ConnectAuthorizer,
    ProxyIdentity,
    function_role_arn,
    normalize,
    proxy_identity,
    role_policies,
)
from modules.validation import SettingsError
from tests.local.data_plane.auth.auth_support import (
    ACCOUNT,
    DB_USER,
    ENDPOINT,
    PROXY_ARN,
    PRX_ID,
    REGION,
    ROLE_ARN,
    VPC_POLICY_ARN,
    connect_arn,
    grant,
    policy,
    state,
)

CUSTOMER_ARN = f"arn:aws:iam::{ACCOUNT}:policy/extra"


def _decide(deployed: dict, resource: str = connect_arn()) -> tuple[bool, str]:
    authorizer = ConnectAuthorizer(role_policies(deployed, function_role_arn(deployed)))
    decision = authorizer.decide(resource)
    return decision.allowed, decision.explanation


def test_the_stacks_grant_allows_exactly_its_proxy_and_user() -> None:
    deployed = state()
    assert _decide(deployed) == (True, f"allowed by policy 'inline:rds-db-connect-{DB_USER}'")
    assert not _decide(deployed, connect_arn(prx_id="prx-0zzzzzzzzzzzzzzzz"))[0]
    assert not _decide(deployed, connect_arn(user="root"))[0]
    assert not _decide(deployed, connect_arn().replace(REGION, "us-east-1"))[0]


def test_no_grant_at_all_is_an_implicit_deny() -> None:
    allowed, explanation = _decide(state(inline=[]))
    assert not allowed and explanation.startswith(f"no policy of {ROLE_ARN} allows rds-db:connect")


def test_another_roles_policies_do_not_count() -> None:
    # the proxy's role in the fixture may do anything; the function's role has no grant
    assert not _decide(state(inline=[]))[0]


def test_explicit_deny_wins_inline_and_attached() -> None:
    assert not _decide(state(inline=[grant(), grant(effect="Deny")]))[0]
    denied = state(attached={CUSTOMER_ARN: policy(grant("arn:aws:rds-db:*:*:dbuser:*/*", effect="Deny"))})
    allowed, explanation = _decide(denied)
    assert not allowed and explanation == f"explicitly denied by policy {CUSTOMER_ARN!r}"


def test_grants_from_an_attached_customer_policy_and_wildcards() -> None:
    assert _decide(state(inline=[], attached={CUSTOMER_ARN: policy(grant())}))[0]
    assert _decide(state(inline=[grant(f"arn:aws:rds-db:{REGION}:{ACCOUNT}:dbuser:prx-*/app_*")]))[0]
    assert _decide(state(inline=[grant(f"arn:aws:rds-db:{REGION}:{ACCOUNT}:dbuser:{PRX_ID}/app_admi?")]))[0]
    assert _decide(state(inline=[{**grant(), "Action": ["RDS-DB:Connect"]}]))[0]  # actions ignore case
    assert _decide(state(inline=[{**grant(), "Action": "rds-db:*"}]))[0]
    assert not _decide(state(inline=[{**grant(), "Action": "rds:*"}]))[0]
    not_connect = {"Effect": "Allow", "NotAction": "rds-db:connect", "Resource": "*"}
    assert not _decide(state(inline=[not_connect]))[0]
    assert _decide(state(inline=[{**not_connect, "NotAction": "rds:*"}]))[0]


def test_iam_patterns_are_not_regular_expressions() -> None:
    assert not _decide(state(inline=[grant(connect_arn(user="app.admin"))]))[0]  # '.' is literal in IAM
    assert not _decide(state(inline=[grant(connect_arn(user="app_admin+"))]))[0]


def test_what_the_engine_cannot_evaluate_fails_closed() -> None:
    conditional = grant(Condition={"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}})
    assert not _decide(state(inline=[conditional]))[0]  # an Allow it cannot check grants nothing
    assert not _decide(state(inline=[grant(NotResource="arn:aws:rds-db:*:*:dbuser:*/root")]))[0]
    assert not _decide(state(inline=[grant(f"arn:aws:rds-db:{REGION}:{ACCOUNT}:dbuser:{PRX_ID}/${{aws:username}}")]))[0]
    deny_elsewhere = grant(
        "arn:aws:rds-db:*:*:dbuser:*/root", effect="Deny", Condition={"Bool": {"aws:SecureTransport": "false"}}
    )
    assert not _decide(state(inline=[grant(), deny_elsewhere]))[0]  # a Deny it cannot check applies everywhere


def test_aws_managed_policies_come_from_motos_bundle() -> None:
    policies = role_policies(state(), ROLE_ARN)
    managed = [doc for doc in policies.documents if doc.name == VPC_POLICY_ARN]
    assert managed and "ec2:CreateNetworkInterface" in json.dumps(managed[0].document)
    unknown = "arn:aws:iam::aws:policy/NoSuchPolicyAnywhere"
    assert role_policies(state(attached={unknown: None}), ROLE_ARN).unresolved == (unknown,)


def test_proxy_identity_from_state() -> None:
    proxy = proxy_identity(state())
    assert (proxy.partition, proxy.region, proxy.account, proxy.resource_id) == ("aws", REGION, ACCOUNT, PRX_ID)
    assert proxy.endpoint == ENDPOINT
    assert proxy.connect_arn(DB_USER) == connect_arn()
    with pytest.raises(SettingsError, match="proxy_arn"):
        ProxyIdentity(arn="arn:aws:rds:ap-northeast-1:123456789012:db-proxy:sms-local-proxy", endpoint=ENDPOINT)
    with pytest.raises(SettingsError, match="role_arn"):
        role_policies(state(), "arn:aws:iam::123456789012:role/not-deployed")
    assert PROXY_ARN.endswith(PRX_ID)


_arn_text = st.text(st.characters(codec="ascii", categories=("L", "N", "P", "S")), min_size=1, max_size=40)


@settings(max_examples=200, deadline=None)
@given(user=_arn_text)
def test_literal_grant_matches_exactly_its_own_resource(user: str) -> None:
    """A grant without wildcards or policy variables allows its one resource and nothing else."""
    literal = user.replace("*", "").replace("?", "").replace("${", "{") or "u"
    authorizer = ConnectAuthorizer(role_policies(state(inline=[grant(connect_arn(user=literal))]), ROLE_ARN))
    assert authorizer.decide(connect_arn(user=literal)).allowed
    assert not authorizer.decide(connect_arn(user=literal + "x")).allowed
    assert not authorizer.decide(connect_arn(user=literal[:-1])).allowed


def test_normalize_keeps_statement_shape_moto_understands() -> None:
    normalized = normalize({"Statement": {"Effect": "Allow", "Action": "RDS-DB:Connect", "Resource": "a.b*"}})
    assert normalized["Statement"] == [{"Effect": "Allow", "Action": ["rds\\-db:connect"], "Resource": ["a\\.b*"]}]
