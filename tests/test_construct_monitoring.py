"""Monitoring in isolation: one encrypted topic, the documented alarms with their thresholds, the dashboard."""

from __future__ import annotations

import json

import pytest

from modules.alarms import AlarmThresholds, MonitoredResources
from modules.monitoring import Monitoring, MonitoringProps
from tests.synth_support import TEST_KEY_ARN, only, resources, synth_construct

RESOURCES = MonitoredResources(
    db_instance_identifier="t-db", proxy_name="t-proxy", function_name="t-api", api_id="abc123"
)
ON_CALL = "arn:aws:sns:ap-northeast-1:123456789012:on-call"


@pytest.fixture(scope="module")
def monitoring():
    thresholds = AlarmThresholds(
        db_max_connections=65,
        db_connections_percent=90,
        db_cpu_percent=70,
        db_free_storage_gb=5,
        proxy_client_connections=200,
        proxy_borrow_latency_ms=50,
        lambda_timeout_s=20,
        lambda_duration_percent=50,
        lambda_errors=3,
        api_5xx=2,
        period_s=300,
        evaluation_periods=2,
    )
    return synth_construct(
        lambda stack, ctx: Monitoring(
            stack,
            "mon",
            MonitoringProps(
                name_prefix="t",
                region="ap-northeast-1",
                kms_key_arn=TEST_KEY_ARN,
                thresholds=thresholds,
                resources=RESOURCES,
                email_addresses=("a@example.com", "b@example.com"),
                extra_topic_arns=(ON_CALL,),
            ),
        )
    )


def _alarms(stack) -> dict[str, dict]:
    return {a["alarm_name"].removeprefix("t-"): a for a in resources(stack, "aws_cloudwatch_metric_alarm").values()}


def test_topic_is_encrypted_and_subscribed_by_email(monitoring):
    assert only(monitoring, "aws_sns_topic") == {
        **only(monitoring, "aws_sns_topic"),
        "name": "t-alarms",
        "kms_master_key_id": TEST_KEY_ARN,
    }
    subscriptions = resources(monitoring, "aws_sns_topic_subscription").values()
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
    topic = next(iter(resources(monitoring, "aws_sns_topic")))
    for alarm in _alarms(monitoring).values():
        assert alarm["alarm_actions"] == [f"${{aws_sns_topic.{topic}.arn}}", ON_CALL] == alarm["ok_actions"]


def test_dashboard_widgets(monitoring):
    dashboard = only(monitoring, "aws_cloudwatch_dashboard")
    assert dashboard["dashboard_name"] == "t"
    widgets = json.loads(dashboard["dashboard_body"])["widgets"]
    titles = [w["properties"]["title"] for w in widgets]
    assert titles == [
        "Connections: proxy clients vs DB",
        "Proxy: borrow latency (microseconds)",
        "Lambda: concurrent executions and errors",
        "HTTP API: 4xx and 5xx",
    ]
    first = widgets[0]["properties"]
    assert first["metrics"][0][:4] == ["AWS/RDS", "ClientConnections", "ProxyName", "t-proxy"]
    assert first["metrics"][1][:4] == ["AWS/RDS", "DatabaseConnections", "DBInstanceIdentifier", "t-db"]
    assert first["annotations"]["horizontal"][0]["value"] == 65
