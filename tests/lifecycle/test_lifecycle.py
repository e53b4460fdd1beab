"""The local lifecycle against the emulator, on the stack the tier shares (deployed by the upgrade, see conftest).

the upgraded stack is the stack this tree deploys -> no changes on re-synth + plan -> state holds the configured
values (and no password) -> the generated app user's password is in no saved plan and no state -> a pool setting
change is an in-place update of the target group and applies -> drift made with boto3 is reported -> an in-place
aws_db_proxy change applies. The destroy is the tier's last module (test_destroy.py).

The tests run in order; run them with ``pytest -m lifecycle -s tests/lifecycle`` to see progress and step times.
"""

from __future__ import annotations

import json

import pytest

from handler import app_contract as contract
from local.control_plane import lifecycle as lc
from local.control_plane.state_files import state_file
from local.control_plane.state_queries import outputs as stack_outputs
from local.control_plane.state_queries import state_list, state_resources, state_show
from modules.packaging import build_handler_zip
from modules.project import REPO_ROOT
from tests.lifecycle.lifecycle_support import STACK

pytestmark = pytest.mark.lifecycle

POOL_CHANGE = {"SMS_LOCAL__MAX_CONNECTIONS_PERCENT": "60"}
PROXY_CHANGE = {**POOL_CHANGE, "SMS_LOCAL__IDLE_CLIENT_TIMEOUT": "900"}
# The architecture, one resource type per element of the architecture diagram (plus what makes it work).
ARCHITECTURE_TYPES = {
    "aws_vpc",
    "aws_subnet",
    "aws_security_group",
    "aws_vpc_security_group_ingress_rule",
    "aws_vpc_security_group_egress_rule",
    "aws_db_subnet_group",
    "aws_db_instance",
    "aws_db_proxy",
    "aws_db_proxy_default_target_group",
    "aws_db_proxy_target",
    "aws_iam_role",
    "aws_lambda_function",
    "aws_cloudwatch_log_group",
    "aws_apigatewayv2_api",
    "aws_apigatewayv2_stage",
    "aws_apigatewayv2_integration",
    "aws_apigatewayv2_route",
    "aws_lambda_permission",
    "aws_secretsmanager_secret",
    "aws_secretsmanager_secret_version",
    "aws_vpc_endpoint",
}


# ---------------------------------------------------------------- tests, in lifecycle order
def test_fresh_checkout_synthesizes_the_same_source_code_hash(deployment, tmp_path):
    expected = build_handler_zip(REPO_ROOT / "handler", tmp_path / "handler.zip").sha256_base64  # this tree's build
    lc.synth(STACK, deployment.project)
    functions = deployment.config()["resource"]["aws_lambda_function"]
    assert [f["source_code_hash"] for f in functions.values()] == [expected, expected]  # one zip, two entry points


def test_deploy_creates_every_resource_type(deployment):
    addresses = state_list(STACK, deployment.project)
    deployed_types = {a.split(".")[0] for a in addresses if not a.startswith("data.")}
    assert deployed_types >= ARCHITECTURE_TYPES, f"missing: {sorted(ARCHITECTURE_TYPES - deployed_types)}"
    configured_types = set(deployment.config()["resource"])
    assert configured_types == deployed_types
    configured_count = sum(len(v) for v in deployment.config()["resource"].values())
    assert len([a for a in addresses if not a.startswith("data.")]) == configured_count


def test_outputs_name_the_api_the_proxy_and_the_secret(deployment):
    outputs = deployment.outputs
    assert outputs["api_url"].startswith("https://") and ".execute-api.ap-northeast-1." in outputs["api_url"]
    assert ".proxy-" in outputs["proxy_endpoint"] or "db-proxy" in outputs["proxy_endpoint"]
    assert outputs["secret_arn"].startswith("arn:aws:secretsmanager:ap-northeast-1:123456789012:secret:")
    assert stack_outputs(STACK, deployment.project) == outputs


def test_re_synthesized_stack_has_no_changes(deployment):
    result = lc.plan(STACK, deployment.project, synthesize=True)
    assert not result.has_changes, f"unexpected changes: {result.changes}"


def test_state_holds_the_configured_values(deployment):
    state = state_resources(STACK, deployment.project)
    proxy = state[deployment.address("aws_db_proxy")]
    assert proxy["require_tls"] is True
    assert proxy["idle_client_timeout"] == 1800
    outputs = deployment.outputs
    # What the local plane reads: every user's secret ARN from the proxy's auth blocks (a set: any order).
    assert sorted(a["secret_arn"] for a in proxy["auth"]) == sorted([outputs["secret_arn"], outputs["app_secret_arn"]])
    assert {(a["auth_scheme"], a["iam_auth"]) for a in proxy["auth"]} == {("SECRETS", "REQUIRED")}
    stage = state[deployment.address("aws_apigatewayv2_stage")]["default_route_settings"][0]
    assert (stage["throttling_burst_limit"], stage["throttling_rate_limit"]) == (200, 100)
    api = state[deployment.function_address(contract.REQUEST_HANDLER)]
    migrator = state[deployment.function_address(contract.MIGRATOR_HANDLER)]
    assert api["environment"][0]["variables"][contract.DB_USER] == "app_user"
    assert migrator["environment"][0]["variables"][contract.DB_USER] == "app_admin"
    assert migrator["environment"][0]["variables"][contract.APP_DB_SECRET_ARN] == outputs["app_secret_arn"]
    assert migrator["function_name"] == outputs["migrator_name"] and api["function_name"] == outputs["function_name"]
    assert not [a for a in state if a.startswith("aws_lambda_invocation.")], "the emulator cannot invoke functions"
    pool = state[deployment.address("aws_db_proxy_default_target_group")]["connection_pool_config"][0]
    assert (
        pool["max_connections_percent"],
        pool["max_idle_connections_percent"],
        pool["connection_borrow_timeout"],
    ) == (70, 50, 120)

    # The function's VPC config points at exactly the subnets and security group the config references.
    function_address = deployment.function_address(contract.REQUEST_HANDLER)
    configured_vpc = deployment.config()["resource"]["aws_lambda_function"][function_address.split(".")[1]]
    vpc_config = state[function_address]["vpc_config"][0]

    def ids(references: list[str]) -> list[str]:
        return sorted(state[ref.removeprefix("${").removesuffix(".id}")]["id"] for ref in references)

    assert sorted(vpc_config["subnet_ids"]) == ids(configured_vpc["vpc_config"]["subnet_ids"])
    assert sorted(vpc_config["security_group_ids"]) == ids(configured_vpc["vpc_config"]["security_group_ids"])
    assert len(vpc_config["subnet_ids"]) >= 1

    shown = state_show(STACK, deployment.address("aws_db_proxy"), deployment.project)
    assert "require_tls" in shown and "= true" in shown.split("require_tls", 1)[1].splitlines()[0]


def test_no_password_in_state(deployment):
    state = state_resources(STACK, deployment.project)
    instance = state[deployment.address("aws_db_instance")]
    assert instance["manage_master_user_password"] is True and instance["password"] is None
    secret = deployment.client("secretsmanager").get_secret_value(SecretId=deployment.outputs["secret_arn"])
    password = json.loads(secret["SecretString"])["password"]
    assert len(password) >= 8
    raw_state = state_file(deployment.project, STACK).read_text()
    assert password not in raw_state


def test_generated_app_password_is_in_no_saved_plan_and_no_state(deployment):
    secrets = deployment.client("secretsmanager")
    arn = deployment.outputs["app_secret_arn"]
    stored = json.loads(secrets.get_secret_value(SecretId=arn)["SecretString"])
    assert stored["username"] == "app_user" and len(stored["password"]) == 32
    key = state_resources(STACK, deployment.project)[deployment.address("aws_kms_key")]["arn"]
    assert secrets.describe_secret(SecretId=arn)["KmsKeyId"] in (key, key.rsplit("/", 1)[-1])
    password = stored["password"].encode()

    code, shown, plan_files = deployment.saved_plan()
    assert code == 0, "a second plan of the deployed stack shows no changes"
    assert "ephemeral.aws_secretsmanager_random_password" in (deployment.stack_config_text())
    assert password not in shown.encode() and all(password not in data for data in plan_files)
    assert len(plan_files) >= 3  # the plan, its config and the prior state were all scanned
    raw_state = state_file(deployment.project, STACK).read_bytes()
    assert password not in raw_state
    version = state_resources(STACK, deployment.project)[deployment.address("aws_secretsmanager_secret_version")]
    assert (version["secret_string"], version["secret_string_wo"], version["has_secret_string_wo"]) == ("", None, True)


def test_pool_setting_change_is_an_in_place_update_of_the_target_group(deployment):
    target_group = deployment.address("aws_db_proxy_default_target_group")
    result = lc.plan(STACK, deployment.project, extra_env=POOL_CHANGE, synthesize=True)
    assert result.changes == {target_group: ("update",)}
    deployment.deploy(POOL_CHANGE, synthesize=False)
    pool = state_resources(STACK, deployment.project)[target_group]["connection_pool_config"][0]
    assert pool["max_connections_percent"] == 60
    proxy_name = state_resources(STACK, deployment.project)[deployment.address("aws_db_proxy")]["name"]
    groups = deployment.client("rds").describe_db_proxy_target_groups(DBProxyName=proxy_name)["TargetGroups"]
    assert groups[0]["ConnectionPoolConfig"]["MaxConnectionsPercent"] == 60


def test_drift_of_the_pool_setting_is_reported(deployment):
    target_group = deployment.address("aws_db_proxy_default_target_group")
    proxy_name = state_resources(STACK, deployment.project)[deployment.address("aws_db_proxy")]["name"]
    deployment.client("rds").modify_db_proxy_target_group(
        DBProxyName=proxy_name,
        TargetGroupName="default",
        ConnectionPoolConfig={"MaxConnectionsPercent": 90, "MaxIdleConnectionsPercent": 50},
    )
    result = lc.plan(STACK, deployment.project, extra_env=POOL_CHANGE, synthesize=False)
    assert result.changes == {target_group: ("update",)}
    assert target_group in result.drift


def test_in_place_proxy_change_applies_and_the_drifted_pool_is_put_back(deployment):
    proxy, target_group = deployment.address("aws_db_proxy"), deployment.address("aws_db_proxy_default_target_group")
    grants = {
        f"aws_iam_role_policy.{n}" for n in deployment.config()["resource"]["aws_iam_role_policy"] if "connect" in n
    }
    result = lc.plan(STACK, deployment.project, extra_env=PROXY_CHANGE, synthesize=True)
    # The connect grants' documents are data sources that read the proxy's ARN: Terraform reads them at apply while
    # the proxy has changes pending, so their policies show as updates; the applied documents are the same.
    assert len(grants) == 2
    assert result.changes == {proxy: ("update",), target_group: ("update",), **dict.fromkeys(grants, ("update",))}
    deployment.deploy(PROXY_CHANGE, synthesize=False)
    assert not lc.plan(STACK, deployment.project, extra_env=PROXY_CHANGE, synthesize=False).has_changes
    resources = state_resources(STACK, deployment.project)
    state = resources[proxy]
    assert state["idle_client_timeout"] == 900 and len(state["auth"]) == 2
    assert resources[target_group]["connection_pool_config"][0]["max_connections_percent"] == 60
    (described,) = deployment.client("rds").describe_db_proxies(DBProxyName=state["name"])["DBProxies"]
    assert described["IdleClientTimeout"] == 900 and len(described["Auth"]) == 2
