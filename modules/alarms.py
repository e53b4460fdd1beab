"""The stack's alarms as data: metric, namespace, dimensions, statistic, threshold and why, each with its source.

Pure (no cdktf): ``AlarmOptions`` holds what users set; ``modules/monitoring.py`` turns each ``AlarmSpec`` into an
``aws_cloudwatch_metric_alarm``, and the tests read the same list. Every metric name and dimension below is
checked against the AWS page cited next to it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from modules.engine import estimated_max_connections
from modules.function_options import STAGE_NAME
from modules.props import Props, between, matching, one_of
from modules.proxy_options import DEFAULT_TARGET_GROUP

RDS_METRICS_DOC = "https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/rds-metrics.html"
RDS_DIMENSIONS_DOC = "https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/dimensions.html"
PROXY_METRICS_DOC = "https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/rds-proxy.monitoring.html"
LAMBDA_METRICS_DOC = "https://docs.aws.amazon.com/lambda/latest/dg/monitoring-metrics-types.html"
HTTP_API_METRICS_DOC = "https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-metrics.html"

GREATER = "GreaterThanThreshold"
GREATER_OR_EQUAL = "GreaterThanOrEqualToThreshold"
LESS = "LessThanThreshold"
GIB = 1024**3


ALARM_PERIODS = (60, 300, 900, 3600)
Email = Annotated[str, matching(r"[^@\s,]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}", "email addresses such as ops@example.com")]
TopicArn = Annotated[
    str,
    matching(
        r"arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}(\.fifo)?",
        "null or an SNS topic ARN such as arn:aws:sns:ap-northeast-1:123456789012:on-call",
    ),
]
Count = Annotated[int, between(1, 100_000)]
Percent = Annotated[int, between(1, 100)]


class AlarmOptions(Props):
    """Who the alarms notify and when they fire, in the units operators think in."""

    email_addresses: tuple[Email, ...] = ()
    """Subscribed to the alarm topic; each address confirms the subscription by email. Default: none."""
    topic_arn: TopicArn | None = None
    """An existing SNS topic (an on-call pipeline, say) that every alarm notifies too. Default: None."""
    period_s: Annotated[int, one_of(ALARM_PERIODS)] = 60
    """Length of one evaluation period, in seconds. Default: 60."""
    evaluation_periods: Annotated[int, between(1, 100)] = 5
    """Consecutive breaching periods before a gauge alarm fires (error alarms fire on the first). Default: 5."""
    db_max_connections: Count | None = None
    """The DB's max_connections, which the DB-connections alarm and the dashboard measure against; required for
    instance classes whose memory the stack does not know. Default: None, RDS's default for the instance class
    (memory / 12582880: 85 for db.t4g.micro)."""
    db_connections_percent: Percent = 80
    """DB connections above this percentage of max_connections: something bypasses the proxy or the pool cap is too
    high. Default: 80."""
    db_cpu_percent: Percent = 80
    """DB CPU above this percentage: queries slow down and borrow latency grows. Default: 80."""
    db_free_storage_gb: Annotated[int, between(1, 65536)] = 2
    """Free storage below this many GB (at most the allocated storage): a full volume stops writes. Default: 2."""
    proxy_client_connections: Count = 500
    """RDS Proxy client connections above this: Lambda concurrency grows past what the pool serves. Default: 500."""
    proxy_borrow_latency_ms: Annotated[int, between(1, 3_600_000)] = 100
    """Average borrow latency above this: clients queue for pooled connections. Default: 100."""
    lambda_duration_percent: Percent = 80
    """Longest invocation above this percentage of the function's timeout. Default: 80."""
    lambda_errors: Count = 1
    """Function errors per period at which the alarm fires. Default: 1."""
    api_5xx: Count = 1
    """HTTP API 5xx answers per period at which the alarm fires. Default: 1."""

    def max_connections(self, instance_class: str) -> int | None:
        """The DB's max_connections: the option, else RDS's default for ``instance_class`` (None if unknown)."""
        return self.db_max_connections or estimated_max_connections(instance_class)

    def thresholds(self, db_max_connections: int, lambda_timeout_s: int) -> AlarmThresholds:
        return AlarmThresholds(
            db_max_connections=db_max_connections,
            db_connections_percent=self.db_connections_percent,
            db_cpu_percent=self.db_cpu_percent,
            db_free_storage_gb=self.db_free_storage_gb,
            proxy_client_connections=self.proxy_client_connections,
            proxy_borrow_latency_ms=self.proxy_borrow_latency_ms,
            lambda_timeout_s=lambda_timeout_s,
            lambda_duration_percent=self.lambda_duration_percent,
            lambda_errors=self.lambda_errors,
            api_5xx=self.api_5xx,
            period_s=self.period_s,
            evaluation_periods=self.evaluation_periods,
        )


@dataclass(frozen=True)
class AlarmThresholds:
    """Every threshold resolved against the resources it watches (built by ``AlarmOptions.thresholds``)."""

    db_max_connections: int
    db_connections_percent: int
    db_cpu_percent: int
    db_free_storage_gb: int
    proxy_client_connections: int
    proxy_borrow_latency_ms: int
    lambda_timeout_s: int
    lambda_duration_percent: int
    lambda_errors: int
    api_5xx: int
    period_s: int
    evaluation_periods: int


class MonitoredResources(Props):
    """Names CloudWatch uses as dimension values (Terraform references are fine)."""

    db_instance_identifier: str
    """The DB instance's identifier. Required."""
    proxy_name: str
    """The proxy's name. Required."""
    function_name: str
    """The request function's name. Required."""
    api_id: str
    """The HTTP API's id. Required."""
    stage: str = STAGE_NAME
    """The API's stage. Default: $default."""
    proxy_target_group: str = DEFAULT_TARGET_GROUP
    """The proxy's target group. Default: default."""
    proxy_target_role: str = "READ_WRITE"
    """An RDS instance target serves the READ_WRITE role (``DBProxyTarget.Role``). Default: READ_WRITE."""


@dataclass(frozen=True)
class AlarmSpec:
    key: str
    """Short id, also the alarm name suffix: ``<prefix>-<key>``."""
    namespace: str
    metric: str
    dimensions: dict[str, str]
    statistic: str
    comparison: str
    threshold: float
    why: str
    source: str
    evaluation_periods: int = 1
    treat_missing_data: str = "notBreaching"
    unit_note: str = field(default="", compare=False)


def alarm_specs(t: AlarmThresholds, r: MonitoredResources) -> list[AlarmSpec]:
    db = {"DBInstanceIdentifier": r.db_instance_identifier}  # RDS_DIMENSIONS_DOC
    proxy = {"ProxyName": r.proxy_name}  # PROXY_METRICS_DOC, dimension set 1
    fn = {"FunctionName": r.function_name}  # LAMBDA_METRICS_DOC, "Using dimensions"
    gauge = t.evaluation_periods
    return [
        # RDS_METRICS_DOC: DatabaseConnections, "the number of client network connections to the DB instance".
        AlarmSpec(
            "db-connections",
            "AWS/RDS",
            "DatabaseConnections",
            db,
            "Maximum",
            GREATER,
            t.db_max_connections * t.db_connections_percent // 100,
            f"DB connections above {t.db_connections_percent}% of max_connections ({t.db_max_connections}): "
            "something bypasses the proxy or the pool cap is too high; next come 1040 errors",
            RDS_METRICS_DOC,
            gauge,
            "missing",
        ),
        # RDS_METRICS_DOC: CPUUtilization, percent.
        AlarmSpec(
            "db-cpu",
            "AWS/RDS",
            "CPUUtilization",
            db,
            "Average",
            GREATER,
            t.db_cpu_percent,
            f"DB CPU above {t.db_cpu_percent}%: queries slow down and borrow latency grows",
            RDS_METRICS_DOC,
            gauge,
            "missing",
        ),
        # RDS_METRICS_DOC: FreeStorageSpace, bytes.
        AlarmSpec(
            "db-free-storage",
            "AWS/RDS",
            "FreeStorageSpace",
            db,
            "Minimum",
            LESS,
            t.db_free_storage_gb * GIB,
            f"less than {t.db_free_storage_gb} GB free: a full volume stops writes",
            RDS_METRICS_DOC,
            gauge,
            "missing",
            unit_note="bytes",
        ),
        # PROXY_METRICS_DOC: ClientConnections (dimension sets 1, 2), most useful statistic Sum.
        AlarmSpec(
            "proxy-client-connections",
            "AWS/RDS",
            "ClientConnections",
            proxy,
            "Sum",
            GREATER,
            t.proxy_client_connections,
            f"more than {t.proxy_client_connections} client connections to the proxy: Lambda concurrency is "
            "growing past what the pool serves; consider lambda_reserved_concurrency",
            PROXY_METRICS_DOC,
            gauge,
        ),
        # PROXY_METRICS_DOC: DatabaseConnectionsBorrowLatency (sets 1, 2), microseconds, statistic Average.
        AlarmSpec(
            "proxy-borrow-latency",
            "AWS/RDS",
            "DatabaseConnectionsBorrowLatency",
            proxy,
            "Average",
            GREATER,
            t.proxy_borrow_latency_ms * 1000,
            f"clients wait more than {t.proxy_borrow_latency_ms} ms for a pooled connection: the pool is "
            "saturated (max_connections_percent) or sessions are pinned",
            PROXY_METRICS_DOC,
            gauge,
            unit_note="microseconds",
        ),
        # PROXY_METRICS_DOC: AvailabilityPercentage, dimension set 4 only (ProxyName, TargetGroup, TargetRole).
        AlarmSpec(
            "proxy-availability",
            "AWS/RDS",
            "AvailabilityPercentage",
            {**proxy, "TargetGroup": r.proxy_target_group, "TargetRole": r.proxy_target_role},
            "Average",
            LESS,
            100,
            "the proxy's target was unavailable (failed health checks): clients get errors",
            PROXY_METRICS_DOC,
            gauge,
            "missing",
        ),
        # PROXY_METRICS_DOC: DatabaseConnectionsSetupFailed (sets 1, 3, 4), statistic Sum.
        AlarmSpec(
            "proxy-db-connection-failures",
            "AWS/RDS",
            "DatabaseConnectionsSetupFailed",
            proxy,
            "Sum",
            GREATER_OR_EQUAL,
            1,
            "the proxy failed to open DB connections: secret, key, security group or DB limit problem",
            PROXY_METRICS_DOC,
        ),
        # LAMBDA_METRICS_DOC: Errors (invocations that result in a function error), statistic Sum.
        AlarmSpec(
            "lambda-errors",
            "AWS/Lambda",
            "Errors",
            fn,
            "Sum",
            GREATER_OR_EQUAL,
            t.lambda_errors,
            f"{t.lambda_errors} or more function errors in a period",
            LAMBDA_METRICS_DOC,
        ),
        # LAMBDA_METRICS_DOC: Throttles, statistic Sum.
        AlarmSpec(
            "lambda-throttles",
            "AWS/Lambda",
            "Throttles",
            fn,
            "Sum",
            GREATER_OR_EQUAL,
            1,
            "invocations throttled: concurrency limit reached (reserved or account)",
            LAMBDA_METRICS_DOC,
        ),
        # LAMBDA_METRICS_DOC: Duration, milliseconds.
        AlarmSpec(
            "lambda-duration",
            "AWS/Lambda",
            "Duration",
            fn,
            "Maximum",
            GREATER,
            t.lambda_timeout_s * 1000 * t.lambda_duration_percent // 100,
            f"an invocation took more than {t.lambda_duration_percent}% of the {t.lambda_timeout_s} s "
            "timeout: close to timing out (slow DB or borrow waits)",
            LAMBDA_METRICS_DOC,
            gauge,
            unit_note="milliseconds",
        ),
        # HTTP_API_METRICS_DOC: 5xx, dimensions ApiId + Stage.
        AlarmSpec(
            "api-5xx",
            "AWS/ApiGateway",
            "5xx",
            {"ApiId": r.api_id, "Stage": r.stage},
            "Sum",
            GREATER_OR_EQUAL,
            t.api_5xx,
            f"{t.api_5xx} or more 5xx answers from the HTTP API in a period",
            HTTP_API_METRICS_DOC,
        ),
    ]
