"""DatabaseProxy in isolation (in the style of AWS CDK's proxy.test.ts): given props, when synthesized, then ..."""

from __future__ import annotations

import pytest

from modules.engine import EngineVersion
from modules.pool_rules import ConnectionPoolRules
from modules.proxy import DatabaseProxy, ProxyProps
from tests.synth_support import TEST_KEY_ARN, only, resources, synth_construct

SECRET = "arn:aws:secretsmanager:ap-northeast-1:123456789012:secret:db-AbCdEf"
APP_SECRET = "arn:aws:secretsmanager:ap-northeast-1:123456789012:secret:app-AbCdEf"


def _synth(**overrides):
    def build(stack, ctx):
        props = dict(
            name_prefix="t",
            ctx=ctx,
            subnet_ids=["subnet-a", "subnet-b"],
            security_group_id="sg-proxy",
            secret_arn=SECRET,
            kms_key_arn=TEST_KEY_ARN,
            db_instance_identifier="t-db",
        )
        props.update(overrides)
        DatabaseProxy(stack, "proxy", ProxyProps(**props))

    return synth_construct(build)


@pytest.fixture(scope="module")
def default_proxy():
    return _synth()


def test_defaults_require_tls_and_iam_and_use_aws_pool_defaults(default_proxy):
    # given only the required props, when synthesized
    proxy = only(default_proxy, "aws_db_proxy")
    # then clients need TLS and IAM, the proxy logs in with the secret, and the pool has AWS's defaults
    assert (proxy["name"], proxy["engine_family"], proxy["require_tls"]) == ("t-proxy", "MYSQL", True)
    assert proxy["idle_client_timeout"] == 1800 and proxy["debug_logging"] is False
    assert proxy["auth"] == [
        {
            "auth_scheme": "SECRETS",
            "iam_auth": "REQUIRED",
            "secret_arn": SECRET,
            "client_password_auth_type": "MYSQL_CACHING_SHA2_PASSWORD",
            "description": "DB master credentials managed by RDS",
        }
    ]
    assert proxy["vpc_subnet_ids"] == ["subnet-a", "subnet-b"] and proxy["vpc_security_group_ids"] == ["sg-proxy"]
    pool = only(default_proxy, "aws_db_proxy_default_target_group")["connection_pool_config"]
    assert pool == {
        "max_connections_percent": 100,
        "max_idle_connections_percent": 50,
        "connection_borrow_timeout": 120,
        "session_pinning_filters": [],
    }
    assert only(default_proxy, "aws_db_proxy_target")["db_instance_identifier"] == "t-db"


def test_proxy_log_group_exists_before_the_proxy_with_our_key(default_proxy):
    ((name, group),) = resources(default_proxy, "aws_cloudwatch_log_group").items()
    assert group == {**group, "name": "/aws/rds/proxy/t-proxy", "kms_key_id": TEST_KEY_ARN, "retention_in_days": 365}
    assert only(default_proxy, "aws_db_proxy")["depends_on"] == [f"aws_cloudwatch_log_group.{name}"]


def test_replacement_of_the_proxy_replaces_target_group_and_target(default_proxy):
    proxy_name = next(iter(resources(default_proxy, "aws_db_proxy")))
    for rtype in ("aws_db_proxy_default_target_group", "aws_db_proxy_target"):
        assert only(default_proxy, rtype)["lifecycle"]["replace_triggered_by"] == [f"aws_db_proxy.{proxy_name}.id"]


def test_explicit_timeouts_longer_than_the_provider_defaults(default_proxy):
    assert only(default_proxy, "aws_db_proxy")["timeouts"] == {"create": "60m", "update": "60m", "delete": "90m"}


def test_role_reads_only_the_secret_and_trusts_rds_for_this_account(default_proxy):
    role = only(default_proxy, "aws_iam_role")
    assert role["name"] == "t-proxy-secrets"
    documents = default_proxy["data"]["aws_iam_policy_document"]
    trust = documents[role["assume_role_policy"].split(".")[2]]["statement"][0]
    assert trust["condition"][0]["variable"] == "aws:SourceAccount"
    policy = only(default_proxy, "aws_iam_role_policy")
    read, decrypt = documents[policy["policy"].split(".")[2]]["statement"]
    assert read["resources"] == [SECRET] and decrypt["resources"] == [TEST_KEY_ARN]
    assert decrypt["condition"][0]["values"] == ["secretsmanager.ap-northeast-1.amazonaws.com"]


def test_pool_rules_and_init_query_flow_into_the_target_group_and_are_not_ignored():
    # given a pool with an init query and a pinning filter
    pool = ConnectionPoolRules(
        max_connections_percent=70,
        max_idle_connections_percent=10,
        connection_borrow_timeout=30,
        idle_client_timeout=600,
        init_query="SET time_zone = '+00:00'",
        session_pinning_filters=("EXCLUDE_VARIABLE_SETS",),
    )
    stack = _synth(pool=pool, debug_logging=True)
    # then they are configured, and nothing is ignored (both fields are set, so their changes must show)
    target_group = only(stack, "aws_db_proxy_default_target_group")
    assert target_group["connection_pool_config"] == {
        "max_connections_percent": 70,
        "max_idle_connections_percent": 10,
        "connection_borrow_timeout": 30,
        "session_pinning_filters": ["EXCLUDE_VARIABLE_SETS"],
        "init_query": "SET time_zone = '+00:00'",
    }
    assert "ignore_changes" not in target_group["lifecycle"]
    proxy = only(stack, "aws_db_proxy")
    assert proxy["idle_client_timeout"] == 600 and proxy["debug_logging"] is True


def test_unset_init_query_is_ignored_so_its_removal_never_diffs_forever(default_proxy):
    # terraform-provider-aws #49875: the provider cannot clear init_query / session_pinning_filters
    assert only(default_proxy, "aws_db_proxy_default_target_group")["lifecycle"]["ignore_changes"] == [
        "connection_pool_config[0].init_query",
        "connection_pool_config[0].session_pinning_filters",
    ]


def test_mysql_80_uses_native_password_for_clients():
    stack = _synth(engine_version=EngineVersion("8.0.40"))
    assert only(stack, "aws_db_proxy")["auth"][0]["client_password_auth_type"] == "MYSQL_NATIVE_PASSWORD"


def test_each_app_secret_gets_an_iam_auth_block_and_the_role_reads_exactly_those_secrets():
    stack = _synth(app_secret_arns=(APP_SECRET,))
    assert [(a["secret_arn"], a["iam_auth"], a["description"]) for a in only(stack, "aws_db_proxy")["auth"]] == [
        (SECRET, "REQUIRED", "DB master credentials managed by RDS"),
        (APP_SECRET, "REQUIRED", "Application DB user generated by the stack"),
    ]
    documents = stack["data"]["aws_iam_policy_document"]
    read, _ = documents[only(stack, "aws_iam_role_policy")["policy"].split(".")[2]]["statement"]
    assert read["actions"] == ["secretsmanager:GetSecretValue"] and read["resources"] == [SECRET, APP_SECRET]


def test_grant_connect_scopes_rds_db_connect_to_the_prx_id_and_one_user():
    def build(stack, ctx):
        from modules.bindings import aws

        proxy = DatabaseProxy(
            stack,
            "proxy",
            ProxyProps(
                name_prefix="t",
                ctx=ctx,
                subnet_ids=["subnet-a", "subnet-b"],
                security_group_id="sg",
                secret_arn=SECRET,
                kms_key_arn=TEST_KEY_ARN,
                db_instance_identifier="t-db",
            ),
        )
        role = aws("iam_role").IamRole(stack, "client", name="client", assume_role_policy="{}")
        granted = proxy.grant_connect(role, "app_user")
        # the policy it made, for callers to wait on; another role may be granted the same user
        assert (granted.terraform_resource_type, granted.name_input) == (
            "aws_iam_role_policy",
            "rds-db-connect-app_user",
        )
        other = aws("iam_role").IamRole(stack, "other", name="other", assume_role_policy="{}")
        proxy.grant_connect(other, "app_user")

    stack = synth_construct(build)
    grants = [p for p in resources(stack, "aws_iam_role_policy").values() if p["name"] == "rds-db-connect-app_user"]
    assert sorted(p["role"] for p in grants) == ["${aws_iam_role.client.id}", "${aws_iam_role.other.id}"]
    (policy,) = [p for p in grants if p["role"] == "${aws_iam_role.client.id}"]
    assert "lifecycle" not in policy  # create_before_destroy would spread to the proxy it reads
    (statement,) = stack["data"]["aws_iam_policy_document"][policy["policy"].split(".")[2]]["statement"]
    assert statement["actions"] == ["rds-db:connect"]
    assert statement["resources"][0].endswith(".arn), 6)}/app_user")
    assert ":rds-db:ap-northeast-1:${data.aws_caller_identity.caller.account_id}:dbuser:" in statement["resources"][0]
