"""Network in isolation: a new private VPC over the given zones, or an existing VPC's subnets; SGs on the DB port."""

from __future__ import annotations

import pytest

from modules.network import Network, NetworkProps
from modules.network_options import ExistingVpc, NewVpc
from modules.validation import PropError
from tests.modules.construct_support import Template
from tests.modules.synth_support import TEST_KEY_ARN, sample_context

EXISTING = ExistingVpc(
    vpc_id="vpc-0123456789abcdef0",
    lambda_subnet_ids=("subnet-0aaaaaaaaaaaaaaaa",),
    db_subnet_ids=("subnet-0bbbbbbbbbbbbbbbb", "subnet-0cccccccccccccccc"),
)


def _synth(vpc) -> Template:
    return Template.of(
        lambda stack, ctx: Network(
            stack,
            "net",
            NetworkProps(
                name_prefix="t", ctx=ctx, kms_key_arn=TEST_KEY_ARN, vpc=vpc, db_port=3307, log_retention_days=30
            ),
        )
    )


@pytest.fixture(scope="module")
def network() -> Template:
    return _synth(
        NewVpc(
            vpc_cidr="10.9.0.0/16",
            availability_zones=("ap-northeast-1a", "ap-northeast-1c", "ap-northeast-1d"),
            lambda_subnet_cidrs=("10.9.1.0/24",),
            db_subnet_cidrs=("10.9.11.0/24", "10.9.12.0/24", "10.9.13.0/24"),
        )
    )


def test_subnets_follow_the_props_in_zone_order(network):
    vpc = network.ref("aws_vpc", {"cidr_block": "10.9.0.0/16", "enable_dns_hostnames": True})
    for cidr, zone in (
        ("10.9.1.0/24", "ap-northeast-1a"),
        ("10.9.11.0/24", "ap-northeast-1a"),
        ("10.9.12.0/24", "ap-northeast-1c"),
        ("10.9.13.0/24", "ap-northeast-1d"),
    ):
        network.has_resource_properties(
            "aws_subnet",
            {"cidr_block": cidr, "availability_zone": zone, "vpc_id": vpc, "map_public_ip_on_launch": False},
        )
    network.resource_count_is("aws_subnet", 4)
    network.resource_count_is("aws_internet_gateway", 0)
    network.resource_count_is("aws_nat_gateway", 0)


def test_rules_open_only_the_db_port_from_the_function_and_the_migrator(network):
    rules = [
        *network.resources("aws_vpc_security_group_ingress_rule").values(),
        *network.resources("aws_vpc_security_group_egress_rule").values(),
    ]
    assert len(rules) == 6
    assert {(r["from_port"], r["to_port"], r["ip_protocol"]) for r in rules} == {(3307, 3307, "tcp")}
    proxy = network.ref("aws_security_group", {"name": "t-proxy"})
    for client in ("t-lambda", "t-migrator"):
        network.has_resource_properties(
            "aws_vpc_security_group_ingress_rule",
            {
                "security_group_id": proxy,
                "referenced_security_group_id": network.ref("aws_security_group", {"name": client}),
            },
        )
    network.has_resource_properties(
        "aws_vpc_security_group_ingress_rule",
        {
            "security_group_id": network.ref("aws_security_group", {"name": "t-db"}),
            "referenced_security_group_id": proxy,
        },
    )


def test_flow_logs_use_the_key_and_retention_and_the_default_sg_is_emptied(network):
    network.has_resource_properties(
        "aws_cloudwatch_log_group", {"name": "/vpc/t/flow-logs", "kms_key_id": TEST_KEY_ARN, "retention_in_days": 30}
    )
    network.has_resource_properties("aws_flow_log", {"traffic_type": "ALL"})
    network.has_resource_properties("aws_default_security_group", {"tags": {"Name": "t-default-deny"}})


def test_an_existing_vpc_gets_only_security_groups_and_rules():
    stack = _synth(EXISTING)
    for owned_by_the_vpc in ("aws_vpc", "aws_subnet", "aws_flow_log", "aws_default_security_group"):
        stack.resource_count_is(owned_by_the_vpc, 0)
    stack.resource_count_is("aws_security_group", 4)
    for group in stack.resources("aws_security_group").values():
        assert group["vpc_id"] == "vpc-0123456789abcdef0"


@pytest.mark.parametrize(
    "layout, field, allowed",
    [
        ({"vpc_cidr": "8.8.0.0/16"}, "vpc.vpc_cidr", "a private (RFC 1918) IPv4 block"),
        ({"availability_zones": ("ap-northeast-1a",)}, "vpc.availability_zones", "at least two distinct"),
        ({"db_subnet_cidrs": ("10.1.0.0/24", "10.0.12.0/24")}, "vpc.db_subnet_cidrs", "blocks inside vpc.vpc_cidr"),
        ({"vpc_id": "vpc-1", "lambda_subnet_ids": (), "db_subnet_ids": ()}, "vpc.vpc_id", "a VPC id such as"),
        (
            {
                "vpc_id": "vpc-0123456789abcdef0",
                "lambda_subnet_ids": ("subnet-0aaaaaaaaaaaaaaaa",),
                "db_subnet_ids": (),
            },
            "vpc.db_subnet_ids",
            "at least two distinct subnet ids",
        ),
    ],
)
def test_bad_layouts_are_refused_naming_the_field(layout, field, allowed):
    with pytest.raises(PropError) as refused:
        NetworkProps(name_prefix="t", ctx=sample_context(), kms_key_arn=TEST_KEY_ARN, vpc=layout)
    assert str(refused.value).startswith(f"invalid prop NetworkProps.{field}=")
    assert allowed in refused.value.allowed


def test_a_port_outside_rds_range_is_refused():
    with pytest.raises(
        PropError, match=r"invalid prop NetworkProps\.db_port=80: allowed an integer from 1150 to 65535"
    ):
        NetworkProps(name_prefix="t", ctx=sample_context(), kms_key_arn=TEST_KEY_ARN, db_port=80)
