"""Function in isolation: code from the given directory, the environment named by the handler's contract."""

from __future__ import annotations

import shutil

import pytest

from handler import app_contract
from modules.bindings import aws
from modules.function import Function, FunctionProps
from modules.packaging import build_handler_zip
from modules.project import REPO_ROOT
from modules.validation import PropError
from tests.modules.construct_support import ABSENT, Template
from tests.modules.synth_support import TEST_KEY_ARN, sample_context


@pytest.fixture(scope="module")
def code_dir(tmp_path_factory):
    target = tmp_path_factory.mktemp("code") / "handler"
    shutil.copytree(REPO_ROOT / "handler", target, ignore=shutil.ignore_patterns("__pycache__"))
    return target


def _props(ctx, code_dir, build_dir, **overrides) -> FunctionProps:
    values = dict(
        name_prefix="t",
        ctx=ctx,
        code_dir=code_dir,
        build_dir=build_dir,
        subnet_ids=["subnet-l"],
        security_group_id="sg-l",
        kms_key_arn=TEST_KEY_ARN,
        db_host="proxy.example",
    )
    return FunctionProps(**{**values, **overrides})


@pytest.fixture(scope="module")
def function(code_dir, tmp_path_factory) -> Template:
    build_dir = tmp_path_factory.mktemp("build")
    sizing = dict(db_port=3307, memory_mb=512, timeout_s=20, reserved_concurrency=40)
    return Template.of(
        lambda stack, ctx: Function(
            stack, "fn", _props(ctx, code_dir, build_dir, runtime="python3.13", architecture="x86_64", **sizing)
        )
    )


def test_environment_uses_the_contract_names_and_iam_auth(function):
    function.has_resource_properties(
        "aws_lambda_function",
        {
            "environment": {
                "variables": {
                    app_contract.DB_HOST: "proxy.example",
                    app_contract.DB_PORT: "3307",
                    app_contract.DB_NAME: "app",
                    app_contract.DB_USER: "app_user",  # the application user by default, never the master
                    app_contract.DB_TABLE: app_contract.DEFAULT_TABLE,
                    app_contract.DB_AUTH: app_contract.AUTH_IAM,
                    app_contract.RESPONSE_LIMIT: str(app_contract.RESPONSE_LIMIT_DEFAULT),
                    app_contract.DB_PASSWORD: ABSENT,
                }
            }
        },
    )


def test_code_comes_from_the_given_directory(function, code_dir, tmp_path):
    function.has_resource_properties(
        "aws_lambda_function", {"source_code_hash": build_handler_zip(code_dir, tmp_path / "h.zip").sha256_base64}
    )


def test_serve_after_adds_to_the_functions_dependencies(code_dir, tmp_path):
    def build(stack, ctx):
        gate = aws("cloudwatch_log_group").CloudwatchLogGroup(stack, "gate", name="gate")
        Function(stack, "fn", _props(ctx, code_dir, tmp_path)).serve_after(gate)

    stack = Template.of(build)
    fn = stack.has_resource_properties("aws_lambda_function", {})
    assert fn["depends_on"] == [
        stack.address("aws_cloudwatch_log_group", {"name": "/aws/lambda/t-api"}),
        stack.address("aws_iam_role_policy_attachment"),
        "aws_cloudwatch_log_group.gate",
    ]


def test_sizing_and_placement_follow_the_props(function):
    function.has_resource_properties(
        "aws_lambda_function",
        {
            "function_name": "t-api",
            "memory_size": 512,
            "timeout": 20,
            "reserved_concurrent_executions": 40,
            "runtime": "python3.13",
            "architectures": ["x86_64"],
            "vpc_config": {"subnet_ids": ["subnet-l"], "security_group_ids": ["sg-l"]},
            "kms_key_arn": TEST_KEY_ARN,
            "logging_config": {"log_format": "JSON"},
        },
    )


@pytest.mark.parametrize(
    "field, value, allowed",
    [
        ("memory_mb", 64, "an integer from 128 to 10240"),
        ("timeout_s", 901, "an integer from 1 to 900"),
        ("reserved_concurrency", 0, "an integer from 1 to 1000"),
        ("runtime", "python3.8", "one of python3.12, python3.13"),
        ("response_limit", 1001, "an integer from 1 to 1000"),
        ("table_name", "t" * 57, "1-56 letters, digits or underscores"),
        ("db_user", "root", "a name other than the reserved"),
    ],
)
def test_bad_props_are_refused_naming_the_field(field, value, allowed, tmp_path):
    with pytest.raises(PropError) as refused:
        _props(sample_context(), tmp_path, tmp_path, **{field: value})
    assert str(refused.value).startswith(f"invalid prop FunctionProps.{field}={value!r}: allowed")
    assert allowed in refused.value.allowed


def test_required_props_are_named_when_missing(tmp_path):
    with pytest.raises(PropError, match=r"invalid prop FunctionProps\.db_host=<missing>: allowed a value \(required\)"):
        FunctionProps(
            name_prefix="t",
            ctx=sample_context(),
            code_dir=tmp_path,
            build_dir=tmp_path,
            subnet_ids=[],
            security_group_id="sg",
            kms_key_arn=TEST_KEY_ARN,
        )
