"""An interface VPC endpoint for Secrets Manager: the migrator's only way out of the private subnets.

The VPC has no internet or NAT gateway. The migrator reads the application user's secret at deploy time, so
Secrets Manager gets a private endpoint with private DNS (the SDK's default host name resolves to it), its own
security group open on 443 to the migrator's group alone, and an endpoint policy that allows nothing but
reading the given secrets by principals of this account.
"""

from __future__ import annotations

from typing import Any, Self

from constructs import Construct
from pydantic import model_validator

from modules.bindings import aws
from modules.context import AwsContext
from modules.field_types import NamePrefix
from modules.network import allow_tcp
from modules.policy import policy_document
from modules.props import Props, expect_props, is_unresolved

HTTPS_PORT = 443


class SecretsManagerEndpointProps(Props):
    name_prefix: NamePrefix
    """Names the endpoint's security group ``<name_prefix>-secretsmanager-endpoint``. Required."""
    ctx: AwsContext
    """Region of the service name; account the endpoint policy admits. Required."""
    vpc_id: str
    """The VPC the endpoint goes into. Required."""
    subnet_ids: list[str]
    """One endpoint network interface per subnet; each is billed per AZ-hour. Use the clients' subnets. Required."""
    client_security_group: Any
    """The ``SecurityGroup`` of the only clients (the migrator): it gets egress to the endpoint on 443. Required."""
    readable_secret_arns: tuple[str, ...]
    """The only secrets reachable through the endpoint (``secretsmanager:GetSecretValue``). Required."""

    @model_validator(mode="after")
    def _something_to_serve(self) -> Self:
        if not is_unresolved(self.subnet_ids) and not self.subnet_ids:
            self.refuse("subnet_ids", "at least one subnet")
        if not self.readable_secret_arns:
            self.refuse("readable_secret_arns", "at least one secret ARN")
        return self


class SecretsManagerEndpoint(Construct):
    """The interface endpoint, its security group (443 from the clients' group only) and its policy."""

    def __init__(self, scope: Construct, id_: str, props: SecretsManagerEndpointProps):
        super().__init__(scope, id_)
        expect_props(props, SecretsManagerEndpointProps)
        name = f"{props.name_prefix}-secretsmanager-endpoint"
        self.security_group = aws("security_group").SecurityGroup(
            self,
            "sg",
            name=name,
            description="Secrets Manager endpoint: HTTPS from the migrator only",
            vpc_id=props.vpc_id,
            tags={"Name": name},
        )
        self.rules = allow_tcp(
            self,
            "migrator-to-endpoint",
            source=props.client_security_group,
            target=self.security_group,
            port=HTTPS_PORT,
            description="The migrator reads its secret through the Secrets Manager endpoint",
        )
        self.endpoint = aws("vpc_endpoint").VpcEndpoint(
            self,
            "endpoint",
            vpc_id=props.vpc_id,
            service_name=f"com.amazonaws.{props.ctx.region}.secretsmanager",
            vpc_endpoint_type="Interface",
            private_dns_enabled=True,
            subnet_ids=list(props.subnet_ids),
            security_group_ids=[self.security_group.id],
            policy=policy_document(
                self,
                "policy",
                [
                    {
                        "sid": "ReadTheGivenSecretsOnlyFromThisAccount",
                        "actions": ["secretsmanager:GetSecretValue"],
                        "resources": list(props.readable_secret_arns),
                        "principals": [{"type": "*", "identifiers": ["*"]}],
                        "condition": [
                            {
                                "test": "StringEquals",
                                "variable": "aws:PrincipalAccount",
                                "values": [props.ctx.account_id],
                            }
                        ],
                    }
                ],
            ),
            tags={"Name": name},
        )

    @property
    def dependables(self) -> list:
        """What a caller of the endpoint must wait for: the endpoint and both security group rules."""
        return [self.endpoint, *self.rules]
