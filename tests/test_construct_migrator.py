"""Migrator in isolation: the master's function with the app user's secret, invoked by the deploy when asked."""

from __future__ import annotations

import json

import pytest

from handler import app_contract as contract
from modules.function import FunctionCode
from modules.migrator import Migrator, MigratorProps
from modules.proxy import DatabaseProxy, ProxyProps
from modules.validation import SettingsError
from tests.synth_support import TEST_KEY_ARN, function_named, only, resources, role_policies, synth_construct

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


def _synth(**overrides):
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

    return synth_construct(build)


@pytest.fixture(scope="module")
def migrator():
    return _synth()


def test_function_runs_the_migrator_entry_point_of_the_given_package_as_the_master(migrator):
    _, fn = function_named(migrator, "migrator")
    assert (fn["handler"], fn["filename"], fn["source_code_hash"]) == (
        contract.MIGRATOR_HANDLER,
        CODE.filename,
        CODE.source_code_hash,
    )
    env = fn["environment"]["variables"]
    assert env[contract.DB_USER] == "admin_user" and env[contract.APP_DB_USER] == "reader"
    assert env[contract.APP_DB_SECRET_ARN] == APP_SECRET and env[contract.DB_AUTH] == contract.AUTH_IAM
    assert env[contract.DB_HOST].startswith("${aws_db_proxy.") and contract.DB_PASSWORD not in env
    assert (fn["timeout"], fn["memory_size"], fn["kms_key_arn"]) == (300, 256, TEST_KEY_ARN)
    assert fn["vpc_config"] == {"subnet_ids": ["subnet-l"], "security_group_ids": ["sg-m"]}


def test_role_connects_as_the_master_and_reads_only_the_app_secret(migrator):
    _, statements = role_policies(migrator, function_named(migrator, "migrator")[1]["role"])
    actions = {tuple(s["actions"]): s["resources"] for s in statements}
    assert actions[("secretsmanager:GetSecretValue",)] == [APP_SECRET]
    assert actions[("kms:Decrypt",)] == [TEST_KEY_ARN]
    (connect,) = actions[("rds-db:connect",)]
    assert connect.endswith("/admin_user")


def test_the_deploy_invokes_it_with_a_secret_free_input_once_the_proxy_reaches_the_db(migrator):
    invocation = only(migrator, "aws_lambda_invocation")
    assert json.loads(invocation["input"]) == {"schema_version": contract.SCHEMA_VERSION}
    assert invocation["triggers"] == {
        "schema_version": str(contract.SCHEMA_VERSION),
        "app_user": "reader",
        "app_secret_version": "2",
    }
    waits_for = {d.split(".")[0] for d in invocation["depends_on"]}
    assert waits_for == {"aws_iam_role_policy", "aws_db_proxy_target"}
    policies = {d for d in invocation["depends_on"] if d.startswith("aws_iam_role_policy.")}
    assert len(policies) == 3  # its secret read, its connect grant, the proxy's secret read


def test_no_invocation_where_functions_cannot_be_invoked():
    stack = _synth(invoke_on_deploy=False)
    assert not resources(stack, "aws_lambda_invocation")
    assert function_named(stack, "migrator")[1]["handler"] == contract.MIGRATOR_HANDLER


@pytest.mark.parametrize(
    "field, value, allowed",
    [
        ("timeout_s", 901, "an integer from 1 to 900"),
        ("memory_mb", 64, "an integer from 128 to 10240"),
        ("app_username", "ADMIN_USER", "a user other than the master"),
    ],
)
def test_bad_props_are_refused_naming_the_field(field, value, allowed):
    with pytest.raises(SettingsError, match=rf"invalid setting {field}={value!r}: allowed {allowed}"):
        _props(None, None, **{field: value})
