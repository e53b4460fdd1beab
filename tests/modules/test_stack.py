"""The default stacks, both targets: how the parts are wired to each other, the settings and the target.

What each part does on its own is tested per construct (tests/modules/test_construct_*.py); here only the wiring and the
properties of the whole stack (nothing reaches the internet, no password anywhere, the target's provider).
"""

from __future__ import annotations

import pytest

from handler import app_contract as contract
from modules.function import HANDLER_ENTRY
from modules.local_target import LOCAL_MAX_ATTEMPTS
from tests.modules.construct_support import ABSENT, Template
from tests.modules.synth_support import default_synth, walk

REQUIRED_TYPES = (
    "aws_vpc",
    "aws_subnet",
    "aws_security_group",
    "aws_vpc_security_group_ingress_rule",
    "aws_vpc_security_group_egress_rule",
    "aws_default_security_group",
    "aws_flow_log",
    "aws_kms_key",
    "aws_db_subnet_group",
    "aws_db_parameter_group",
    "aws_db_instance",
    "aws_db_proxy",
    "aws_db_proxy_default_target_group",
    "aws_db_proxy_target",
    "aws_iam_role",
    "aws_iam_role_policy",
    "aws_iam_role_policy_attachment",
    "aws_cloudwatch_log_group",
    "aws_lambda_function",
    "aws_secretsmanager_secret",
    "aws_secretsmanager_secret_version",
    "aws_vpc_endpoint",
    "aws_apigatewayv2_api",
    "aws_apigatewayv2_integration",
    "aws_apigatewayv2_route",
    "aws_apigatewayv2_stage",
    "aws_lambda_permission",
    "aws_sns_topic",
    "aws_cloudwatch_metric_alarm",
    "aws_cloudwatch_dashboard",
)
OUTPUTS = {
    "api_url",
    "proxy_endpoint",
    "proxy_arn",
    "proxy_resource_id",
    "proxy_target_group",
    "proxy_role_arn",
    "function_role_arn",
    "db_endpoint",
    "secret_arn",
    "app_secret_arn",
    "function_name",
    "migrator_name",
    "log_groups",
    "dashboard_name",
    "dashboard_url",
    "alarm_topic_arn",
}


@pytest.fixture(scope="module", params=["local", "aws"])
def stack(request) -> Template:
    return Template(default_synth()[1][request.param])


@pytest.fixture(scope="module")
def stacks() -> dict[str, Template]:
    return {name: Template(body) for name, body in default_synth()[1].items()}


def test_every_resource_type_of_the_architecture_is_synthesized(stack):
    assert [t for t in REQUIRED_TYPES if not stack.resources(t)] == []


def test_outputs_name_the_resources_they_describe(stack):
    outputs = {name: output["value"] for name, output in stack.json["output"].items()}
    assert set(outputs) == OUTPUTS
    assert all(len(o["description"]) > 10 for o in stack.json["output"].values())
    proxy = stack.address("aws_db_proxy")
    assert outputs["proxy_endpoint"] == f"${{{proxy}.endpoint}}" and outputs["proxy_arn"] == f"${{{proxy}.arn}}"
    assert outputs["proxy_resource_id"] == f'${{element(split(":", {proxy}.arn), 6)}}'
    assert outputs["proxy_target_group"] == stack.ref("aws_db_proxy_default_target_group", attribute="name")
    assert outputs["proxy_role_arn"] == stack.has_resource_properties("aws_db_proxy", {})["role_arn"]
    api_fn = stack.has_resource_properties("aws_lambda_function", {"handler": HANDLER_ENTRY})
    assert outputs["function_role_arn"] == api_fn["role"]
    assert outputs["function_name"] == stack.ref("aws_lambda_function", {"handler": HANDLER_ENTRY}, "function_name")
    migrator = {"handler": contract.MIGRATOR_HANDLER}
    assert outputs["migrator_name"] == stack.ref("aws_lambda_function", migrator, "function_name")
    assert outputs["db_endpoint"] == stack.ref("aws_db_instance", attribute="address")
    assert outputs["secret_arn"] == stack.ref("aws_db_instance", attribute="master_user_secret[0].secret_arn")
    assert outputs["app_secret_arn"] == stack.ref("aws_secretsmanager_secret", attribute="arn")
    assert outputs["api_url"] == stack.ref("aws_apigatewayv2_stage", attribute="invoke_url")
    assert outputs["alarm_topic_arn"] == stack.ref("aws_sns_topic", attribute="arn")
    groups = {kind: stack.resolve(name)["name"] for kind, name in outputs["log_groups"].items()}
    assert set(groups) == {"proxy", "function", "migrator", "api_access", "vpc_flow", "db_error", "db_slowquery"}
    assert sorted(groups.values()) == sorted(g["name"] for g in stack.resources("aws_cloudwatch_log_group").values())
    dashboard = stack.has_resource_properties("aws_cloudwatch_dashboard", {})["dashboard_name"]
    assert outputs["dashboard_url"] == (
        "https://ap-northeast-1.console.aws.amazon.com/cloudwatch/home?region=ap-northeast-1#dashboards/dashboard/"
        + dashboard
    )


# ---------------------------------------------------------------- the whole stack
def test_nothing_reaches_the_internet_and_no_cidr_is_open(stack):
    for internet in ("aws_internet_gateway", "aws_nat_gateway", "aws_eip", "aws_route"):
        stack.resource_count_is(internet, 0)
    assert all(s["map_public_ip_on_launch"] is False for s in stack.resources("aws_subnet").values())
    assert not [p for p, v in walk(stack.json["resource"]) if v in ("0.0.0.0/0", "::/0")]
    stack.has_resource_properties("aws_default_security_group", {"ingress": ABSENT, "egress": ABSENT})


def test_no_password_in_any_synthesized_value(stack):
    allowed = ("manage_master_user_password", "client_password_auth_type", "password_length")
    for path, value in walk(stack.json):
        key = path.rsplit(".", 1)[-1].lower()
        if "password" in key and key not in allowed:
            pytest.fail(f"password-like key {path}={value!r} in synthesized JSON")


def test_everything_stored_is_encrypted_with_the_stack_key(stack):
    key = stack.ref("aws_kms_key", attribute="arn")
    assert {g["kms_key_id"] for g in stack.resources("aws_cloudwatch_log_group").values()} == {key}
    stack.has_resource_properties("aws_db_instance", {"kms_key_id": key, "master_user_secret_kms_key_id": key})
    stack.has_resource_properties("aws_secretsmanager_secret", {"kms_key_id": key})
    stack.has_resource_properties("aws_sns_topic", {"kms_master_key_id": key})
    assert {f["kms_key_arn"] for f in stack.resources("aws_lambda_function").values()} == {key}


# ---------------------------------------------------------------- wiring
def test_db_and_proxy_sit_in_the_db_subnets_of_two_zones_and_the_function_in_the_lambda_subnets(stack):
    subnets = {f"${{aws_subnet.{n}.id}}": s for n, s in stack.resources("aws_subnet").items()}
    db_subnets = [ref for ref, s in subnets.items() if "-db-" in s["tags"]["Name"]]
    lambda_subnets = [ref for ref, s in subnets.items() if "-lambda-" in s["tags"]["Name"]]
    assert len({subnets[ref]["availability_zone"] for ref in db_subnets}) == len(db_subnets) >= 2
    stack.has_resource_properties("aws_db_subnet_group", {"subnet_ids": db_subnets})
    stack.has_resource_properties("aws_db_proxy", {"vpc_subnet_ids": db_subnets})
    for function in stack.resources("aws_lambda_function").values():
        assert function["vpc_config"]["subnet_ids"] == lambda_subnets


def test_security_groups_are_attached_where_the_chain_says(stack):
    group = {
        g["name"].rsplit("-", 1)[-1]: stack.ref("aws_security_group", {"name": g["name"]})
        for g in stack.resources("aws_security_group").values()
    }
    stack.has_resource_properties("aws_db_instance", {"vpc_security_group_ids": [group["db"]]})
    stack.has_resource_properties("aws_db_proxy", {"vpc_security_group_ids": [group["proxy"]]})
    stack.has_resource_properties(
        "aws_lambda_function", {"handler": HANDLER_ENTRY, "vpc_config": {"security_group_ids": [group["lambda"]]}}
    )
    stack.has_resource_properties("aws_vpc_endpoint", {"security_group_ids": [group["endpoint"]]})


def test_the_proxy_fronts_the_db_with_its_master_secret_and_the_app_users_secret(stack):
    db = stack.address("aws_db_instance")
    stack.has_resource_properties("aws_db_proxy_target", {"db_instance_identifier": f"${{{db}.identifier}}"})
    master, app = stack.has_resource_properties("aws_db_proxy", {})["auth"]
    assert master["secret_arn"] == f"${{{db}.master_user_secret[0].secret_arn}}"
    assert app["secret_arn"] == stack.ref("aws_secretsmanager_secret", attribute="arn")


def test_the_request_function_reaches_the_db_only_through_the_proxy(stack):
    env = stack.has_resource_properties("aws_lambda_function", {"handler": HANDLER_ENTRY})["environment"]["variables"]
    assert env["DB_HOST"] == stack.ref("aws_db_proxy", attribute="endpoint")
    assert (env["DB_PORT"], env["DB_NAME"], env["DB_USER"], env["DB_AUTH"]) == ("3306", "app", "app_user", "iam")


def test_the_api_sends_its_routes_to_the_request_function_and_only_they_may_invoke_it(stack):
    function = stack.address("aws_lambda_function", {"handler": HANDLER_ENTRY})
    stack.has_resource_properties("aws_apigatewayv2_integration", {"integration_uri": f"${{{function}.arn}}"})
    integration = stack.ref("aws_apigatewayv2_integration")
    stack.has_resource_properties(
        "aws_apigatewayv2_route", {"route_key": "ANY /", "target": f"integrations/{integration}"}
    )
    stack.has_resource_properties(
        "aws_lambda_permission",
        {
            "function_name": f"${{{function}.function_name}}",
            "source_arn": stack.ref("aws_apigatewayv2_api", attribute="execution_arn") + "/*/*/",
        },
    )


def test_alarms_watch_this_stacks_resources_and_notify_its_topic(stack):
    topic = stack.ref("aws_sns_topic", attribute="arn")
    alarms = stack.resources("aws_cloudwatch_metric_alarm").values()
    assert len(alarms) == 11 and all(a["alarm_actions"] == [topic] == a["ok_actions"] for a in alarms)
    dimensions = {a["metric_name"]: a["dimensions"] for a in alarms}
    assert dimensions["DatabaseConnections"] == {
        "DBInstanceIdentifier": stack.ref("aws_db_instance", attribute="identifier")
    }
    assert dimensions["ClientConnections"] == {"ProxyName": stack.ref("aws_db_proxy", attribute="name")}
    assert dimensions["Errors"] == {
        "FunctionName": stack.ref("aws_lambda_function", {"handler": HANDLER_ENTRY}, "function_name")
    }
    assert dimensions["5xx"] == {"ApiId": stack.ref("aws_apigatewayv2_api"), "Stage": "$default"}
    stack.resource_count_is("aws_sns_topic_subscription", 0)  # no subscription unless addresses are set


def test_the_default_settings_reach_their_resources(stack):
    stack.has_resource_properties("aws_db_instance", {"engine_version": "8.4", "instance_class": "db.t4g.micro"})
    stack.has_resource_properties(
        "aws_db_proxy_default_target_group",
        {"connection_pool_config": {"max_connections_percent": 70, "max_idle_connections_percent": 50}},
    )
    stack.has_resource_properties(
        "aws_apigatewayv2_stage",
        {"default_route_settings": {"throttling_burst_limit": 200, "throttling_rate_limit": 100}},
    )
    # the DB-connections alarm at 80 % of db.t4g.micro's 85 connections (1 GiB / 12582880)
    stack.has_resource_properties(
        "aws_cloudwatch_metric_alarm", {"metric_name": "DatabaseConnections", "threshold": 68}
    )


# ---------------------------------------------------------------- targets and backend
def test_deletion_protection_and_final_snapshot_on_outside_throwaway(stacks):
    stacks["aws"].has_resource_properties(
        "aws_db_instance",
        {"deletion_protection": True, "skip_final_snapshot": False, "final_snapshot_identifier": "sms-db-final"},
    )
    stacks["local"].has_resource_properties(
        "aws_db_instance", {"deletion_protection": False, "skip_final_snapshot": True}
    )


def test_local_target_talks_only_to_the_loopback_emulator(stacks):
    (provider,) = stacks["local"].json["provider"]["aws"]
    endpoints = provider["endpoints"][0]
    assert set(endpoints) >= {
        "ec2",
        "iam",
        "rds",
        "secretsmanager",
        "lambda",
        "apigatewayv2",
        "logs",
        "sts",
        "kms",
        "cloudwatch",
        "sns",
    }
    assert set(endpoints.values()) == {"http://127.0.0.1:4599"}
    assert (provider["access_key"], provider["secret_key"]) == ("test", "test")
    assert provider["skip_requesting_account_id"] is False and provider["max_retries"] == LOCAL_MAX_ATTEMPTS == 3
    # Relative to the stack directory: the synthesized JSON is the same in every checkout.
    assert stacks["local"].json["terraform"]["backend"]["local"]["path"] == "../../../terraform.local.tfstate"


def test_aws_target_has_no_endpoints_and_no_credentials_in_code(stacks):
    (provider,) = stacks["aws"].json["provider"]["aws"]
    for key in ("endpoints", "access_key", "secret_key", "token"):
        assert key not in provider
    assert stacks["aws"].json["terraform"]["required_providers"]["aws"]["version"] == "5.100.0"
