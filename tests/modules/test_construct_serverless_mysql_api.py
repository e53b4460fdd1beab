"""ServerlessMysqlApi in a user's own stack: a new VPC or an existing one, its parts exposed, its props checked."""

from __future__ import annotations

import pytest
from cdktf import TerraformOutput

from modules.alarms import AlarmOptions
from modules.app_props import ServerlessMysqlApiProps
from modules.bindings import aws
from modules.database_options import AppUserOptions, DatabaseOptions
from modules.function_options import ApiOptions
from modules.network_options import ExistingVpc, NewVpc
from modules.serverless_mysql_api import ServerlessMysqlApi
from modules.validation import PropError
from tests.modules.construct_support import Template

VPC = "vpc-0123456789abcdef0"
LAMBDA_SUBNETS = ("subnet-0aaaaaaaaaaaaaaaa",)
DB_SUBNETS = ("subnet-0bbbbbbbbbbbbbbbb", "subnet-0cccccccccccccccc")


def _synth(props: ServerlessMysqlApiProps, extra=None) -> Template:
    def build(stack, ctx):
        app = ServerlessMysqlApi(stack, "app", props)
        if extra is not None:
            extra(stack, app)

    return Template.of(build)


@pytest.fixture(scope="module")
def existing_vpc(tmp_path_factory) -> Template:
    props = ServerlessMysqlApiProps(
        name_prefix="shop",
        network=ExistingVpc(vpc_id=VPC, lambda_subnet_ids=LAMBDA_SUBNETS, db_subnet_ids=DB_SUBNETS),
        build_dir=tmp_path_factory.mktemp("build"),
    )
    return _synth(props)


def test_an_existing_vpc_gets_no_vpc_subnets_flow_logs_or_default_group(existing_vpc):
    for owned_by_the_vpc in ("aws_vpc", "aws_subnet", "aws_flow_log", "aws_default_security_group"):
        existing_vpc.resource_count_is(owned_by_the_vpc, 0)


def test_the_parts_use_the_existing_subnets(existing_vpc):
    existing_vpc.has_resource_properties("aws_db_subnet_group", {"subnet_ids": list(DB_SUBNETS)})
    existing_vpc.has_resource_properties("aws_db_proxy", {"vpc_subnet_ids": list(DB_SUBNETS)})
    existing_vpc.has_resource_properties(
        "aws_lambda_function", {"function_name": "shop-api", "vpc_config": {"subnet_ids": list(LAMBDA_SUBNETS)}}
    )
    existing_vpc.has_resource_properties(
        "aws_lambda_function", {"function_name": "shop-migrator", "vpc_config": {"subnet_ids": list(LAMBDA_SUBNETS)}}
    )
    existing_vpc.has_resource_properties("aws_vpc_endpoint", {"vpc_id": VPC, "subnet_ids": list(LAMBDA_SUBNETS)})
    assert {g["vpc_id"] for g in existing_vpc.resources("aws_security_group").values()} == {VPC}


def test_options_reach_the_resources_they_configure(tmp_path):
    props = ServerlessMysqlApiProps(
        name_prefix="shop",
        network=NewVpc(
            vpc_cidr="10.7.0.0/16",
            lambda_subnet_cidrs=("10.7.1.0/24",),
            db_subnet_cidrs=("10.7.11.0/24", "10.7.12.0/24"),
        ),
        database=DatabaseOptions(port=3307, instance_class="db.t4g.small"),
        app_user=AppUserOptions(username="shop_app"),
        api=ApiOptions(routes=("GET /", "GET /times")),
        alarms=AlarmOptions(db_connections_percent=50),
        throwaway=True,
        build_dir=tmp_path,
    )
    stack = _synth(props)
    stack.has_resource_properties(
        "aws_db_instance", {"port": 3307, "instance_class": "db.t4g.small", "deletion_protection": False}
    )
    stack.has_resource_properties(
        "aws_secretsmanager_secret", {"name": "shop/db/shop_app", "recovery_window_in_days": 0}
    )
    stack.has_resource_properties(
        "aws_lambda_function",
        {"function_name": "shop-api", "environment": {"variables": {"DB_USER": "shop_app", "DB_PORT": "3307"}}},
    )
    stack.resource_count_is("aws_apigatewayv2_route", 2)
    # db.t4g.small: 2 GiB / 12582880 = 170 connections, alarm at 50 %
    stack.has_resource_properties("aws_cloudwatch_metric_alarm", {"alarm_name": "shop-db-connections", "threshold": 85})


def test_its_parts_are_attributes_for_outputs_and_grants(tmp_path):
    def extra(stack, app):
        reporting = aws("iam_role").IamRole(stack, "reporting", name="reporting", assume_role_policy="{}")
        assert app.proxy.grant_connect(reporting, "shop_app").name_input == "rds-db-connect-shop_app"
        assert set(app.log_groups) == {
            "proxy",
            "function",
            "migrator",
            "api_access",
            "vpc_flow",
            "db_error",
            "db_slowquery",
        }
        TerraformOutput(stack, "url", value=app.api_url)
        assert app.app_secret.username == "shop_app"

    stack = _synth(ServerlessMysqlApiProps(app_user=AppUserOptions(username="shop_app"), build_dir=tmp_path), extra)
    assert stack.json["output"]["url"]["value"] == stack.ref("aws_apigatewayv2_stage", attribute="invoke_url")
    grant = stack.has_resource_properties("aws_iam_role_policy", {"role": "${aws_iam_role.reporting.id}"})
    (statement,) = stack.policy_statements(grant["policy"])
    assert statement["resources"][0].endswith("/shop_app")


@pytest.mark.parametrize(
    "props, field, allowed",
    [
        ({"region": "us-east-1"}, "network.availability_zones", "zones of region us-east-1"),
        (
            {"app_user": AppUserOptions(username="APP_ADMIN")},
            "app_user.username",
            "a name other than the master user database.username (app_admin)",
        ),
        ({"alarms": AlarmOptions(db_free_storage_gb=30)}, "alarms.db_free_storage_gb", "an integer from 1 to 20"),
        (
            {"database": DatabaseOptions(instance_class="db.x2iedn.24xlarge")},
            "alarms.db_max_connections",
            "required: the memory of db.x2iedn.24xlarge is not known",
        ),
        ({"name_prefix": "Shop"}, "name_prefix", "1-20 lowercase letters"),
        ({"log_retention_days": 10}, "log_retention_days", "one of 1, 3, 5, 7"),
    ],
)
def test_options_that_disagree_are_refused_naming_the_field(props, field, allowed):
    with pytest.raises(PropError) as refused:
        ServerlessMysqlApiProps(**props)
    assert str(refused.value).startswith(f"invalid prop ServerlessMysqlApiProps.{field}=")
    assert allowed in refused.value.allowed


def test_anything_but_its_props_is_refused():
    with pytest.raises(TypeError, match="expected ServerlessMysqlApiProps, got dict"):
        Template.of(lambda stack, ctx: ServerlessMysqlApi(stack, "app", {"name_prefix": "shop"}))
