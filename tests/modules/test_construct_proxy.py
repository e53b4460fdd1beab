"""DatabaseProxy in isolation (in the style of AWS CDK's proxy.test.ts): given props, when synthesized, then ..."""

from __future__ import annotations

import pytest

from modules.bindings import aws
from modules.proxy import DatabaseProxy, ProxyAttributes, ProxyProps
from modules.validation import PropError
from tests.modules.construct_support import ABSENT, Template
from tests.modules.synth_support import TEST_KEY_ARN, sample_context

SECRET = "arn:aws:secretsmanager:ap-northeast-1:123456789012:secret:db-AbCdEf"
APP_SECRET = "arn:aws:secretsmanager:ap-northeast-1:123456789012:secret:app-AbCdEf"
IMPORTED_ARN = "arn:aws:rds:us-east-1:210987654321:db-proxy:prx-0123456789abcdef0"


def _props(ctx, **overrides) -> ProxyProps:
    values = dict(
        name_prefix="t",
        ctx=ctx,
        subnet_ids=["subnet-a", "subnet-b"],
        security_group_id="sg-proxy",
        secret_arn=SECRET,
        kms_key_arn=TEST_KEY_ARN,
        db_instance_identifier="t-db",
    )
    return ProxyProps(**{**values, **overrides})


def _synth(**overrides) -> Template:
    return Template.of(lambda stack, ctx: DatabaseProxy(stack, "proxy", _props(ctx, **overrides)))


@pytest.fixture(scope="module")
def default_proxy() -> Template:
    return _synth()


def test_defaults_require_tls_and_iam_and_cap_the_pool_at_70_percent(default_proxy):
    default_proxy.has_resource_properties(
        "aws_db_proxy",
        {
            "name": "t-proxy",
            "engine_family": "MYSQL",
            "require_tls": True,
            "idle_client_timeout": 1800,
            "debug_logging": False,
            "vpc_subnet_ids": ["subnet-a", "subnet-b"],
            "vpc_security_group_ids": ["sg-proxy"],
            "auth": [
                {
                    "auth_scheme": "SECRETS",
                    "iam_auth": "REQUIRED",
                    "secret_arn": SECRET,
                    "client_password_auth_type": "MYSQL_CACHING_SHA2_PASSWORD",
                    "description": "DB master credentials managed by RDS",
                }
            ],
        },
    )
    default_proxy.has_resource_properties(
        "aws_db_proxy_default_target_group",
        {
            "connection_pool_config": {
                "max_connections_percent": 70,
                "max_idle_connections_percent": 50,
                "connection_borrow_timeout": 120,
                "session_pinning_filters": [],
                "init_query": ABSENT,
            }
        },
    )
    default_proxy.has_resource_properties("aws_db_proxy_target", {"db_instance_identifier": "t-db"})


def test_proxy_log_group_exists_before_the_proxy_with_our_key(default_proxy):
    group = default_proxy.address(
        "aws_cloudwatch_log_group",
        {"name": "/aws/rds/proxy/t-proxy", "kms_key_id": TEST_KEY_ARN, "retention_in_days": 365},
    )
    default_proxy.has_resource_properties("aws_db_proxy", {"depends_on": [group]})


def test_replacement_of_the_proxy_replaces_target_group_and_target(default_proxy):
    proxy = default_proxy.address("aws_db_proxy") + ".id"
    for rtype in ("aws_db_proxy_default_target_group", "aws_db_proxy_target"):
        default_proxy.has_resource_properties(rtype, {"lifecycle": {"replace_triggered_by": [proxy]}})


def test_explicit_timeouts_longer_than_the_provider_defaults(default_proxy):
    default_proxy.has_resource_properties(
        "aws_db_proxy", {"timeouts": {"create": "60m", "update": "60m", "delete": "90m"}}
    )


def test_role_reads_only_the_secret_and_trusts_rds_for_this_account(default_proxy):
    role = default_proxy.has_resource_properties("aws_iam_role", {"name": "t-proxy-secrets"})
    (trust,) = default_proxy.policy_statements(role["assume_role_policy"])
    assert trust["condition"][0]["variable"] == "aws:SourceAccount"
    policy = default_proxy.has_resource_properties("aws_iam_role_policy", {"name": "read-db-secret"})
    read, decrypt = default_proxy.policy_statements(policy["policy"])
    assert read["resources"] == [SECRET] and decrypt["resources"] == [TEST_KEY_ARN]
    assert decrypt["condition"][0]["values"] == ["secretsmanager.ap-northeast-1.amazonaws.com"]


def test_pool_options_and_init_query_flow_into_the_target_group_and_are_not_ignored():
    stack = _synth(
        max_connections_percent=80,
        max_idle_connections_percent=10,
        connection_borrow_timeout=30,
        idle_client_timeout=600,
        init_query="SET time_zone = '+00:00'",
        session_pinning_filters=("EXCLUDE_VARIABLE_SETS",),
        debug_logging=True,
    )
    target_group = stack.has_resource_properties(
        "aws_db_proxy_default_target_group",
        {
            "connection_pool_config": {
                "max_connections_percent": 80,
                "max_idle_connections_percent": 10,
                "connection_borrow_timeout": 30,
                "session_pinning_filters": ["EXCLUDE_VARIABLE_SETS"],
                "init_query": "SET time_zone = '+00:00'",
            }
        },
    )
    # both unclearable fields are set, so their changes must show in plans
    assert "ignore_changes" not in target_group["lifecycle"]
    stack.has_resource_properties("aws_db_proxy", {"idle_client_timeout": 600, "debug_logging": True})


def test_unset_init_query_is_ignored_so_its_removal_never_diffs_forever(default_proxy):
    # terraform-provider-aws #49875: the provider cannot clear init_query / session_pinning_filters
    default_proxy.has_resource_properties(
        "aws_db_proxy_default_target_group",
        {
            "lifecycle": {
                "ignore_changes": [
                    "connection_pool_config[0].init_query",
                    "connection_pool_config[0].session_pinning_filters",
                ]
            }
        },
    )


def test_mysql_80_uses_native_password_for_clients():
    _synth(engine_version="8.0.40").has_resource_properties(
        "aws_db_proxy", {"auth": [{"client_password_auth_type": "MYSQL_NATIVE_PASSWORD"}]}
    )


def test_each_app_secret_gets_an_iam_auth_block_and_the_role_reads_exactly_those_secrets():
    stack = _synth(app_secret_arns=(APP_SECRET,))
    stack.has_resource_properties(
        "aws_db_proxy",
        {
            "auth": [
                {"secret_arn": SECRET, "iam_auth": "REQUIRED", "description": "DB master credentials managed by RDS"},
                {
                    "secret_arn": APP_SECRET,
                    "iam_auth": "REQUIRED",
                    "description": "Application DB user generated by the stack",
                },
            ]
        },
    )
    read, _ = stack.policy_statements(stack.has_resource_properties("aws_iam_role_policy", {})["policy"])
    assert read["actions"] == ["secretsmanager:GetSecretValue"] and read["resources"] == [SECRET, APP_SECRET]


def test_grant_connect_returns_the_policy_scoped_to_the_prx_id_and_one_user():
    made = {}

    def build(stack, ctx):
        proxy = DatabaseProxy(stack, "proxy", _props(ctx))
        client = aws("iam_role").IamRole(stack, "client", name="client", assume_role_policy="{}")
        made["grant"] = proxy.grant_connect(client, "app_user")
        # another role may be granted the same user
        proxy.grant_connect(aws("iam_role").IamRole(stack, "other", name="other", assume_role_policy="{}"), "app_user")

    stack = Template.of(build)
    assert (made["grant"].terraform_resource_type, made["grant"].name_input) == (
        "aws_iam_role_policy",
        "rds-db-connect-app_user",
    )
    grant = stack.has_resource_properties(
        "aws_iam_role_policy", {"name": "rds-db-connect-app_user", "role": "${aws_iam_role.client.id}"}
    )
    stack.has_resource_properties(
        "aws_iam_role_policy", {"name": "rds-db-connect-app_user", "role": "${aws_iam_role.other.id}"}
    )
    assert "lifecycle" not in grant  # create_before_destroy would spread to the proxy it reads
    (statement,) = stack.policy_statements(grant["policy"])
    proxy_arn = stack.address("aws_db_proxy") + ".arn"
    assert statement["actions"] == ["rds-db:connect"]
    assert statement["resources"] == [
        "arn:${data.aws_partition.partition.partition}:rds-db:ap-northeast-1:"
        f'${{data.aws_caller_identity.caller.account_id}}:dbuser:${{element(split(":", {proxy_arn}), 6)}}/app_user'
    ]


def test_an_imported_proxy_grants_from_its_arn_alone():
    made = {}

    def build(stack, ctx):
        proxy = DatabaseProxy.from_attributes(
            stack, "shared", ProxyAttributes(arn=IMPORTED_ARN, endpoint="shared.proxy.example", name="shared")
        )
        made["proxy"] = proxy
        made["grant"] = proxy.grant_connect(
            aws("iam_role").IamRole(stack, "reader", name="reader", assume_role_policy="{}"), "report"
        )

    stack = Template.of(build)
    proxy = made["proxy"]
    assert (proxy.endpoint, proxy.name, proxy.resource_id) == (
        "shared.proxy.example",
        "shared",
        "prx-0123456789abcdef0",
    )
    stack.resource_count_is("aws_db_proxy", 0)
    grant = stack.has_resource_properties("aws_iam_role_policy", {"role": "${aws_iam_role.reader.id}"})
    assert made["grant"].name_input == "rds-db-connect-report"
    (statement,) = stack.policy_statements(grant["policy"])
    assert statement["resources"] == ["arn:aws:rds-db:us-east-1:210987654321:dbuser:prx-0123456789abcdef0/report"]


def test_an_imported_proxy_with_an_arn_known_only_at_apply_builds_the_grant_in_terraform():
    def build(stack, ctx):
        from cdktf import TerraformVariable

        arn = TerraformVariable(stack, "proxy_arn", type="string").string_value
        proxy = DatabaseProxy.from_attributes(stack, "shared", ProxyAttributes(arn=arn, endpoint="e"))
        proxy.grant_connect(aws("iam_role").IamRole(stack, "reader", name="reader", assume_role_policy="{}"), "u")

    stack = Template.of(build)
    (statement,) = stack.policy_statements(stack.has_resource_properties("aws_iam_role_policy", {})["policy"])
    field = 'element(split(":", var.proxy_arn), {})'
    assert statement["resources"] == [
        f"arn:${{{field.format(1)}}}:rds-db:${{{field.format(3)}}}:${{{field.format(4)}}}:dbuser:${{{field.format(6)}}}/u"
    ]


@pytest.mark.parametrize(
    "field, value, allowed",
    [
        ("max_connections_percent", 0, "an integer from 1 to 100"),
        ("max_idle_connections_percent", 80, "an integer from 0 to max_connections_percent (70)"),
        ("connection_borrow_timeout", 3601, "an integer from 0 to 3600"),
        ("session_pinning_filters", ("NOPE",), "one of EXCLUDE_VARIABLE_SETS"),
        ("subnet_ids", ["subnet-a"], "at least two distinct subnet ids"),
        ("engine_version", "5.7", "MySQL 8.4 or 8.4.<minor>"),
        ("name_prefix", "Bad_Prefix", "1-20 lowercase letters"),
    ],
)
def test_bad_props_are_refused_at_construction_naming_the_field(field, value, allowed):
    with pytest.raises(PropError) as refused:
        _props(sample_context(), **{field: value})
    assert str(refused.value).startswith(f"invalid prop ProxyProps.{field}=")
    assert allowed in refused.value.allowed


def test_bad_attributes_of_an_imported_proxy_are_refused():
    with pytest.raises(PropError, match=r"invalid prop ProxyAttributes\.arn='prx-1': allowed an RDS Proxy ARN"):
        ProxyAttributes(arn="prx-1", endpoint="e")
