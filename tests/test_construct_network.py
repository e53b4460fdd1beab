"""Network in isolation: private subnets over the given zones, SGs chained on the DB port only, flow logs."""

from __future__ import annotations

import pytest

from modules.network import Network, NetworkProps
from tests.synth_support import TEST_KEY_ARN, only, resources, synth_construct


@pytest.fixture(scope="module")
def network():
    return synth_construct(
        lambda stack, ctx: Network(
            stack,
            "net",
            NetworkProps(
                name_prefix="t",
                ctx=ctx,
                kms_key_arn=TEST_KEY_ARN,
                vpc_cidr="10.9.0.0/16",
                availability_zones=("ap-northeast-1a", "ap-northeast-1c", "ap-northeast-1d"),
                lambda_subnet_cidrs=("10.9.1.0/24",),
                db_subnet_cidrs=("10.9.11.0/24", "10.9.12.0/24", "10.9.13.0/24"),
                db_port=3307,
                log_retention_days=30,
            ),
        )
    )


def test_subnets_follow_the_props_in_zone_order(network):
    assert only(network, "aws_vpc")["cidr_block"] == "10.9.0.0/16"
    subnets = {s["cidr_block"]: s["availability_zone"] for s in resources(network, "aws_subnet").values()}
    assert subnets == {
        "10.9.1.0/24": "ap-northeast-1a",
        "10.9.11.0/24": "ap-northeast-1a",
        "10.9.12.0/24": "ap-northeast-1c",
        "10.9.13.0/24": "ap-northeast-1d",
    }
    assert not resources(network, "aws_internet_gateway") and not resources(network, "aws_nat_gateway")


def test_rules_open_only_the_db_port_from_the_function_and_the_migrator(network):
    rules = [
        *resources(network, "aws_vpc_security_group_ingress_rule").values(),
        *resources(network, "aws_vpc_security_group_egress_rule").values(),
    ]
    assert len(rules) == 6
    assert {(r["from_port"], r["to_port"], r["ip_protocol"]) for r in rules} == {(3307, 3307, "tcp")}
    groups = {g["name"]: n for n, g in resources(network, "aws_security_group").items()}
    assert set(groups) == {"t-lambda", "t-proxy", "t-db", "t-migrator"}
    into_proxy = {
        r["referenced_security_group_id"]
        for r in resources(network, "aws_vpc_security_group_ingress_rule").values()
        if r["security_group_id"] == f"${{aws_security_group.{groups['t-proxy']}.id}}"
    }
    assert into_proxy == {f"${{aws_security_group.{groups[n]}.id}}" for n in ("t-lambda", "t-migrator")}


def test_flow_logs_use_the_key_and_retention(network):
    group = only(network, "aws_cloudwatch_log_group")
    assert (group["name"], group["kms_key_id"], group["retention_in_days"]) == ("/vpc/t/flow-logs", TEST_KEY_ARN, 30)
    assert only(network, "aws_flow_log")["traffic_type"] == "ALL"
