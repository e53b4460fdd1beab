"""Typed, validated settings for one deployment of the stack.

Every field has a documented default; ``StackSettings`` validates itself at construction against the ranges
AWS documents, so a bad value fails at synth time with the field, the value and the allowed range instead of
minutes later inside ``terraform apply``.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from handler.app_contract import TABLE_NAME_MAX_LENGTH
from modules.api_limits import (
    API_THROTTLING_BURST_RANGE,
    API_THROTTLING_RATE_RANGE,
    DEFAULT_API_THROTTLING_BURST_LIMIT,
    DEFAULT_API_THROTTLING_RATE_LIMIT,
)
from modules.db_users import DEFAULT_APP_USERNAME, DEFAULT_MASTER_USERNAME, check_db_user
from modules.engine import (
    DEFAULT_ENGINE_VERSION,
    DEFAULT_INSTANCE_CLASS,
    EngineVersion,
    check_instance_class,
    estimated_max_connections,
)
from modules.pool_rules import ConnectionPoolRules
from modules.validation import SettingsError, check_choice, check_pattern, check_range

__all__ = ["SettingsError", "StackSettings", "LOG_RETENTION_DAYS", "LAMBDA_RUNTIMES", "LAMBDA_ARCHITECTURES"]

# Values accepted by CloudWatch Logs PutRetentionPolicy.
# fmt: off
LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922,
                      3288, 3653)
# fmt: on
LAMBDA_RUNTIMES = ("python3.12", "python3.13")
LAMBDA_ARCHITECTURES = ("arm64", "x86_64")

_PREFIX = re.compile(r"^[a-z][a-z0-9-]{0,19}$")
_IDENTIFIER = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
# The handler keeps <table>_count and <table>_schema beside the table, within MySQL's 64-character names.
_TABLE_NAME = re.compile(rf"^[A-Za-z][A-Za-z0-9_]{{0,{TABLE_NAME_MAX_LENGTH - 1}}}$")
_AZ = re.compile(r"^[a-z]{2}(-gov)?-[a-z]+-\d[a-z]$")
_REGION = re.compile(r"^[a-z]{2}(-gov)?-[a-z]+-\d$")
_EMAIL = re.compile(r"^[^@\s,]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}$")
_TOPIC_ARN = re.compile(r"^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}(\.fifo)?$")
ALARM_PERIODS = (60, 300, 900, 3600)


def _network(name: str, value: str) -> ipaddress.IPv4Network:
    try:
        return ipaddress.IPv4Network(value)
    except ValueError:
        raise SettingsError(name, value, "an IPv4 CIDR block with no host bits set, e.g. 10.0.1.0/24") from None


@dataclass(frozen=True)
class StackSettings:
    """Everything that differs between deployments.

    Defaults follow the reference experiment (RDS Proxy capped at 70 % of the DB's ``max_connections``) and
    AWS's own defaults.
    """

    # --- naming and placement
    name_prefix: str = "sms"
    """Prefix of every resource name: 1-20 lowercase letters, digits or hyphens, starting with a letter."""
    region: str = "ap-northeast-1"
    """AWS region (Tokyo, where the reference experiment ran)."""
    availability_zones: tuple[str, ...] = ("ap-northeast-1a", "ap-northeast-1c")
    """AZs for the subnets; RDS needs DB subnets in at least two distinct AZs."""

    # --- network
    vpc_cidr: str = "10.0.0.0/16"
    lambda_subnet_cidrs: tuple[str, ...] = ("10.0.1.0/24", "10.0.2.0/24")
    """Private subnets for the Lambda ENIs, spread over the AZs in order."""
    db_subnet_cidrs: tuple[str, ...] = ("10.0.11.0/24", "10.0.12.0/24")
    """Private subnets for RDS and RDS Proxy, one per AZ in order (at least two)."""

    # --- database
    db_engine_version: str = DEFAULT_ENGINE_VERSION
    """MySQL 8.4 (the LTS) or a minor of it (8.4.<minor>); 8.0 only when set explicitly (paid Extended Support)."""
    db_instance_class: str = DEFAULT_INSTANCE_CLASS
    """Graviton burstable by default; 8.4 needs a current-generation class (no db.t2, db.m4, db.r4, ...)."""
    db_max_connections: int | None = None
    """The DB's ``max_connections`` for alarms; None: RDS's default for the class (memory / 12582880)."""
    db_allocated_storage_gb: int = 20
    db_max_allocated_storage_gb: int = 100
    """Storage autoscaling ceiling; equal to db_allocated_storage_gb disables autoscaling."""
    db_name: str = "app"
    db_username: str = DEFAULT_MASTER_USERNAME
    """Master user, for administration and the deploy's migrator only; RDS generates its password into Secrets
    Manager, so no password exists in code or state."""
    db_app_username: str = DEFAULT_APP_USERNAME
    """The request path's DB user (1-16 characters, not reserved, not the master): DML on the handler's own tables
    only. Its password is generated at deploy into a Secrets Manager secret and kept in no code, plan or state."""
    db_port: int = 3306
    db_backup_retention_days: int = 7
    db_multi_az: bool = False
    table_name: str = "access_times"
    throwaway: bool = False
    """A disposable environment: deletion protection off and no final snapshot unless set explicitly."""
    deletion_protection: bool | None = None
    """None means: on, unless throwaway."""
    final_snapshot: bool | None = None
    """Take a final snapshot on destroy. None means: yes, unless throwaway."""

    # --- RDS Proxy (AWS defaults except max_connections_percent, which follows the reference experiment)
    max_connections_percent: int = 70
    max_idle_connections_percent: int = 50
    connection_borrow_timeout: int = 120
    """Seconds a client waits for a pooled DB connection before failing."""
    idle_client_timeout: int = 1800
    """Seconds before the proxy closes an idle client connection."""
    init_query: str | None = None
    session_pinning_filters: tuple[str, ...] = ()
    proxy_debug_logging: bool = False
    """Logs SQL statements; keep off outside debugging."""

    # --- Lambda and API
    lambda_runtime: str = "python3.12"
    lambda_architecture: str = "arm64"
    lambda_memory_mb: int = 256
    lambda_timeout_s: int = 10
    lambda_reserved_concurrency: int | None = None
    """None: unreserved (account pool). Set it to cap how many DB clients Lambda can open."""
    response_limit: int = 100
    """How many of the newest stored times a GET returns (the total count is returned too)."""
    log_retention_days: int = 365
    api_throttling_burst_limit: int = DEFAULT_API_THROTTLING_BURST_LIMIT
    """Requests the ``$default`` stage admits at once before answering 429 (token-bucket size, 1-5000: the
    account's burst quota). 200 concurrent GETs become at most ~200 proxy clients, multiplexed onto the pool
    (70 % of 85 = 59 DB connections on db.t4g.micro) with a few ms of borrow wait at 1-2 ms DB time each, and
    stay under alarm_proxy_client_connections (500)."""
    api_throttling_rate_limit: int = DEFAULT_API_THROTTLING_RATE_LIMIT
    """Steady requests per second the ``$default`` stage admits (1-10000: the account's quota). Each GET writes a
    row and costs 1-2 ms of DB time, so 100/s uses 0.1-0.2 vCPU: db.t4g.micro's CPU baseline (2 vCPU at 10 %),
    which a sustained load never runs out of credits at; it also bounds table growth to 8.64 M rows a day."""

    # --- alarms (one SNS topic) and their thresholds
    alarm_email_addresses: tuple[str, ...] = ()
    """Email addresses subscribed to the alarm topic (each must confirm the subscription)."""
    alarm_topic_arn: str | None = None
    """An existing SNS topic (e.g. an on-call pipeline) that receives every alarm too."""
    alarm_period_s: int = 60
    """Length of one evaluation period (60, 300, 900 or 3600 seconds)."""
    alarm_evaluation_periods: int = 5
    """Consecutive breaching periods before a gauge alarm fires (errors fire on the first)."""
    alarm_db_connections_percent: int = 80
    """DB DatabaseConnections above this % of max_connections: clients are bypassing the proxy or it is too big."""
    alarm_db_cpu_percent: int = 80
    alarm_db_free_storage_gb: int = 2
    """FreeStorageSpace below this many GB (at most db_allocated_storage_gb)."""
    alarm_proxy_client_connections: int = 500
    """RDS Proxy ClientConnections above this: Lambda concurrency is growing past what the pool serves."""
    alarm_proxy_borrow_latency_ms: int = 100
    """Average DatabaseConnectionsBorrowLatency above this: clients queue for pooled connections."""
    alarm_lambda_duration_percent: int = 80
    """Maximum Duration above this % of lambda_timeout_s."""
    alarm_lambda_errors: int = 1
    """Lambda Errors per period at which the alarm fires."""
    alarm_api_5xx: int = 1
    """HTTP API 5xx responses per period at which the alarm fires."""

    # --- derived
    tags: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_pattern(
            "name_prefix",
            self.name_prefix,
            _PREFIX,
            "1-20 lowercase letters, digits or hyphens, starting with a letter",
        )
        check_pattern("region", self.region, _REGION, "an AWS region name such as ap-northeast-1")
        self._validate_network()
        self._validate_database()
        self._validate_proxy()
        self._validate_function()
        self._validate_alarms()

    # ---- validation by concern
    def _validate_network(self) -> None:
        azs = self.availability_zones
        if len(azs) < 2 or len(set(azs)) != len(azs):
            raise SettingsError("availability_zones", azs, "at least two distinct availability zones")
        for az in azs:
            check_pattern("availability_zones", az, _AZ, "availability zone names such as ap-northeast-1a")
            if not az.startswith(self.region):
                raise SettingsError("availability_zones", az, f"zones of region {self.region}")
        vpc = _network("vpc_cidr", self.vpc_cidr)
        if not vpc.is_private or not 16 <= vpc.prefixlen <= 28:
            raise SettingsError("vpc_cidr", self.vpc_cidr, "a private (RFC 1918) block from /16 to /28")
        subnets: list[tuple[str, ipaddress.IPv4Network]] = []
        for name, cidrs, minimum in (
            ("lambda_subnet_cidrs", self.lambda_subnet_cidrs, 1),
            ("db_subnet_cidrs", self.db_subnet_cidrs, 2),
        ):
            if not minimum <= len(cidrs) <= len(azs):
                raise SettingsError(name, cidrs, f"{minimum} to {len(azs)} CIDR blocks (one per availability zone)")
            for cidr in cidrs:
                net = _network(name, cidr)
                if not net.subnet_of(vpc):
                    raise SettingsError(name, cidr, f"blocks inside vpc_cidr {self.vpc_cidr}")
                if not 16 <= net.prefixlen <= 28:
                    raise SettingsError(name, cidr, "a prefix length from /16 to /28")
                for other_name, other in subnets:
                    if net.overlaps(other):
                        raise SettingsError(name, cidr, f"blocks not overlapping {other} ({other_name})")
                subnets.append((name, net))

    def _validate_database(self) -> None:
        check_instance_class(self.db_instance_class, self.engine)
        if self.db_max_connections is not None:
            check_range("db_max_connections", self.db_max_connections, 1, 100000)
        elif estimated_max_connections(self.db_instance_class) is None:
            raise SettingsError(
                "db_max_connections",
                None,
                f"an integer from 1 to 100000 (required: the memory of {self.db_instance_class} "
                "is not known to the stack)",
            )
        check_range("db_allocated_storage_gb", self.db_allocated_storage_gb, 20, 65536)
        check_range(
            "db_max_allocated_storage_gb", self.db_max_allocated_storage_gb, self.db_allocated_storage_gb, 65536
        )
        check_pattern(
            "db_name", self.db_name, _IDENTIFIER, "1-64 letters, digits or underscores, starting with a letter"
        )
        check_db_user("db_username", self.db_username)
        check_db_user("db_app_username", self.db_app_username)
        if self.db_app_username.lower() == self.db_username.lower():
            allowed = f"a name other than the master user db_username ({self.db_username})"
            raise SettingsError("db_app_username", self.db_app_username, allowed)
        check_range("db_port", self.db_port, 1150, 65535)
        check_range("db_backup_retention_days", self.db_backup_retention_days, 1, 35)
        check_pattern(
            "table_name",
            self.table_name,
            _TABLE_NAME,
            f"1-{TABLE_NAME_MAX_LENGTH} letters, digits or underscores, starting with a letter",
        )

    def _validate_proxy(self) -> None:
        self.pool_rules  # noqa: B018  (constructing the pool rules validates every pool field)

    def _validate_function(self) -> None:
        check_choice("lambda_runtime", self.lambda_runtime, LAMBDA_RUNTIMES)
        check_choice("lambda_architecture", self.lambda_architecture, LAMBDA_ARCHITECTURES)
        check_range("lambda_memory_mb", self.lambda_memory_mb, 128, 10240)
        check_range("lambda_timeout_s", self.lambda_timeout_s, 1, 900)
        if self.lambda_reserved_concurrency is not None:
            check_range("lambda_reserved_concurrency", self.lambda_reserved_concurrency, 1, 1000)
        check_range("response_limit", self.response_limit, 1, 1000)
        check_choice("log_retention_days", self.log_retention_days, LOG_RETENTION_DAYS)
        check_range("api_throttling_burst_limit", self.api_throttling_burst_limit, *API_THROTTLING_BURST_RANGE)
        check_range("api_throttling_rate_limit", self.api_throttling_rate_limit, *API_THROTTLING_RATE_RANGE)
        for key, value in self.tags.items():
            if not isinstance(key, str) or not isinstance(value, str) or not 1 <= len(key) <= 128 or len(value) > 256:
                raise SettingsError("tags", {key: value}, "string keys of 1-128 and values of 0-256 characters")

    def _validate_alarms(self) -> None:
        for address in self.alarm_email_addresses:
            check_pattern("alarm_email_addresses", address, _EMAIL, "email addresses such as ops@example.com")
        if self.alarm_topic_arn is not None:
            check_pattern(
                "alarm_topic_arn",
                self.alarm_topic_arn,
                _TOPIC_ARN,
                "null or an SNS topic ARN such as arn:aws:sns:ap-northeast-1:123456789012:on-call",
            )
        check_choice("alarm_period_s", self.alarm_period_s, ALARM_PERIODS)
        check_range("alarm_evaluation_periods", self.alarm_evaluation_periods, 1, 100)
        for name in ("alarm_db_connections_percent", "alarm_db_cpu_percent", "alarm_lambda_duration_percent"):
            check_range(name, getattr(self, name), 1, 100)
        check_range("alarm_db_free_storage_gb", self.alarm_db_free_storage_gb, 1, self.db_allocated_storage_gb)
        check_range("alarm_proxy_client_connections", self.alarm_proxy_client_connections, 1, 100000)
        check_range("alarm_proxy_borrow_latency_ms", self.alarm_proxy_borrow_latency_ms, 1, 3_600_000)
        check_range("alarm_lambda_errors", self.alarm_lambda_errors, 1, 100000)
        check_range("alarm_api_5xx", self.alarm_api_5xx, 1, 100000)

    # ---- derived values
    @property
    def engine(self) -> EngineVersion:
        return EngineVersion(self.db_engine_version)

    @property
    def pool_rules(self) -> ConnectionPoolRules:
        """The proxy's pool settings, validated by the one definition of their ranges."""
        return ConnectionPoolRules(
            max_connections_percent=self.max_connections_percent,
            max_idle_connections_percent=self.max_idle_connections_percent,
            connection_borrow_timeout=self.connection_borrow_timeout,
            idle_client_timeout=self.idle_client_timeout,
            init_query=self.init_query,
            session_pinning_filters=self.session_pinning_filters,
        )

    @property
    def max_connections(self) -> int:
        """The DB's ``max_connections``: the setting, else RDS's default for the instance class."""
        if self.db_max_connections is not None:
            return self.db_max_connections
        estimate = estimated_max_connections(self.db_instance_class)
        assert estimate is not None  # validated at construction
        return estimate

    @property
    def effective_deletion_protection(self) -> bool:
        return (not self.throwaway) if self.deletion_protection is None else self.deletion_protection

    @property
    def effective_final_snapshot(self) -> bool:
        return (not self.throwaway) if self.final_snapshot is None else self.final_snapshot

    def with_overrides(self, overrides: Mapping[str, Any]) -> StackSettings:
        """A copy with ``overrides`` applied (strings from env vars are parsed by field type)."""
        return dataclasses.replace(self, **_coerce_fields(overrides))

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> StackSettings:
        return cls(**_coerce_fields(values))


def _field_types() -> dict[str, Any]:
    hints = typing.get_type_hints(StackSettings)
    return {f.name: hints[f.name] for f in dataclasses.fields(StackSettings)}


def _coerce_fields(values: Mapping[str, Any]) -> dict[str, Any]:
    types = _field_types()
    unknown = sorted(set(values) - set(types))
    if unknown:
        raise SettingsError(unknown[0], values[unknown[0]], "a known setting: " + ", ".join(sorted(types)))
    return {name: _coerce(name, value, types[name]) for name, value in values.items()}


def _coerce(name: str, value: Any, hint: Any) -> Any:
    """Turn JSON/env values into the field's type; strings come from environment variables."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)) and type(None) in args:
        if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none", "null")):
            return None
        hint = next(a for a in args if a is not type(None))
        origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is tuple:
        items = [v.strip() for v in value.split(",") if v.strip()] if isinstance(value, str) else list(value)
        return tuple(items)
    if hint is bool:
        if isinstance(value, str):
            lowered = value.strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise SettingsError(name, value, "true or false")
        return value
    if hint is int and isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            raise SettingsError(name, value, "an integer") from None
    if origin is not None and origin is not tuple and isinstance(value, str):
        raise SettingsError(name, value, "a JSON object in the environment file, not an environment variable")
    return value
