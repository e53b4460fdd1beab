"""HttpApi in isolation: payload 2.0 integration that outlives the function by a second, access logs."""

from __future__ import annotations

import json

import pytest

from modules.api import HttpApi, HttpApiProps
from modules.bindings import aws
from modules.validation import SettingsError
from tests.synth_support import TEST_KEY_ARN, only, synth_construct


def _synth(timeout_s: int, **throttling):
    def build(stack, ctx):
        fn = aws("lambda_function").LambdaFunction(
            stack,
            "fn",
            function_name="f",
            role="arn:aws:iam::1:role/r",
            runtime="python3.12",
            handler="app.h",
            filename="x.zip",
        )
        HttpApi(
            stack,
            "api",
            HttpApiProps(
                name_prefix="t",
                function=fn,
                kms_key_arn=TEST_KEY_ARN,
                lambda_timeout_s=timeout_s,
                log_retention_days=7,
                **throttling,
            ),
        )

    return synth_construct(build)


def test_integration_timeout_is_one_second_over_the_function_capped_at_30s():
    assert only(_synth(10), "aws_apigatewayv2_integration")["timeout_milliseconds"] == 11000
    assert only(_synth(60), "aws_apigatewayv2_integration")["timeout_milliseconds"] == 30000


def test_default_stage_writes_json_access_logs_to_an_encrypted_group():
    stack = _synth(10)
    group = only(stack, "aws_cloudwatch_log_group")
    assert (group["name"], group["kms_key_id"], group["retention_in_days"]) == (
        "/aws/apigateway/t-http-api",
        TEST_KEY_ARN,
        7,
    )
    stage = only(stack, "aws_apigatewayv2_stage")
    assert stage["name"] == "$default"
    assert json.loads(stage["access_log_settings"]["format"])["status"] == "$context.status"
    assert only(stack, "aws_lambda_permission")["source_arn"].endswith(".execution_arn}/*/*/")


def test_default_stage_is_throttled_by_default_and_as_given():
    assert only(_synth(10), "aws_apigatewayv2_stage")["default_route_settings"] == {
        "throttling_burst_limit": 200,
        "throttling_rate_limit": 100,
    }
    stage = only(_synth(10, throttling_burst_limit=5000, throttling_rate_limit=1), "aws_apigatewayv2_stage")
    assert stage["default_route_settings"] == {"throttling_burst_limit": 5000, "throttling_rate_limit": 1}


@pytest.mark.parametrize(
    "field, value, allowed",
    [
        ("throttling_burst_limit", 0, "from 1 to 5000"),
        ("throttling_burst_limit", 5001, "from 1 to 5000"),
        ("throttling_rate_limit", 0, "from 1 to 10000"),
        ("throttling_rate_limit", 10001, "from 1 to 10000"),
    ],
)
def test_throttling_outside_api_gateways_quotas_is_refused_naming_the_field(field, value, allowed):
    with pytest.raises(SettingsError, match=rf"invalid setting {field}={value}: allowed an integer {allowed}"):
        HttpApiProps(name_prefix="t", function=None, kms_key_arn=TEST_KEY_ARN, **{field: value})
