"""Alarms, the one SNS topic they notify, and the operator dashboard.

The topic is encrypted with the stack key (whose policy lets CloudWatch use it for this account only); the alarms
are ``modules/alarms.py``'s specs; the dashboard puts the proxy's client connections next to the DB's connections,
so the pool doing its job (many clients, few DB connections) is visible at a glance.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from constructs import Construct

from modules.alarms import AlarmSpec, AlarmThresholds, MonitoredResources, alarm_specs
from modules.bindings import aws


@dataclass(frozen=True)
class MonitoringProps:
    name_prefix: str
    """Topic ``<prefix>-alarms``, alarms ``<prefix>-<key>``, dashboard ``<prefix>``."""
    region: str
    kms_key_arn: str
    """Encrypts the alarm topic."""
    thresholds: AlarmThresholds
    resources: MonitoredResources
    email_addresses: tuple[str, ...] = ()
    """Subscribed to the topic (each address confirms by email)."""
    extra_topic_arns: tuple[str, ...] = ()
    """Existing topics (e.g. an on-call pipeline) notified by every alarm as well."""


class Monitoring(Construct):
    def __init__(self, scope: Construct, id_: str, props: MonitoringProps):
        super().__init__(scope, id_)
        prefix = props.name_prefix
        self.topic = aws("sns_topic").SnsTopic(
            self, "topic", name=f"{prefix}-alarms", kms_master_key_id=props.kms_key_arn
        )
        subscription = aws("sns_topic_subscription").SnsTopicSubscription
        for index, address in enumerate(props.email_addresses):
            subscription(self, f"email-{index}", topic_arn=self.topic.arn, protocol="email", endpoint=address)
        actions = [self.topic.arn, *props.extra_topic_arns]
        self.specs = alarm_specs(props.thresholds, props.resources)
        self.alarms = {spec.key: self._alarm(prefix, spec, props.thresholds.period_s, actions) for spec in self.specs}
        self.dashboard_name = prefix
        self.dashboard = aws("cloudwatch_dashboard").CloudwatchDashboard(
            self,
            "dashboard",
            dashboard_name=prefix,
            dashboard_body=dashboard_body(props.region, props.resources, props.thresholds),
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
