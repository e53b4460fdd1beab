"""Synth assertions: every resource of the architecture and every security property, on both targets."""

from __future__ import annotations

import json
import re

import pytest

from modules.function import HANDLER_ENTRY
from tests.synth_support import default_synth, function_named, name_of, only, policy_statements, ref, resources, walk

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
def stack(request):
    return default_synth()[1][request.param]


@pytest.fixture(scope="module")
def stacks():
    return default_synth()[1]


def test_every_resource_type_of_the_architecture_is_synthesized(stack):
    missing = [t for t in REQUIRED_TYPES if not resources(stack, t)]
    assert missing == []


def test_outputs(stack):
    outputs = stack["output"]
    assert set(outputs) == OUTPUTS
    assert all(len(o["description"]) > 10 for o in outputs.values())
    proxy_name = next(iter(resources(stack, "aws_db_proxy")))
    assert outputs["proxy_endpoint"]["value"] == ref("aws_db_proxy", proxy_name, "endpoint")
    assert outputs["proxy_arn"]["value"] == ref("aws_db_proxy", proxy_name, "arn")
    assert outputs["proxy_resource_id"]["value"] == f'${{element(split(":", aws_db_proxy.{proxy_name}.arn), 6)}}'
    assert outputs["proxy_target_group"]["value"].startswith("${aws_db_proxy_default_target_group.")
    assert outputs["proxy_role_arn"]["value"] == only(stack, "aws_db_proxy")["role_arn"]
    assert outputs["function_role_arn"]["value"] == function_named(stack, "api")[1]["role"]
    assert "master_user_secret[0].secret_arn" in outputs["secret_arn"]["value"]
    assert outputs["app_secret_arn"]["value"] == ref(
        "aws_secretsmanager_secret", next(iter(resources(stack, "aws_secretsmanager_secret"))), "arn"
    )
    assert outputs["migrator_name"]["value"] == ref(
        "aws_lambda_function", function_named(stack, "migrator")[0], "function_name"
    )
    groups = {k: v.split(".")[1] for k, v in outputs["log_groups"]["value"].items()}
    assert set(groups) == {"proxy", "function", "migrator", "api_access", "vpc_flow", "db_error", "db_slowquery"}
    assert set(groups.values()) == set(resources(stack, "aws_cloudwatch_log_group"))
    assert outputs["alarm_topic_arn"]["value"].startswith("${aws_sns_topic.")
    assert outputs["dashboard_url"]["value"] == (
        "https://ap-northeast-1.console.aws.amazon.com/cloudwatch/home?region=ap-northeast-1#dashboards/dashboard/"
        + only(stack, "aws_cloudwatch_dashboard")["dashboard_name"]
    )


# ---------------------------------------------------------------- network
def test_vpc_has_dns_and_no_internet_path(stack):
    vpc = only(stack, "aws_vpc")
    assert vpc["enable_dns_support"] is True and vpc["enable_dns_hostnames"] is True
    for internet in ("aws_internet_gateway", "aws_nat_gateway", "aws_eip", "aws_route"):
        assert not resources(stack, internet)
    assert all(s["map_public_ip_on_launch"] is False for s in resources(stack, "aws_subnet").values())


def test_db_subnets_span_two_distinct_azs(stack):
    subnet_group = only(stack, "aws_db_subnet_group")
    names = [re.search(r"aws_subnet\.([^.]+)\.id", s).group(1) for s in subnet_group["subnet_ids"]]
    zones = {stack["resource"]["aws_subnet"][n]["availability_zone"] for n in names}
    assert len(names) >= 2 and len(zones) == len(names)


def test_no_open_cidr_anywhere_and_default_sg_is_empty(stack):
    assert not [p for p, v in walk(stack["resource"]) if v in ("0.0.0.0/0", "::/0")]
    default_sg = only(stack, "aws_default_security_group")
    assert "ingress" not in default_sg and "egress" not in default_sg


def test_vpc_flow_logs_go_to_an_encrypted_log_group(stack):
    flow = only(stack, "aws_flow_log")
    assert flow["traffic_type"] == "ALL" and flow["log_destination_type"] == "cloud-watch-logs"


# ---------------------------------------------------------------- database
def test_database_is_private_encrypted_backed_up_mysql84_on_graviton(stack):
    db = only(stack, "aws_db_instance")
    assert db["engine"] == "mysql" and db["engine_version"] == "8.4"
    assert db["instance_class"] == "db.t4g.micro"
    parameters = only(stack, "aws_db_parameter_group")
    assert parameters["family"] == "mysql8.4" and parameters["lifecycle"] == {"create_before_destroy": True}
    assert db["parameter_group_name"].startswith("${aws_db_parameter_group.")
    assert db["publicly_accessible"] is False
    assert db["storage_encrypted"] is True and db["kms_key_id"].startswith("${aws_kms_key.")
    assert db["backup_retention_period"] >= 1
    assert set(db["enabled_cloudwatch_logs_exports"]) >= {"error", "slowquery"}
    assert db["db_subnet_group_name"].startswith("${aws_db_subnet_group.")
    assert db["iam_database_authentication_enabled"] is True


def test_deletion_protection_and_final_snapshot_on_outside_throwaway(stacks):
    aws_db, local_db = only(stacks["aws"], "aws_db_instance"), only(stacks["local"], "aws_db_instance")
    assert aws_db["deletion_protection"] is True and aws_db["skip_final_snapshot"] is False
    assert aws_db["final_snapshot_identifier"]
    assert local_db["deletion_protection"] is False and local_db["skip_final_snapshot"] is True


def test_master_password_is_managed_by_rds_and_in_no_synthesized_value(stack):
    db = only(stack, "aws_db_instance")
    assert db["manage_master_user_password"] is True
    assert db["master_user_secret_kms_key_id"].startswith("${aws_kms_key.")
    for forbidden in ("password", "password_wo"):
        assert forbidden not in db
    # The one secret value Terraform writes is write-only and generated at apply (test_stack_least_privilege.py).
    (version,) = resources(stack, "aws_secretsmanager_secret_version").values()
    assert "secret_string" not in version and "secret_binary" not in version and "secret_string_wo" in version
    allowed = ("manage_master_user_password", "client_password_auth_type", "password_length")
    for path, value in walk(stack):
        key = path.rsplit(".", 1)[-1].lower()
        if "password" in key and key not in allowed:
            pytest.fail(f"password-like key {path}={value!r} in synthesized JSON")


# ---------------------------------------------------------------- proxy
def test_proxy_requires_tls_and_iam_and_uses_each_users_secret(stack):
    proxy = only(stack, "aws_db_proxy")
    assert proxy["engine_family"] == "MYSQL" and proxy["require_tls"] is True
    assert proxy["idle_client_timeout"] == 1800 and proxy["debug_logging"] is False
    master, app = proxy["auth"]
    for auth in (master, app):
        assert auth["auth_scheme"] == "SECRETS" and auth["iam_auth"] == "REQUIRED"
        assert auth["client_password_auth_type"] == "MYSQL_CACHING_SHA2_PASSWORD"  # the 8.4 default plugin
    assert master["secret_arn"].endswith(".master_user_secret[0].secret_arn}")
    assert app["secret_arn"].startswith("${aws_secretsmanager_secret.") and app["secret_arn"].endswith(".arn}")
    assert len(proxy["vpc_subnet_ids"]) >= 2


def test_proxy_role_reads_only_its_users_secrets_and_decrypts_only_via_secrets_manager(stack):
    proxy = only(stack, "aws_db_proxy")
    role_name = re.search(r"aws_iam_role\.([^.]+)\.arn", proxy["role_arn"]).group(1)
    role = stack["resource"]["aws_iam_role"][role_name]
    (trust,) = policy_statements(stack, role["assume_role_policy"])
    assert trust["principals"] == [{"identifiers": ["rds.amazonaws.com"], "type": "Service"}]
    policies = [
        p for p in resources(stack, "aws_iam_role_policy").values() if p["role"] == ref("aws_iam_role", role_name, "id")
    ]
    (policy,) = policies
    read, decrypt = policy_statements(stack, policy["policy"])
    assert read["actions"] == ["secretsmanager:GetSecretValue"]
    assert read["resources"] == [auth["secret_arn"] for auth in only(stack, "aws_db_proxy")["auth"]]
    assert decrypt["actions"] == ["kms:Decrypt"] and decrypt["resources"][0].startswith("${aws_kms_key.")
    assert decrypt["condition"][0]["variable"] == "kms:ViaService"
    assert decrypt["condition"][0]["values"] == ["secretsmanager.ap-northeast-1.amazonaws.com"]


def test_proxy_logs_to_its_own_group_created_first_and_has_long_timeouts(stack):
    proxy = only(stack, "aws_db_proxy")
    (group_name,) = [
        n
        for n, g in resources(stack, "aws_cloudwatch_log_group").items()
        if g["name"] == f"/aws/rds/proxy/{proxy['name']}"
    ]
    assert proxy["depends_on"] == [f"aws_cloudwatch_log_group.{group_name}"]
    group = stack["resource"]["aws_cloudwatch_log_group"][group_name]
    assert group["kms_key_id"].startswith("${aws_kms_key.") and group["retention_in_days"] > 0
    assert proxy["timeouts"] == {"create": "60m", "update": "60m", "delete": "90m"}


def test_replacing_the_proxy_replaces_its_target_group_and_target(stack):
    proxy_name = next(iter(resources(stack, "aws_db_proxy")))
    for rtype in ("aws_db_proxy_default_target_group", "aws_db_proxy_target"):
        assert only(stack, rtype)["lifecycle"]["replace_triggered_by"] == [f"aws_db_proxy.{proxy_name}.id"]


def test_unclearable_pool_fields_are_ignored_while_unset(stack):
    lifecycle = only(stack, "aws_db_proxy_default_target_group")["lifecycle"]
    assert lifecycle["ignore_changes"] == [
        "connection_pool_config[0].init_query",
        "connection_pool_config[0].session_pinning_filters",
    ]


def test_target_group_pool_settings_follow_the_reference_experiment_and_aws_defaults(stack):
    pool = only(stack, "aws_db_proxy_default_target_group")["connection_pool_config"]
    assert pool == {
        "max_connections_percent": 70,
        "max_idle_connections_percent": 50,
        "connection_borrow_timeout": 120,
        "session_pinning_filters": [],
    }
    target = only(stack, "aws_db_proxy_target")
    db_name = next(iter(resources(stack, "aws_db_instance")))
    assert target["db_instance_identifier"] == ref("aws_db_instance", db_name, "identifier")
    assert target["target_group_name"].startswith("${aws_db_proxy_default_target_group.")


# ---------------------------------------------------------------- function
def test_lambda_runs_in_the_lambda_subnets_with_its_sg_and_no_password(stack):
    _, fn = function_named(stack, "api")
    assert re.fullmatch(r"python3\.(1[2-9])", fn["runtime"])
    assert fn["handler"] == HANDLER_ENTRY
    lambda_subnets = {
        ref("aws_subnet", n, "id") for n, s in resources(stack, "aws_subnet").items() if "lambda-subnet" in n
    }
    assert set(fn["vpc_config"]["subnet_ids"]) == lambda_subnets and lambda_subnets
    lambda_sg = name_of(stack, "aws_security_group", lambda g: g["name"].endswith("-lambda"))
    assert fn["vpc_config"]["security_group_ids"] == [ref("aws_security_group", lambda_sg, "id")]
    env = fn["environment"]["variables"]
    assert env["DB_HOST"].endswith(".endpoint}") and env["DB_HOST"].startswith("${aws_db_proxy.")
    assert {k: env[k] for k in ("DB_PORT", "DB_NAME", "DB_USER", "DB_TABLE", "DB_AUTH")} == {
        "DB_PORT": "3306",
        "DB_NAME": "app",
        "DB_USER": "app_user",
        "DB_TABLE": "access_times",
        "DB_AUTH": "iam",
    }
    assert not [k for k in env if re.search("PASS|SECRET|TOKEN", k)]
    assert fn["source_code_hash"] and fn["filename"].startswith("assets/")
    assert fn["logging_config"]["log_format"] == "JSON"


def test_lambda_role_has_vpc_access_and_rds_db_connect_scoped_to_proxy_id_and_the_app_user(stack):
    _, fn = function_named(stack, "api")
    role_name = re.search(r"aws_iam_role\.([^.]+)\.arn", fn["role"]).group(1)
    attachments = [
        a["policy_arn"]
        for a in resources(stack, "aws_iam_role_policy_attachment").values()
        if a["role"] == ref("aws_iam_role", role_name, "name")
    ]
    assert attachments == [
        "arn:${data.aws_partition.partition.partition}:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole"
    ]
    inline = [
        p for p in resources(stack, "aws_iam_role_policy").values() if p["role"] == ref("aws_iam_role", role_name, "id")
    ]
    (connect,) = [s for p in inline for s in policy_statements(stack, p["policy"])]
    assert connect["actions"] == ["rds-db:connect"]
    proxy_name = next(iter(resources(stack, "aws_db_proxy")))
    assert connect["resources"] == [
        "arn:${data.aws_partition.partition.partition}:rds-db:ap-northeast-1:"
        "${data.aws_caller_identity.caller.account_id}:dbuser:"
        f'${{element(split(":", aws_db_proxy.{proxy_name}.arn), 6)}}/app_user'
    ]


def test_log_groups_have_retention_and_encryption(stack):
    groups = resources(stack, "aws_cloudwatch_log_group").values()
    names = {g["name"] for g in groups}
    assert {f"/aws/lambda/{f['function_name']}" for f in resources(stack, "aws_lambda_function").values()} <= names
    assert all(g["retention_in_days"] > 0 and g["kms_key_id"].startswith("${aws_kms_key.") for g in groups)


# ---------------------------------------------------------------- alarms and dashboard
def test_every_alarm_notifies_the_encrypted_topic_and_names_its_source(stack):
    topic_name = next(iter(resources(stack, "aws_sns_topic")))
    assert only(stack, "aws_sns_topic")["kms_master_key_id"].startswith("${aws_kms_key.")
    alarms = resources(stack, "aws_cloudwatch_metric_alarm").values()
    assert len(alarms) == 11
    for alarm in alarms:
        assert alarm["alarm_actions"] == [ref("aws_sns_topic", topic_name, "arn")] == alarm["ok_actions"]
        assert "https://docs.aws.amazon.com/" in alarm["alarm_description"]
    by_metric = {a["metric_name"]: a for a in alarms}
    assert by_metric["DatabaseConnections"]["threshold"] == 85 * 80 // 100  # db.t4g.micro: 1 GiB / 12582880
    assert by_metric["DatabaseConnectionsBorrowLatency"]["threshold"] == 100_000  # microseconds
    assert by_metric["Duration"]["threshold"] == 8000  # 80 % of the 10 s timeout, in ms
    assert set(by_metric["AvailabilityPercentage"]["dimensions"]) == {"ProxyName", "TargetGroup", "TargetRole"}
    assert by_metric["5xx"]["dimensions"]["Stage"] == "$default"
    assert not resources(stack, "aws_sns_topic_subscription"), "no subscription unless addresses are set"


def test_key_policy_lets_cloudwatch_use_the_key_for_this_account_only(stack):
    policy = json.loads(only(stack, "aws_kms_key")["policy"])
    (statement,) = [s for s in policy["Statement"] if s["Principal"] == {"Service": "cloudwatch.amazonaws.com"}]
    assert statement["Action"] == ["kms:Decrypt", "kms:GenerateDataKey*"]
    assert statement["Condition"] == {
        "StringEquals": {"aws:SourceAccount": "${data.aws_caller_identity.caller.account_id}"}
    }


def test_dashboard_compares_proxy_clients_with_db_connections(stack):
    body = json.loads(only(stack, "aws_cloudwatch_dashboard")["dashboard_body"])
    metrics = {m[1] for w in body["widgets"] for m in w["properties"]["metrics"]}
    assert metrics == {
        "ClientConnections",
        "DatabaseConnections",
        "DatabaseConnectionsBorrowLatency",
        "ConcurrentExecutions",
        "Errors",
        "4xx",
        "5xx",
    }
    (first,) = [w for w in body["widgets"] if w["x"] == 0 and w["y"] == 0]
    assert [m[1] for m in first["properties"]["metrics"]] == ["ClientConnections", "DatabaseConnections"]


# ---------------------------------------------------------------- API
def test_http_api_routes_to_lambda_with_payload_2_and_access_logs(stack):
    api_name = next(iter(resources(stack, "aws_apigatewayv2_api")))
    assert only(stack, "aws_apigatewayv2_api")["protocol_type"] == "HTTP"
    integration = only(stack, "aws_apigatewayv2_integration")
    assert integration["integration_type"] == "AWS_PROXY" and integration["payload_format_version"] == "2.0"
    assert integration["integration_uri"] == ref("aws_lambda_function", function_named(stack, "api")[0], "arn")
    route = only(stack, "aws_apigatewayv2_route")
    assert route["route_key"] == "ANY /" and route["target"].startswith("integrations/${aws_apigatewayv2_integration.")
    stage = only(stack, "aws_apigatewayv2_stage")
    assert stage["name"] == "$default" and stage["auto_deploy"] is True
    assert json.loads(stage["access_log_settings"]["format"])["requestId"] == "$context.requestId"
    permission = only(stack, "aws_lambda_permission")
    assert permission["principal"] == "apigateway.amazonaws.com"
    assert permission["source_arn"] == ref("aws_apigatewayv2_api", api_name, "execution_arn") + "/*/*/"


# ---------------------------------------------------------------- targets and backend
def test_local_target_talks_only_to_the_loopback_emulator(stacks):
    (provider,) = stacks["local"]["provider"]["aws"]
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
    assert all(re.fullmatch(r"http://127\.0\.0\.1:\d+", url) for url in endpoints.values())
    assert provider["skip_requesting_account_id"] is False and provider["max_retries"] == 1
    # Relative to the stack directory: the synthesized JSON is the same in every checkout.
    assert stacks["local"]["terraform"]["backend"]["local"]["path"] == "../../../terraform.local.tfstate"


def test_aws_target_has_no_endpoints_and_no_credentials_in_code(stacks):
    (provider,) = stacks["aws"]["provider"]["aws"]
    for key in ("endpoints", "access_key", "secret_key", "token"):
        assert key not in provider
    assert stacks["aws"]["terraform"]["required_providers"]["aws"]["version"] == "5.100.0"
