"""The stack's alarms as data: metric, namespace, dimensions, statistic, threshold and why, each with its source.

Pure (no cdktf): ``modules/monitoring.py`` turns each ``AlarmSpec`` into an ``aws_cloudwatch_metric_alarm``, and the
tests read the same list. Every metric name and dimension below is checked against the AWS page cited next to it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

RDS_METRICS_DOC = "https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/rds-metrics.html"
RDS_DIMENSIONS_DOC = "https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/dimensions.html"
PROXY_METRICS_DOC = "https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/rds-proxy.monitoring.html"
LAMBDA_METRICS_DOC = "https://docs.aws.amazon.com/lambda/latest/dg/monitoring-metrics-types.html"
HTTP_API_METRICS_DOC = "https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-metrics.html"

GREATER = "GreaterThanThreshold"
GREATER_OR_EQUAL = "GreaterThanOrEqualToThreshold"
LESS = "LessThanThreshold"
GIB = 1024**3


@dataclass(frozen=True)
class AlarmThresholds:
    """The overridable thresholds (``StackSettings.alarm_*``), in the units operators think in."""

    db_max_connections: int
    db_connections_percent: int = 80
    db_cpu_percent: int = 80
    db_free_storage_gb: int = 2
    proxy_client_connections: int = 500
    proxy_borrow_latency_ms: int = 100
    lambda_timeout_s: int = 10
    lambda_duration_percent: int = 80
    lambda_errors: int = 1
    api_5xx: int = 1
    period_s: int = 60
    evaluation_periods: int = 5


@dataclass(frozen=True)
class MonitoredResources:
    """Names CloudWatch uses as dimension values (Terraform references are fine)."""

    db_instance_identifier: str
    proxy_name: str
    function_name: str
    api_id: str
    stage: str = "$default"
    proxy_target_group: str = "default"
    proxy_target_role: str = "READ_WRITE"
    """An RDS instance target serves the READ_WRITE role (``DBProxyTarget.Role``)."""


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
