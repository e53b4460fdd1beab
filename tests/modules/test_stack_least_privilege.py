"""Least privilege inside the stack, on both targets: the request path's own DB user, the migrator the deploy runs,
a generated secret no synthesized file holds, the migrator's private path to Secrets Manager, and throttling."""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path

import pytest

from handler import app_contract as contract
from modules.migrator import MIGRATION_TRIGGERS
from tests.modules.synth_support import (
    default_synth,
    function_named,
    name_of,
    only,
    policy_statements,
    ref,
    resources,
    role_policies,
    synth_environments,
    walk,
)

VPC_ACCESS = (
    "arn:${data.aws_partition.partition.partition}:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole"
)


@pytest.fixture(scope="module", params=["local", "aws"])
def stack(request):
    return default_synth()[1][request.param]


@pytest.fixture(scope="module")
def stacks():
    return default_synth()[1]


def _connect_arn(stack, user: str) -> str:
    proxy = next(iter(resources(stack, "aws_db_proxy")))
    return (
        "arn:${data.aws_partition.partition.partition}:rds-db:ap-northeast-1:"
        f'${{data.aws_caller_identity.caller.account_id}}:dbuser:${{element(split(":", aws_db_proxy.{proxy}.arn), 6)}}/'
        + user
    )


def _app_secret_arn(stack) -> str:
    return ref("aws_secretsmanager_secret", next(iter(resources(stack, "aws_secretsmanager_secret"))), "arn")


# ---------------------------------------------------------------- who logs in as whom
def test_request_function_logs_in_as_the_app_user_not_the_master(stack):
    env = function_named(stack, "api")[1]["environment"]["variables"]
    assert env[contract.DB_USER] == "app_user" != only(stack, "aws_db_instance")["username"] == "app_admin"


@pytest.mark.parametrize("function, user", [("api", "app_user"), ("migrator", "app_admin")])
def test_each_function_may_connect_through_the_proxy_only_as_its_own_user(stack, function, user):
    attached, statements = role_policies(stack, function_named(stack, function)[1]["role"])
    assert attached == [VPC_ACCESS]
    (connect,) = [s for s in statements if "rds-db:connect" in s["actions"]]
    assert connect["actions"] == ["rds-db:connect"] and connect["resources"] == [_connect_arn(stack, user)]


def test_request_function_switches_users_only_once_its_grant_exists(stack):
    grants = {
        name: policy
        for name, policy in resources(stack, "aws_iam_role_policy").items()
        if policy["name"].startswith("rds-db-connect-")
    }
    assert {p["name"] for p in grants.values()} == {"rds-db-connect-app_user", "rds-db-connect-app_admin"}
    # create_before_destroy would be stored on the proxy the grants read: a replaced proxy would clash by name
    assert not [p for p in grants.values() if "lifecycle" in p]
    (app_grant,) = [n for n, p in grants.items() if p["name"] == "rds-db-connect-app_user"]
    assert f"aws_iam_role_policy.{app_grant}" in function_named(stack, "api")[1]["depends_on"]


def test_no_policy_grants_a_wildcard_action_or_another_db_user(stack):
    connect_resources = set()
    for document in stack["data"]["aws_iam_policy_document"].values():
        for statement in document["statement"]:
            assert not [a for a in statement.get("actions", []) if a == "*" or a.endswith(":*")], statement
            if "rds-db:connect" in statement.get("actions", []):
                connect_resources.update(statement["resources"])
    assert connect_resources == {_connect_arn(stack, "app_user"), _connect_arn(stack, "app_admin")}


# ---------------------------------------------------------------- the migrator
def test_migrator_is_the_same_zip_with_its_own_entry_point_environment_and_role(stack):
    _, api = function_named(stack, "api")
    _, migrator = function_named(stack, "migrator")
    assert migrator["handler"] == contract.MIGRATOR_HANDLER
    assert (migrator["filename"], migrator["source_code_hash"]) == (api["filename"], api["source_code_hash"])
    assert migrator["role"] != api["role"] and migrator["timeout"] == 300
    proxy = next(iter(resources(stack, "aws_db_proxy")))
    assert migrator["environment"]["variables"] == {
        contract.DB_HOST: ref("aws_db_proxy", proxy, "endpoint"),
        contract.DB_PORT: "3306",
        contract.DB_NAME: "app",
        contract.DB_USER: "app_admin",
        contract.DB_TABLE: "access_times",
        contract.DB_AUTH: contract.AUTH_IAM,
        contract.APP_DB_USER: "app_user",
        contract.APP_DB_SECRET_ARN: _app_secret_arn(stack),
    }
    migrator_sg = name_of(stack, "aws_security_group", lambda g: g["name"].endswith("-migrator"))
    assert migrator["vpc_config"] == {
        "subnet_ids": api["vpc_config"]["subnet_ids"],
        "security_group_ids": [ref("aws_security_group", migrator_sg, "id")],
    }
    group = name_of(
        stack, "aws_cloudwatch_log_group", lambda g: g["name"] == f"/aws/lambda/{migrator['function_name']}"
    )
    assert migrator["logging_config"]["log_group"] == ref("aws_cloudwatch_log_group", group, "name")


def test_migrator_reads_only_the_app_secret_and_decrypts_only_via_secrets_manager(stack):
    _, statements = role_policies(stack, function_named(stack, "migrator")[1]["role"])
    by_action = {tuple(s["actions"]): s for s in statements}
    assert set(by_action) == {("secretsmanager:GetSecretValue",), ("kms:Decrypt",), ("rds-db:connect",)}
    assert by_action[("secretsmanager:GetSecretValue",)]["resources"] == [_app_secret_arn(stack)]
    decrypt = by_action[("kms:Decrypt",)]
    assert decrypt["resources"][0].startswith("${aws_kms_key.")
    assert decrypt["condition"] == [
        {
            "test": "StringEquals",
            "variable": "kms:ViaService",
            "values": ["secretsmanager.ap-northeast-1.amazonaws.com"],
        }
    ]


def test_local_stack_deploys_the_migrator_without_invoking_it(stacks):
    local = stacks["local"]
    assert not resources(local, "aws_lambda_invocation")
    assert not [d for d in function_named(local, "api")[1]["depends_on"] if "invocation" in d]


def test_aws_stack_runs_the_migrator_once_per_change_before_the_request_function_changes(stacks):
    aws = stacks["aws"]
    ((name, invocation),) = resources(aws, "aws_lambda_invocation").items()
    assert invocation["function_name"] == ref(
        "aws_lambda_function", function_named(aws, "migrator")[0], "function_name"
    )
    assert json.loads(invocation["input"]) == {"schema_version": contract.SCHEMA_VERSION}  # nothing secret
    version = next(iter(resources(aws, "aws_secretsmanager_secret_version")))
    assert tuple(invocation["triggers"]) == tuple(sorted(MIGRATION_TRIGGERS))
    assert invocation["triggers"] == {
        "schema_version": str(contract.SCHEMA_VERSION),
        "app_user": "app_user",
        "app_secret_version": ref("aws_secretsmanager_secret_version", version, "secret_string_wo_version"),
    }
    # It runs once the proxy reaches the DB, the grants exist and the migrator can reach Secrets Manager.
    waits_for = {d.split(".")[0] for d in invocation["depends_on"]}
    assert {"aws_db_proxy_target", "aws_vpc_endpoint", "aws_iam_role_policy"} <= waits_for
    assert {"aws_vpc_security_group_egress_rule", "aws_vpc_security_group_ingress_rule"} <= waits_for
    assert f"aws_lambda_invocation.{name}" in function_named(aws, "api")[1]["depends_on"]


# ---------------------------------------------------------------- the generated secret
def test_app_secret_is_generated_write_only_and_encrypted_with_the_stack_key(stacks):
    for target, recovery_days in (("local", 0), ("aws", 30)):
        stack = stacks[target]
        secret = only(stack, "aws_secretsmanager_secret")
        assert secret["kms_key_id"].startswith("${aws_kms_key.") and secret["recovery_window_in_days"] == recovery_days
        ((name, generator),) = stack["ephemeral"]["aws_secretsmanager_random_password"].items()
        assert generator == {"password_length": 32, "exclude_punctuation": True, "require_each_included_type": True}
        version = only(stack, "aws_secretsmanager_secret_version")
        assert version["secret_string_wo"] == (
            '${jsonencode({username = "app_user", '
            f"password = ephemeral.aws_secretsmanager_random_password.{name}.random_password}})}}"
        )
        assert version["secret_string_wo_version"] == 1 and "secret_string" not in version
        assert version["secret_id"] == ref(
            "aws_secretsmanager_secret", next(iter(resources(stack, "aws_secretsmanager_secret"))), "id"
        )


def test_no_synthesized_file_holds_a_password(stack):
    # Every value that speaks of a password is the reference to the ephemeral generator or an auth-plugin name.
    reference = re.compile(r"password = ephemeral\.aws_secretsmanager_random_password\.\w+\.random_password")
    mentions = [
        (path, value)
        for path, value in walk({k: v for k, v in stack.items() if k != "//"})
        if isinstance(value, str) and "password" in value.lower() and ".//." not in path
    ]
    assert mentions and all(reference.search(value) or value.startswith("MYSQL_") for _, value in mentions), mentions


# ---------------------------------------------------------------- network path of the migrator
def test_secrets_manager_endpoint_is_private_and_reads_only_the_app_secret(stack):
    endpoint = only(stack, "aws_vpc_endpoint")
    assert (endpoint["vpc_endpoint_type"], endpoint["private_dns_enabled"]) == ("Interface", True)
    assert endpoint["service_name"] == "com.amazonaws.ap-northeast-1.secretsmanager"
    assert endpoint["subnet_ids"] == function_named(stack, "migrator")[1]["vpc_config"]["subnet_ids"]
    group = name_of(stack, "aws_security_group", lambda g: g["name"].endswith("-secretsmanager-endpoint"))
    assert endpoint["security_group_ids"] == [ref("aws_security_group", group, "id")]
    (statement,) = policy_statements(stack, endpoint["policy"])
    assert statement["actions"] == ["secretsmanager:GetSecretValue"]
    assert statement["resources"] == [_app_secret_arn(stack)]
    assert statement["condition"][0]["variable"] == "aws:PrincipalAccount"


def test_security_groups_chain_clients_to_proxy_to_db_and_the_migrator_to_secrets_manager(stack):
    prefix = only(stack, "aws_vpc")["tags"]["Name"].removesuffix("-vpc")
    groups = resources(stack, "aws_security_group")
    by_name = {g["name"].removeprefix(f"{prefix}-"): ref("aws_security_group", key, "id") for key, g in groups.items()}
    assert set(by_name) == {"lambda", "proxy", "db", "migrator", "secretsmanager-endpoint"}
    edges = set()
    for rtype, direction in (
        ("aws_vpc_security_group_ingress_rule", "in"),
        ("aws_vpc_security_group_egress_rule", "out"),
    ):
        for rule in resources(stack, rtype).values():
            assert rule["ip_protocol"] == "tcp" and rule["from_port"] == rule["to_port"]
            assert rule["description"], "every rule has a description"
            assert "cidr_ipv4" not in rule and "cidr_ipv6" not in rule
            edges.add((direction, rule["security_group_id"], rule["referenced_security_group_id"], rule["to_port"]))
    lam, proxy, db, migrator, endpoint = (
        by_name[n] for n in ("lambda", "proxy", "db", "migrator", "secretsmanager-endpoint")
    )
    assert edges == {
        ("out", lam, proxy, 3306),
        ("in", proxy, lam, 3306),
        ("out", proxy, db, 3306),
        ("in", db, proxy, 3306),
        ("out", migrator, proxy, 3306),
        ("in", proxy, migrator, 3306),
        ("out", migrator, endpoint, 443),
        ("in", endpoint, migrator, 443),
    }
    for group in groups.values():
        assert group["description"] and "ingress" not in group and "egress" not in group


# ---------------------------------------------------------------- the edge
def test_default_stage_is_throttled(stack):
    assert only(stack, "aws_apigatewayv2_stage")["default_route_settings"] == {
        "throttling_burst_limit": 200,
        "throttling_rate_limit": 100,
    }


def test_app_user_and_throttling_settings_flow_into_every_resource_that_names_them():
    environ = {
        "SMS_DB_APP_USERNAME": "reader",
        "SMS_API_THROTTLING_BURST_LIMIT": "20",
        "SMS_AWS__API_THROTTLING_RATE_LIMIT": "7",
    }
    stacks = synth_environments(environ, Path(tempfile.mkdtemp(prefix="sms-synth-least-privilege-")))
    for target, rate in (("local", 100), ("aws", 7)):
        stack = stacks[target]
        assert only(stack, "aws_apigatewayv2_stage")["default_route_settings"] == {
            "throttling_burst_limit": 20,
            "throttling_rate_limit": rate,
        }
        assert function_named(stack, "api")[1]["environment"]["variables"][contract.DB_USER] == "reader"
        assert function_named(stack, "migrator")[1]["environment"]["variables"][contract.APP_DB_USER] == "reader"
        assert only(stack, "aws_secretsmanager_secret")["name"].endswith("/db/reader")
        assert '{username = "reader", ' in only(stack, "aws_secretsmanager_secret_version")["secret_string_wo"]
        _, statements = role_policies(stack, function_named(stack, "api")[1]["role"])
        assert [s["resources"] for s in statements] == [[_connect_arn(stack, "reader")]]
    assert only(stacks["aws"], "aws_lambda_invocation")["triggers"]["app_user"] == "reader"
