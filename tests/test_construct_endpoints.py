"""SecretsManagerEndpoint in isolation: a private interface endpoint that only the client group reaches, on 443."""

from __future__ import annotations

import pytest

from modules.bindings import aws
from modules.endpoints import SecretsManagerEndpoint, SecretsManagerEndpointProps
from modules.validation import SettingsError
from tests.synth_support import only, resources, synth_construct

SECRET = "arn:aws:secretsmanager:ap-northeast-1:123456789012:secret:app-AbCdEf"


@pytest.fixture(scope="module")
def endpoint():
    def build(stack, ctx):
        client = aws("security_group").SecurityGroup(stack, "client", name="client", description="c", vpc_id="vpc-1")
        SecretsManagerEndpoint(
            stack,
            "sm",
            SecretsManagerEndpointProps(
                name_prefix="t",
                ctx=ctx,
                vpc_id="vpc-1",
                subnet_ids=["subnet-a", "subnet-c"],
                client_security_group=client,
                readable_secret_arns=(SECRET,),
            ),
        )

    return synth_construct(build)


def test_interface_endpoint_with_private_dns_in_the_given_subnets(endpoint):
    vpce = only(endpoint, "aws_vpc_endpoint")
    assert (vpce["vpc_endpoint_type"], vpce["private_dns_enabled"], vpce["vpc_id"]) == ("Interface", True, "vpc-1")
    assert vpce["service_name"] == "com.amazonaws.ap-northeast-1.secretsmanager"
    assert vpce["subnet_ids"] == ["subnet-a", "subnet-c"]


def test_only_the_client_group_reaches_it_and_only_on_443(endpoint):
    groups = {g["name"]: n for n, g in resources(endpoint, "aws_security_group").items()}
    own, client = (f"${{aws_security_group.{groups[n]}.id}}" for n in ("t-secretsmanager-endpoint", "client"))
    assert only(endpoint, "aws_vpc_endpoint")["security_group_ids"] == [own]
    (ingress,) = resources(endpoint, "aws_vpc_security_group_ingress_rule").values()
    (egress,) = resources(endpoint, "aws_vpc_security_group_egress_rule").values()
    assert (ingress["security_group_id"], ingress["referenced_security_group_id"]) == (own, client)
    assert (egress["security_group_id"], egress["referenced_security_group_id"]) == (client, own)
    assert {(r["ip_protocol"], r["from_port"], r["to_port"]) for r in (ingress, egress)} == {("tcp", 443, 443)}


def test_endpoint_policy_allows_reading_the_given_secrets_by_this_account_only(endpoint):
    policy_ref = only(endpoint, "aws_vpc_endpoint")["policy"]
    (statement,) = endpoint["data"]["aws_iam_policy_document"][policy_ref.split(".")[2]]["statement"]
    assert statement["actions"] == ["secretsmanager:GetSecretValue"] and statement["resources"] == [SECRET]
    assert statement["condition"] == [
        {
            "test": "StringEquals",
            "variable": "aws:PrincipalAccount",
            "values": ["${data.aws_caller_identity.caller.account_id}"],
        }
    ]


@pytest.mark.parametrize(
    "field, value, allowed", [("subnet_ids", [], "at least one subnet"), ("readable_secret_arns", (), "at least one")]
)
def test_an_endpoint_without_subnets_or_secrets_is_refused(field, value, allowed):
    props = dict(name_prefix="t", ctx=None, vpc_id="v", subnet_ids=["s"], client_security_group=None)
    props["readable_secret_arns"] = (SECRET,)
    with pytest.raises(SettingsError, match=rf"invalid setting {field}=.*: allowed {allowed}"):
        SecretsManagerEndpointProps(**{**props, field: value})
