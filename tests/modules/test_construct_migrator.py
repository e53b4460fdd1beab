"""Migrator in isolation: the master's function with the app user's secret, invoked by the deploy when asked."""

from __future__ import annotations

import json

import pytest

from handler import app_contract as contract
from modules.function import FunctionCode
from modules.migrator import Migrator, MigratorProps
from modules.proxy import DatabaseProxy, ProxyProps
from modules.validation import PropError
from tests.modules.construct_support import Template
from tests.modules.synth_support import TEST_KEY_ARN, sample_context

MASTER_SECRET = "arn:aws:secretsmanager:ap-northeast-1:123456789012:secret:db-AbCdEf"
APP_SECRET = "arn:aws:secretsmanager:ap-northeast-1:123456789012:secret:app-AbCdEf"
CODE = FunctionCode(filename="assets/code/handler.zip", source_code_hash="aGFzaA==")


def _props(ctx, proxy, **overrides) -> MigratorProps:
    values = dict(
        name_prefix="t",
        ctx=ctx,
        code=CODE,
        proxy=proxy,
        subnet_ids=["subnet-l"],
        security_group_id="sg-m",
        kms_key_arn=TEST_KEY_ARN,
        master_username="admin_user",
        app_username="reader",
        app_secret_arn=APP_SECRET,
        app_secret_version="2",
    )
    return MigratorProps(**{**values, **overrides})


def _synth(**overrides) -> Template:
    def build(stack, ctx):
        proxy = DatabaseProxy(
            stack,
            "proxy",
            ProxyProps(
                name_prefix="t",
                ctx=ctx,
                subnet_ids=["subnet-a", "subnet-b"],
                security_group_id="sg-p",
                secret_arn=MASTER_SECRET,
                kms_key_arn=TEST_KEY_ARN,
                db_instance_identifier="t-db",
                app_secret_arns=(APP_SECRET,),
            ),
        )
        Migrator(stack, "migrator", _props(ctx, proxy, **overrides))

    return Template.of(build)


@pytest.fixture(scope="module")
def migrator():
    return _synth()


def test_function_runs_the_migrator_entry_point_of_the_given_package_as_the_master(migrator):
    fn = migrator.has_resource_properties(
        "aws_lambda_function",
        {
            "function_name": "t-migrator",
            "handler": contract.MIGRATOR_HANDLER,
            "filename": CODE.filename,
            "source_code_hash": CODE.source_code_hash,
            "timeout": 300,
            "memory_size": 256,
            "kms_key_arn": TEST_KEY_ARN,
            "vpc_config": {"subnet_ids": ["subnet-l"], "security_group_ids": ["sg-m"]},
        },
    )
    env = fn["environment"]["variables"]
    assert env[contract.DB_USER] == "admin_user" and env[contract.APP_DB_USER] == "reader"
    assert env[contract.APP_DB_SECRET_ARN] == APP_SECRET and env[contract.DB_AUTH] == contract.AUTH_IAM
    assert env[contract.DB_HOST] == migrator.ref("aws_db_proxy", attribute="endpoint")
    assert contract.DB_PASSWORD not in env


def test_role_connects_as_the_master_and_reads_only_the_app_secret(migrator):
    role = migrator.has_resource_properties("aws_lambda_function", {})["role"]
    _, statements = migrator.role_policies(role)
    actions = {tuple(s["actions"]): s["resources"] for s in statements}
    assert actions[("secretsmanager:GetSecretValue",)] == [APP_SECRET]
    assert actions[("kms:Decrypt",)] == [TEST_KEY_ARN]
    (connect,) = actions[("rds-db:connect",)]
    assert connect.endswith("/admin_user")


def test_the_deploy_invokes_it_with_a_secret_free_input_once_the_proxy_reaches_the_db(migrator):
    invocation = migrator.has_resource_properties(
        "aws_lambda_invocation",
        {
            "triggers": {
                "schema_version": str(contract.SCHEMA_VERSION),
                "app_user": "reader",
                "app_secret_version": "2",
            }
        },
    )
    assert json.loads(invocation["input"]) == {"schema_version": contract.SCHEMA_VERSION}
    assert {d.split(".")[0] for d in invocation["depends_on"]} == {"aws_iam_role_policy", "aws_db_proxy_target"}
    policies = {d for d in invocation["depends_on"] if d.startswith("aws_iam_role_policy.")}
    assert len(policies) == 3  # its secret read, its connect grant, the proxy's secret read


def test_no_invocation_where_functions_cannot_be_invoked():
    stack = _synth(invoke_on_deploy=False)
    stack.resource_count_is("aws_lambda_invocation", 0)
    stack.has_resource_properties("aws_lambda_function", {"handler": contract.MIGRATOR_HANDLER})


@pytest.mark.parametrize(
    "field, value, allowed",
    [
        ("timeout_s", 901, "an integer from 1 to 900"),
        ("memory_mb", 64, "an integer from 128 to 10240"),
        ("app_username", "ADMIN_USER", "a user other than the master master_username (admin_user)"),
        ("master_username", "root", "a name other than the reserved"),
    ],
)
def test_bad_props_are_refused_naming_the_field(field, value, allowed):
    proxy = _proxy_for_validation()
    with pytest.raises(PropError) as refused:
        _props(sample_context(), proxy, **{field: value})
    assert str(refused.value).startswith(f"invalid prop MigratorProps.{field}={value!r}: allowed")
    assert allowed in refused.value.allowed


def _proxy_for_validation():
    """A real DatabaseProxy to satisfy the ``proxy`` prop's type while checking other fields."""
    made = {}

    def build(stack, ctx):
        made["proxy"] = DatabaseProxy(
            stack,
            "proxy",
            ProxyProps(
                name_prefix="t",
                ctx=ctx,
                subnet_ids=["subnet-a", "subnet-b"],
                security_group_id="sg-p",
                secret_arn=MASTER_SECRET,
                kms_key_arn=TEST_KEY_ARN,
                db_instance_identifier="t-db",
            ),
        )

    Template.of(build)
    return made["proxy"]
