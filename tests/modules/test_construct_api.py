"""HttpApi in isolation: one route per route key, an invoke permission scoped to exactly those, access logs."""

from __future__ import annotations

import json
import re

import pytest

from modules.api import HttpApi, HttpApiProps
from modules.bindings import aws
from modules.validation import PropError
from tests.modules.construct_support import Template
from tests.modules.synth_support import TEST_KEY_ARN


def _function(stack):
    return aws("lambda_function").LambdaFunction(
        stack, "fn", function_name="f", role="arn:aws:iam::1:role/r", runtime="python3.12", handler="h", filename="x"
    )


def _synth(**props) -> Template:
    def build(stack, ctx):
        values = {"name_prefix": "t", "function": _function(stack), "kms_key_arn": TEST_KEY_ARN, **props}
        HttpApi(stack, "api", HttpApiProps(**values))

    return Template.of(build)


@pytest.fixture(scope="module")
def default_api() -> Template:
    return _synth(log_retention_days=7)


def test_integration_timeout_is_one_second_over_the_function_capped_at_30s(default_api):
    default_api.has_resource_properties("aws_apigatewayv2_integration", {"timeout_milliseconds": 11000})
    _synth(lambda_timeout_s=60).has_resource_properties(
        "aws_apigatewayv2_integration",
        {"timeout_milliseconds": 30000, "payload_format_version": "2.0", "integration_type": "AWS_PROXY"},
    )


def test_default_stage_writes_json_access_logs_to_an_encrypted_group(default_api):
    group = default_api.ref("aws_cloudwatch_log_group", {"name": "/aws/apigateway/t-http-api"}, "arn")
    default_api.has_resource_properties(
        "aws_cloudwatch_log_group", {"kms_key_id": TEST_KEY_ARN, "retention_in_days": 7}
    )
    stage = default_api.has_resource_properties(
        "aws_apigatewayv2_stage",
        {"name": "$default", "auto_deploy": True, "access_log_settings": {"destination_arn": group}},
    )
    assert json.loads(stage["access_log_settings"]["format"])["status"] == "$context.status"


def test_the_default_route_is_any_root_and_only_it_may_invoke(default_api):
    execution_arn = default_api.ref("aws_apigatewayv2_api", attribute="execution_arn")
    default_api.has_resource_properties(
        "aws_apigatewayv2_route",
        {"route_key": "ANY /", "target": re.compile(r"^integrations/\$\{aws_apigatewayv2_integration\.")},
    )
    default_api.has_resource_properties(
        "aws_lambda_permission",
        {
            "statement_id": "AllowHttpApiInvoke",
            "principal": "apigateway.amazonaws.com",
            "action": "lambda:InvokeFunction",
            "function_name": "${aws_lambda_function.fn.function_name}",
            "source_arn": execution_arn + "/*/*/",
        },
    )


def test_each_route_gets_its_own_route_and_a_permission_for_exactly_its_method_and_path():
    stack = _synth(routes=("GET /", "GET /times"))
    execution_arn = stack.ref("aws_apigatewayv2_api", attribute="execution_arn")
    stack.resource_count_is("aws_apigatewayv2_route", 2)
    stack.resource_count_is("aws_lambda_permission", 2)
    for key, statement, suffix in (
        ("GET /", "AllowHttpApiInvokeGetRoot", "/*/GET/"),
        ("GET /times", "AllowHttpApiInvokeGetTimes", "/*/GET/times"),
    ):
        stack.has_resource_properties("aws_apigatewayv2_route", {"route_key": key})
        stack.has_resource_properties(
            "aws_lambda_permission",
            {"statement_id": statement, "source_arn": execution_arn + suffix},
        )


def test_route_addresses_follow_the_route_key_not_its_position():
    first = _synth(routes=("GET /times", "ANY /")).resources("aws_apigatewayv2_route")
    second = _synth(routes=("ANY /", "GET /times")).resources("aws_apigatewayv2_route")
    assert {n: r["route_key"] for n, r in first.items()} == {n: r["route_key"] for n, r in second.items()}


def test_default_stage_is_throttled_by_default_and_as_given(default_api):
    default_api.has_resource_properties(
        "aws_apigatewayv2_stage",
        {"default_route_settings": {"throttling_burst_limit": 200, "throttling_rate_limit": 100}},
    )
    _synth(throttling_burst_limit=5000, throttling_rate_limit=1).has_resource_properties(
        "aws_apigatewayv2_stage",
        {"default_route_settings": {"throttling_burst_limit": 5000, "throttling_rate_limit": 1}},
    )


@pytest.mark.parametrize(
    "field, value, allowed",
    [
        ("throttling_burst_limit", 0, "an integer from 1 to 5000"),
        ("throttling_burst_limit", 5001, "an integer from 1 to 5000"),
        ("throttling_rate_limit", 0, "an integer from 1 to 10000"),
        ("throttling_rate_limit", 10001, "an integer from 1 to 10000"),
        ("lambda_timeout_s", 901, "an integer from 1 to 900"),
        ("routes", ("GET /nowhere",), "route keys the handler implements: ANY /, GET /, ANY /times, GET /times"),
        ("routes", ("POST /times",), "route keys the handler implements"),
        ("routes", ("get /",), "route keys the handler implements"),
        ("routes", ("GET /", "GET /"), "at least one route key, each listed once"),
        ("routes", (), "at least one route key, each listed once"),
        ("function", "arn:aws:lambda:ap-northeast-1:123456789012:function:f", "an aws_lambda_function construct"),
    ],
)
def test_bad_props_are_refused_naming_the_field(field, value, allowed):
    with pytest.raises(PropError) as refused:
        _synth(**{field: value})
    assert str(refused.value).startswith(f"invalid prop HttpApiProps.{field}=")
    assert refused.value.allowed.startswith(allowed)
