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
from dataclasses import dataclass, field
from typing import Any, Mapping

# Values accepted by CloudWatch Logs PutRetentionPolicy.
LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192,
                      2557, 2922, 3288, 3653)
LAMBDA_RUNTIMES = ("python3.12", "python3.13")
LAMBDA_ARCHITECTURES = ("arm64", "x86_64")
SESSION_PINNING_FILTERS = ("EXCLUDE_VARIABLE_SETS",)
RESERVED_DB_USERNAMES = ("rdsadmin", "rdsrepladmin", "mysql.sys", "root", "admin_rds")

_PREFIX = re.compile(r"^[a-z][a-z0-9-]{0,19}$")
_IDENTIFIER = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
_DB_USER = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,15}$")
_AZ = re.compile(r"^[a-z]{2}(-gov)?-[a-z]+-\d[a-z]$")
_REGION = re.compile(r"^[a-z]{2}(-gov)?-[a-z]+-\d$")


class SettingsError(ValueError):
    """A setting outside its allowed values; the message names field, value and what is allowed."""

    def __init__(self, field_name: str, value: Any, allowed: str):
        self.field_name, self.value, self.allowed = field_name, value, allowed
        super().__init__(f"invalid setting {field_name}={value!r}: allowed {allowed}")


def _check_range(name: str, value: int, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise SettingsError(name, value, f"an integer from {low} to {high}")


def _check_pattern(name: str, value: str, pattern: re.Pattern[str], allowed: str) -> None:
    if not isinstance(value, str) or not pattern.match(value):
        raise SettingsError(name, value, allowed)


def _check_choice(name: str, value: Any, choices: tuple) -> None:
    if value not in choices:
        raise SettingsError(name, value, "one of " + ", ".join(map(str, choices)))


def _network(name: str, value: str) -> ipaddress.IPv4Network:
    try:
        return ipaddress.IPv4Network(value)
    except ValueError:
        raise SettingsError(name, value, "an IPv4 CIDR block with no host bits set, e.g. 10.0.1.0/24") from None


@dataclass(frozen=True)
class StackSettings:
    """Everything that differs between deployments. Defaults follow the seed's experiment and AWS's defaults."""

    # --- naming and placement
    name_prefix: str = "sms"
    """Prefix of every resource name: 1-20 lowercase letters, digits or hyphens, starting with a letter."""
    region: str = "ap-northeast-1"
    """AWS region (the seed's)."""
    availability_zones: tuple[str, ...] = ("ap-northeast-1a", "ap-northeast-1c")
    """AZs for the subnets; RDS needs DB subnets in at least two distinct AZs."""

    # --- network
    vpc_cidr: str = "10.0.0.0/16"
    lambda_subnet_cidrs: tuple[str, ...] = ("10.0.1.0/24", "10.0.2.0/24")
    """Private subnets for the Lambda ENIs, spread over the AZs in order."""
    db_subnet_cidrs: tuple[str, ...] = ("10.0.11.0/24", "10.0.12.0/24")
    """Private subnets for RDS and RDS Proxy, one per AZ in order (at least two)."""

    # --- database
    db_engine_version: str = "8.0"
    """MySQL 8.0 major version or a minor of it (e.g. 8.0.40)."""
    db_instance_class: str = "db.t3.micro"
    db_allocated_storage_gb: int = 20
    db_max_allocated_storage_gb: int = 100
    """Storage autoscaling ceiling; equal to db_allocated_storage_gb disables autoscaling."""
    db_name: str = "app"
    db_username: str = "app_admin"
    """Master user; RDS generates its password into Secrets Manager, so no password exists in code or state."""
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

    # --- RDS Proxy (AWS defaults except max_connections_percent, which follows the seed's experiment)
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

    # --- derived
    tags: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_pattern("name_prefix", self.name_prefix, _PREFIX,
                       "1-20 lowercase letters, digits or hyphens, starting with a letter")
        _check_pattern("region", self.region, _REGION, "an AWS region name such as ap-northeast-1")
        self._validate_network()
        self._validate_database()
        self._validate_proxy()
        self._validate_function()

    # ---- validation by concern
    def _validate_network(self) -> None:
        azs = self.availability_zones
        if len(azs) < 2 or len(set(azs)) != len(azs):
            raise SettingsError("availability_zones", azs, "at least two distinct availability zones")
        for az in azs:
            _check_pattern("availability_zones", az, _AZ, "availability zone names such as ap-northeast-1a")
            if not az.startswith(self.region):
                raise SettingsError("availability_zones", az, f"zones of region {self.region}")
        vpc = _network("vpc_cidr", self.vpc_cidr)
        if not vpc.is_private or not 16 <= vpc.prefixlen <= 28:
            raise SettingsError("vpc_cidr", self.vpc_cidr, "a private (RFC 1918) block from /16 to /28")
        subnets: list[tuple[str, ipaddress.IPv4Network]] = []
        for name, cidrs, minimum in (("lambda_subnet_cidrs", self.lambda_subnet_cidrs, 1),
                                     ("db_subnet_cidrs", self.db_subnet_cidrs, 2)):
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
        if not re.match(r"^8\.0(\.\d+)?$", self.db_engine_version):
            raise SettingsError("db_engine_version", self.db_engine_version, "MySQL 8.0 or 8.0.<minor>")
        _check_pattern("db_instance_class", self.db_instance_class, re.compile(r"^db\.[a-z0-9]+\.[a-z0-9]+$"),
                       "an RDS instance class such as db.t3.micro")
        _check_range("db_allocated_storage_gb", self.db_allocated_storage_gb, 20, 65536)
        _check_range("db_max_allocated_storage_gb", self.db_max_allocated_storage_gb,
                     self.db_allocated_storage_gb, 65536)
        _check_pattern("db_name", self.db_name, _IDENTIFIER,
                       "1-64 letters, digits or underscores, starting with a letter")
        _check_pattern("db_username", self.db_username, _DB_USER,
                       "1-16 letters, digits or underscores, starting with a letter")
        if self.db_username.lower() in RESERVED_DB_USERNAMES:
            raise SettingsError("db_username", self.db_username,
                                "a name other than the reserved " + ", ".join(RESERVED_DB_USERNAMES))
        _check_range("db_port", self.db_port, 1150, 65535)
        _check_range("db_backup_retention_days", self.db_backup_retention_days, 1, 35)
        _check_pattern("table_name", self.table_name, _IDENTIFIER,
                       "1-64 letters, digits or underscores, starting with a letter")

    def _validate_proxy(self) -> None:
        _check_range("max_connections_percent", self.max_connections_percent, 1, 100)
        _check_range("max_idle_connections_percent", self.max_idle_connections_percent, 0,
                     self.max_connections_percent)
        _check_range("connection_borrow_timeout", self.connection_borrow_timeout, 0, 3600)
        _check_range("idle_client_timeout", self.idle_client_timeout, 1, 28800)
        if self.init_query is not None and (not self.init_query.strip() or len(self.init_query) > 4096):
            raise SettingsError("init_query", self.init_query, "null or 1-4096 characters of SQL")
        for flt in self.session_pinning_filters:
            _check_choice("session_pinning_filters", flt, SESSION_PINNING_FILTERS)

    def _validate_function(self) -> None:
        _check_choice("lambda_runtime", self.lambda_runtime, LAMBDA_RUNTIMES)
        _check_choice("lambda_architecture", self.lambda_architecture, LAMBDA_ARCHITECTURES)
        _check_range("lambda_memory_mb", self.lambda_memory_mb, 128, 10240)
        _check_range("lambda_timeout_s", self.lambda_timeout_s, 1, 900)
        if self.lambda_reserved_concurrency is not None:
            _check_range("lambda_reserved_concurrency", self.lambda_reserved_concurrency, 1, 1000)
        _check_range("response_limit", self.response_limit, 1, 1000)
        _check_choice("log_retention_days", self.log_retention_days, LOG_RETENTION_DAYS)
        for key, value in self.tags.items():
            if not isinstance(key, str) or not isinstance(value, str) or not 1 <= len(key) <= 128 \
                    or len(value) > 256:
                raise SettingsError("tags", {key: value}, "string keys of 1-128 and values of 0-256 characters")

    # ---- derived values
    @property
    def effective_deletion_protection(self) -> bool:
        return (not self.throwaway) if self.deletion_protection is None else self.deletion_protection

    @property
    def effective_final_snapshot(self) -> bool:
        return (not self.throwaway) if self.final_snapshot is None else self.final_snapshot

    def with_overrides(self, overrides: Mapping[str, Any]) -> "StackSettings":
        """A copy with ``overrides`` applied (strings from env vars are parsed by field type)."""
        return dataclasses.replace(self, **_coerce_fields(overrides))

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> "StackSettings":
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
