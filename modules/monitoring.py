"""Alarms, the one SNS topic they notify, and the operator dashboard.

The topic is encrypted with the stack key (whose policy lets CloudWatch use it for this account only); the alarms
are ``modules/alarms.py``'s specs; the dashboard puts the proxy's client connections next to the DB's connections,
so the pool doing its job (many clients, few DB connections) is visible at a glance.
"""

from __future__ import annotations

import json
from typing import Self

from constructs import Construct
from pydantic import model_validator

from modules.alarms import AlarmOptions, AlarmSpec, AlarmThresholds, MonitoredResources, alarm_specs
from modules.bindings import aws
from modules.engine import DEFAULT_INSTANCE_CLASS
from modules.field_types import LambdaTimeoutS, NamePrefix, Region
from modules.function_options import DEFAULT_TIMEOUT_S
from modules.props import expect_props


class MonitoringProps(AlarmOptions):
    name_prefix: NamePrefix
    """Topic ``<prefix>-alarms``, alarms ``<prefix>-<key>``, dashboard ``<prefix>``. Required."""
    region: Region
    """Region of the dashboard's widgets. Required."""
    kms_key_arn: str
    """Encrypts the alarm topic. Required."""
    resources: MonitoredResources
    """What the alarms and the dashboard watch. Required."""
    db_instance_class: str = DEFAULT_INSTANCE_CLASS
    """The DB's class: RDS's default max_connections follows from its memory. Default: db.t4g.micro."""
    lambda_timeout_s: LambdaTimeoutS = DEFAULT_TIMEOUT_S
    """The function's timeout, which the duration alarm is a percentage of. Default: 10."""

    @model_validator(mode="after")
    def _known_max_connections(self) -> Self:
        if self.max_connections(self.db_instance_class) is None:
            self.refuse(
                "db_max_connections",
                f"an integer from 1 to 100000 (required: the memory of {self.db_instance_class} is not known)",
            )
        return self

    @property
    def resolved_thresholds(self) -> AlarmThresholds:
        return self.thresholds(self.max_connections(self.db_instance_class), self.lambda_timeout_s)


class Monitoring(Construct):
    """One encrypted SNS topic, the alarms of ``modules.alarms`` notifying it (and ``topic_arn``), the dashboard."""

    def __init__(self, scope: Construct, id_: str, props: MonitoringProps):
        super().__init__(scope, id_)
        expect_props(props, MonitoringProps)
        prefix = props.name_prefix
        thresholds = props.resolved_thresholds
        self.topic = aws("sns_topic").SnsTopic(
            self, "topic", name=f"{prefix}-alarms", kms_master_key_id=props.kms_key_arn
        )
        subscription = aws("sns_topic_subscription").SnsTopicSubscription
        for index, address in enumerate(props.email_addresses):
            subscription(self, f"email-{index}", topic_arn=self.topic.arn, protocol="email", endpoint=address)
        actions = [self.topic.arn, *([props.topic_arn] if props.topic_arn else [])]
        self.specs = alarm_specs(thresholds, props.resources)
        self.alarms = {spec.key: self._alarm(prefix, spec, thresholds.period_s, actions) for spec in self.specs}
        self.dashboard_name = prefix
        self.dashboard = aws("cloudwatch_dashboard").CloudwatchDashboard(
            self,
            "dashboard",
            dashboard_name=prefix,
            dashboard_body=dashboard_body(props.region, props.resources, thresholds),
        )

    def _alarm(self, prefix: str, spec: AlarmSpec, period_s: int, actions: list[str]):
        return aws("cloudwatch_metric_alarm").CloudwatchMetricAlarm(
            self,
            f"alarm-{spec.key}",
            alarm_name=f"{prefix}-{spec.key}",
            alarm_description=f"{spec.why}. Metric: {spec.namespace} {spec.metric} ({spec.source})",
            namespace=spec.namespace,
            metric_name=spec.metric,
            dimensions=spec.dimensions,
            statistic=spec.statistic,
            comparison_operator=spec.comparison,
            threshold=spec.threshold,
            period=period_s,
            evaluation_periods=spec.evaluation_periods,
            treat_missing_data=spec.treat_missing_data,
            alarm_actions=actions,
            ok_actions=actions,
        )

    @property
    def topic_arn(self) -> str:
        return self.topic.arn


def dashboard_url(region: str, name: str) -> str:
    return f"https://{region}.console.aws.amazon.com/cloudwatch/home?region={region}#dashboards/dashboard/{name}"


def _widget(title: str, metrics: list[list], region: str, x: int, y: int, **extra) -> dict:
    return {
        "type": "metric",
        "x": x,
        "y": y,
        "width": 12,
        "height": 6,
        "properties": {
            "title": title,
            "region": region,
            "view": "timeSeries",
            "stacked": False,
            "period": 60,
            "metrics": metrics,
            **extra,
        },
    }


def dashboard_body(region: str, r: MonitoredResources, t: AlarmThresholds) -> str:
    """CloudWatch dashboard JSON (``PutDashboard`` body structure)."""
    proxy = ["ProxyName", r.proxy_name]
    fn = ["FunctionName", r.function_name]
    api = ["ApiId", r.api_id, "Stage", r.stage]
    widgets = [
        _widget(
            "Connections: proxy clients vs DB",
            [
                ["AWS/RDS", "ClientConnections", *proxy, {"stat": "Sum", "label": "proxy client connections"}],
                [
                    "AWS/RDS",
                    "DatabaseConnections",
                    "DBInstanceIdentifier",
                    r.db_instance_identifier,
                    {"stat": "Maximum", "label": "DB connections"},
                ],
            ],
            region,
            0,
            0,
            annotations={"horizontal": [{"label": "DB max_connections", "value": t.db_max_connections}]},
        ),
        _widget(
            "Proxy: borrow latency (microseconds)",
            [
                ["AWS/RDS", "DatabaseConnectionsBorrowLatency", *proxy, {"stat": "Average"}],
            ],
            region,
            12,
            0,
        ),
        _widget(
            "Lambda: concurrent executions and errors",
            [
                ["AWS/Lambda", "ConcurrentExecutions", *fn, {"stat": "Maximum"}],
                ["AWS/Lambda", "Errors", *fn, {"stat": "Sum"}],
            ],
            region,
            0,
            6,
        ),
        _widget(
            "HTTP API: 4xx and 5xx",
            [
                ["AWS/ApiGateway", "4xx", *api, {"stat": "Sum"}],
                ["AWS/ApiGateway", "5xx", *api, {"stat": "Sum"}],
            ],
            region,
            12,
            6,
        ),
    ]
    return json.dumps({"widgets": widgets}, sort_keys=True)
