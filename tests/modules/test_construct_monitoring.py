"""Monitoring in isolation: one encrypted topic, the documented alarms with their thresholds, the dashboard."""

from __future__ import annotations

import json

import pytest

from modules.alarms import MonitoredResources
from modules.monitoring import Monitoring, MonitoringProps
from modules.validation import PropError
from tests.modules.construct_support import Template
from tests.modules.synth_support import TEST_KEY_ARN

RESOURCES = MonitoredResources(
    db_instance_identifier="t-db", proxy_name="t-proxy", function_name="t-api", api_id="abc123"
)
ON_CALL = "arn:aws:sns:ap-northeast-1:123456789012:on-call"
THRESHOLDS = dict(
    db_max_connections=65,
    db_connections_percent=90,
    db_cpu_percent=70,
    db_free_storage_gb=5,
    proxy_client_connections=200,
    proxy_borrow_latency_ms=50,
    lambda_duration_percent=50,
    lambda_errors=3,
    api_5xx=2,
    period_s=300,
    evaluation_periods=2,
)


def _props(**overrides) -> MonitoringProps:
    values = dict(
        name_prefix="t",
        region="ap-northeast-1",
        kms_key_arn=TEST_KEY_ARN,
        resources=RESOURCES,
        lambda_timeout_s=20,
        email_addresses=("a@example.com", "b@example.com"),
        topic_arn=ON_CALL,
        **THRESHOLDS,
    )
    return MonitoringProps(**{**values, **overrides})


@pytest.fixture(scope="module")
def monitoring() -> Template:
    return Template.of(lambda stack, ctx: Monitoring(stack, "mon", _props()))


def _alarms(stack: Template) -> dict[str, dict]:
    return {a["alarm_name"].removeprefix("t-"): a for a in stack.resources("aws_cloudwatch_metric_alarm").values()}


def test_topic_is_encrypted_and_subscribed_by_email(monitoring):
    monitoring.has_resource_properties("aws_sns_topic", {"name": "t-alarms", "kms_master_key_id": TEST_KEY_ARN})
    subscriptions = monitoring.resources("aws_sns_topic_subscription").values()
    assert sorted((s["protocol"], s["endpoint"]) for s in subscriptions) == [
        ("email", "a@example.com"),
        ("email", "b@example.com"),
    ]


def test_alarms_use_documented_metrics_dimensions_and_the_given_thresholds(monitoring):
    alarms = _alarms(monitoring)
    expected = {
        "db-connections": ("AWS/RDS", "DatabaseConnections", {"DBInstanceIdentifier": "t-db"}, 58, 2),
        "db-cpu": ("AWS/RDS", "CPUUtilization", {"DBInstanceIdentifier": "t-db"}, 70, 2),
        "db-free-storage": ("AWS/RDS", "FreeStorageSpace", {"DBInstanceIdentifier": "t-db"}, 5 * 1024**3, 2),
        "proxy-client-connections": ("AWS/RDS", "ClientConnections", {"ProxyName": "t-proxy"}, 200, 2),
        "proxy-borrow-latency": ("AWS/RDS", "DatabaseConnectionsBorrowLatency", {"ProxyName": "t-proxy"}, 50000, 2),
        "proxy-availability": (
            "AWS/RDS",
            "AvailabilityPercentage",
            {"ProxyName": "t-proxy", "TargetGroup": "default", "TargetRole": "READ_WRITE"},
            100,
            2,
        ),
        "proxy-db-connection-failures": ("AWS/RDS", "DatabaseConnectionsSetupFailed", {"ProxyName": "t-proxy"}, 1, 1),
        "lambda-errors": ("AWS/Lambda", "Errors", {"FunctionName": "t-api"}, 3, 1),
        "lambda-throttles": ("AWS/Lambda", "Throttles", {"FunctionName": "t-api"}, 1, 1),
        "lambda-duration": ("AWS/Lambda", "Duration", {"FunctionName": "t-api"}, 10000, 2),
        "api-5xx": ("AWS/ApiGateway", "5xx", {"ApiId": "abc123", "Stage": "$default"}, 2, 1),
    }
    assert {
        k: (a["namespace"], a["metric_name"], a["dimensions"], a["threshold"], a["evaluation_periods"])
        for k, a in alarms.items()
    } == expected
    assert {a["period"] for a in alarms.values()} == {300}
    assert alarms["db-free-storage"]["comparison_operator"] == "LessThanThreshold"
    assert alarms["proxy-availability"]["comparison_operator"] == "LessThanThreshold"


def test_every_alarm_notifies_our_topic_and_the_existing_one(monitoring):
    topic = monitoring.ref("aws_sns_topic", attribute="arn")
    for alarm in _alarms(monitoring).values():
        assert alarm["alarm_actions"] == [topic, ON_CALL] == alarm["ok_actions"]
        assert "https://docs.aws.amazon.com/" in alarm["alarm_description"]  # each names its metric's source


def test_dashboard_widgets(monitoring):
    dashboard = monitoring.has_resource_properties("aws_cloudwatch_dashboard", {"dashboard_name": "t"})
    widgets = json.loads(dashboard["dashboard_body"])["widgets"]
    titles = [w["properties"]["title"] for w in widgets]
    assert titles == [
        "Connections: proxy clients vs DB",
        "Proxy: borrow latency (microseconds)",
        "Lambda: concurrent executions and errors",
        "HTTP API: 4xx and 5xx",
    ]
    assert {m[1] for w in widgets for m in w["properties"]["metrics"]} == {
        "ClientConnections",
        "DatabaseConnections",
        "DatabaseConnectionsBorrowLatency",
        "ConcurrentExecutions",
        "Errors",
        "4xx",
        "5xx",
    }
    first = widgets[0]["properties"]
    assert first["metrics"][0][:4] == ["AWS/RDS", "ClientConnections", "ProxyName", "t-proxy"]
    assert first["metrics"][1][:4] == ["AWS/RDS", "DatabaseConnections", "DBInstanceIdentifier", "t-db"]
    assert first["annotations"]["horizontal"][0]["value"] == 65


def test_max_connections_defaults_to_rds_default_for_the_class():
    stack = Template.of(lambda stack, ctx: Monitoring(stack, "mon", _props(db_max_connections=None)))
    assert _alarms(stack)["db-connections"]["threshold"] == 85 * 90 // 100  # db.t4g.micro: 1 GiB / 12582880


@pytest.mark.parametrize(
    "field, value, allowed",
    [
        ("period_s", 120, "one of 60, 300, 900, 3600"),
        ("db_cpu_percent", 0, "an integer from 1 to 100"),
        ("email_addresses", ("not-an-address",), "email addresses such as ops@example.com"),
        ("topic_arn", "arn:aws:sqs:ap-northeast-1:123456789012:q", "null or an SNS topic ARN"),
        ("db_instance_class", "db.x2iedn.24xlarge", None),
    ],
)
def test_bad_props_are_refused_naming_the_field(field, value, allowed):
    overrides = {field: value, **({"db_max_connections": None} if field == "db_instance_class" else {})}
    with pytest.raises(PropError) as refused:
        _props(**overrides)
    if allowed is None:  # an unknown class needs db_max_connections
        assert str(refused.value).startswith("invalid prop MonitoringProps.db_max_connections=None: allowed")
        assert "db.x2iedn.24xlarge is not known" in refused.value.allowed
    else:
        shown = value[0] if isinstance(value, tuple) else value
        assert str(refused.value).startswith(f"invalid prop MonitoringProps.{field}={shown!r}: allowed {allowed}")
