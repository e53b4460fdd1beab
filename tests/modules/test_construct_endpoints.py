"""SecretsManagerEndpoint in isolation: a private interface endpoint that only the client group reaches, on 443."""

from __future__ import annotations

import pytest

from modules.bindings import aws
from modules.endpoints import SecretsManagerEndpoint, SecretsManagerEndpointProps
from modules.validation import PropError
from tests.modules.construct_support import Template
from tests.modules.synth_support import sample_context

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

    return Template.of(build)


def test_interface_endpoint_with_private_dns_in_the_given_subnets(endpoint):
    endpoint.has_resource_properties(
        "aws_vpc_endpoint",
        {
            "vpc_endpoint_type": "Interface",
            "private_dns_enabled": True,
            "vpc_id": "vpc-1",
            "service_name": "com.amazonaws.ap-northeast-1.secretsmanager",
            "subnet_ids": ["subnet-a", "subnet-c"],
        },
    )


def test_only_the_client_group_reaches_it_and_only_on_443(endpoint):
    own = endpoint.ref("aws_security_group", {"name": "t-secretsmanager-endpoint"})
    client = endpoint.ref("aws_security_group", {"name": "client"})
    endpoint.has_resource_properties("aws_vpc_endpoint", {"security_group_ids": [own]})
    rule = {"ip_protocol": "tcp", "from_port": 443, "to_port": 443}
    endpoint.has_resource_properties(
        "aws_vpc_security_group_ingress_rule",
        {**rule, "security_group_id": own, "referenced_security_group_id": client},
    )
    endpoint.has_resource_properties(
        "aws_vpc_security_group_egress_rule", {**rule, "security_group_id": client, "referenced_security_group_id": own}
    )


def test_endpoint_policy_allows_reading_the_given_secrets_by_this_account_only(endpoint):
    (statement,) = endpoint.policy_statements(endpoint.has_resource_properties("aws_vpc_endpoint", {})["policy"])
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
    props = dict(name_prefix="t", ctx=sample_context(), vpc_id="v", subnet_ids=["s"], client_security_group=None)
    props["readable_secret_arns"] = (SECRET,)
    with pytest.raises(PropError, match=rf"invalid prop SecretsManagerEndpointProps\.{field}=.*: allowed {allowed}"):
        SecretsManagerEndpointProps(**{**props, field: value})
