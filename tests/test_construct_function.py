"""Function in isolation: code from the given directory, the environment named by the handler's contract."""

from __future__ import annotations

import shutil

import pytest

from handler import app_contract
from modules.function import Function, FunctionProps
from modules.packaging import build_handler_zip
from modules.project import REPO_ROOT
from tests.synth_support import TEST_KEY_ARN, only, synth_construct


@pytest.fixture(scope="module")
def code_dir(tmp_path_factory):
    target = tmp_path_factory.mktemp("code") / "handler"
    shutil.copytree(REPO_ROOT / "handler", target, ignore=shutil.ignore_patterns("__pycache__"))
    return target


@pytest.fixture(scope="module")
def function(code_dir, tmp_path_factory):
    build_dir = tmp_path_factory.mktemp("build")
    return synth_construct(
        lambda stack, ctx: Function(
            stack,
            "fn",
            FunctionProps(
                name_prefix="t",
                ctx=ctx,
                code_dir=code_dir,
                build_dir=build_dir,
                subnet_ids=["subnet-l"],
                security_group_id="sg-l",
                kms_key_arn=TEST_KEY_ARN,
                db_host="proxy.example",
                db_port=3307,
                memory_mb=512,
                timeout_s=20,
                reserved_concurrency=40,
                runtime="python3.13",
                architecture="x86_64",
            ),
        )
    )


def test_environment_uses_the_contract_names_and_iam_auth(function):
    env = only(function, "aws_lambda_function")["environment"]["variables"]
    assert env == {
        app_contract.DB_HOST: "proxy.example",
        app_contract.DB_PORT: "3307",
        app_contract.DB_NAME: "app",
        app_contract.DB_USER: "app_user",  # the application user by default, never the master
        app_contract.DB_TABLE: app_contract.DEFAULT_TABLE,
        app_contract.DB_AUTH: app_contract.AUTH_IAM,
        app_contract.RESPONSE_LIMIT: str(app_contract.RESPONSE_LIMIT_DEFAULT),
    }
    assert app_contract.DB_PASSWORD not in env


def test_code_comes_from_the_given_directory(function, code_dir, tmp_path):
    fn = only(function, "aws_lambda_function")
    assert fn["source_code_hash"] == build_handler_zip(code_dir, tmp_path / "h.zip").sha256_base64


def test_serve_after_adds_to_the_functions_dependencies(code_dir, tmp_path):
    def build(stack, ctx):
        from modules.bindings import aws

        gate = aws("cloudwatch_log_group").CloudwatchLogGroup(stack, "gate", name="gate")
        function = Function(
            stack,
            "fn",
            FunctionProps(
                name_prefix="t",
                ctx=ctx,
                code_dir=code_dir,
                build_dir=tmp_path,
                subnet_ids=["subnet-l"],
                security_group_id="sg-l",
                kms_key_arn=TEST_KEY_ARN,
                db_host="proxy.example",
            ),
        )
        function.serve_after(gate)

    fn = only(synth_construct(build), "aws_lambda_function")
    assert fn["depends_on"][-1].startswith("aws_cloudwatch_log_group.gate")
    assert [d.split(".")[0] for d in fn["depends_on"]] == [
        "aws_cloudwatch_log_group",
        "aws_iam_role_policy_attachment",
        "aws_cloudwatch_log_group",
    ]


def test_sizing_and_placement_follow_the_props(function):
    fn = only(function, "aws_lambda_function")
    assert (fn["function_name"], fn["memory_size"], fn["timeout"], fn["reserved_concurrent_executions"]) == (
        "t-api",
        512,
        20,
        40,
    )
    assert (fn["runtime"], fn["architectures"]) == ("python3.13", ["x86_64"])
    assert fn["vpc_config"] == {"subnet_ids": ["subnet-l"], "security_group_ids": ["sg-l"]}
    assert fn["kms_key_arn"] == TEST_KEY_ARN
