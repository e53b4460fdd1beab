"""Typed, validated settings for one deployment: the flat names environment files and ``SMS_*`` variables use.

Each setting is one option of ``ServerlessMysqlApiProps``, named flat as users know it (``db_port`` is
``database.port``). ``SETTING_PATHS`` is the one map between the two: a setting's type, allowed values, default and
documentation are its option's, so a rule or a default is written once, in the props. ``StackSettings`` validates at
construction and names the setting in every error (``invalid setting max_connections_percent=150: allowed an integer
from 1 to 100``), including the checks that span several options. ``tags`` is the stack's own setting.

Imports nothing from cdktf, so the local tooling reads settings without loading the provider bindings.
"""

from __future__ import annotations

import json
import typing
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, ValidationError, create_model
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from modules.app_props import ServerlessMysqlApiProps
from modules.engine import EngineVersion
from modules.pool_rules import ConnectionPoolRules
from modules.props import PropError, Props, describe_failure, satisfying
from modules.validation import SettingsError

__all__ = ["SETTING_PATHS", "SettingsError", "StackSettings", "setting_fields"]

# fmt: off
SETTING_PATHS: dict[str, str] = {
    "name_prefix": "name_prefix",
    "region": "region",
    "availability_zones": "network.availability_zones",
    "vpc_cidr": "network.vpc_cidr",
    "lambda_subnet_cidrs": "network.lambda_subnet_cidrs",
    "db_subnet_cidrs": "network.db_subnet_cidrs",
    "db_engine_version": "database.engine_version",
    "db_instance_class": "database.instance_class",
    "db_max_connections": "alarms.db_max_connections",
    "db_allocated_storage_gb": "database.allocated_storage_gb",
    "db_max_allocated_storage_gb": "database.max_allocated_storage_gb",
    "db_name": "database.db_name",
    "db_username": "database.username",
    "db_app_username": "app_user.username",
    "db_port": "database.port",
    "db_backup_retention_days": "database.backup_retention_days",
    "db_multi_az": "database.multi_az",
    "table_name": "function.table_name",
    "throwaway": "throwaway",
    "deletion_protection": "database.deletion_protection",
    "final_snapshot": "database.final_snapshot",
    "max_connections_percent": "proxy.max_connections_percent",
    "max_idle_connections_percent": "proxy.max_idle_connections_percent",
    "connection_borrow_timeout": "proxy.connection_borrow_timeout",
    "idle_client_timeout": "proxy.idle_client_timeout",
    "init_query": "proxy.init_query",
    "session_pinning_filters": "proxy.session_pinning_filters",
    "proxy_debug_logging": "proxy.debug_logging",
    "lambda_runtime": "function.runtime",
    "lambda_architecture": "function.architecture",
    "lambda_memory_mb": "function.memory_mb",
    "lambda_timeout_s": "function.timeout_s",
    "lambda_reserved_concurrency": "function.reserved_concurrency",
    "response_limit": "function.response_limit",
    "api_routes": "api.routes",
    "api_throttling_burst_limit": "api.throttling_burst_limit",
    "api_throttling_rate_limit": "api.throttling_rate_limit",
    "log_retention_days": "log_retention_days",
    "alarm_email_addresses": "alarms.email_addresses",
    "alarm_topic_arn": "alarms.topic_arn",
    "alarm_period_s": "alarms.period_s",
    "alarm_evaluation_periods": "alarms.evaluation_periods",
    "alarm_db_connections_percent": "alarms.db_connections_percent",
    "alarm_db_cpu_percent": "alarms.db_cpu_percent",
    "alarm_db_free_storage_gb": "alarms.db_free_storage_gb",
    "alarm_proxy_client_connections": "alarms.proxy_client_connections",
    "alarm_proxy_borrow_latency_ms": "alarms.proxy_borrow_latency_ms",
    "alarm_lambda_duration_percent": "alarms.lambda_duration_percent",
    "alarm_lambda_errors": "alarms.lambda_errors",
    "alarm_api_5xx": "alarms.api_5xx",
}
"""Setting name -> option path in ``ServerlessMysqlApiProps``, in the order the settings table lists them."""
# fmt: on
_SETTING_OF_PATH = {path: setting for setting, path in SETTING_PATHS.items()}
_NONE_WORDS = ("", "none", "null")


def _option(path: str) -> tuple[type[Props], FieldInfo]:
    """(options class, field) of an option path; a group's class is that of its default (``NewVpc`` for network)."""
    owner: type[Props] = ServerlessMysqlApiProps
    *groups, name = path.split(".")
    for group in groups:
        owner = type(owner.model_fields[group].default)
    return owner, owner.model_fields[name]


_GROUP_OF = {
    type(ServerlessMysqlApiProps.model_fields[group].default): group
    for group in {path.split(".")[0] for path in SETTING_PATHS.values() if "." in path}
}


def _label(owner: type, path: str) -> str:
    """Name an option path as a setting (errors of checks that span options name every field they mention)."""
    if owner in _GROUP_OF:
        path = f"{_GROUP_OF[owner]}.{path}"
    elif owner is not ServerlessMysqlApiProps:
        return path
    return _SETTING_OF_PATH.get(path, path)


# ---------------------------------------------------------------------------- values from environment variables
def _split_commas(value: Any) -> Any:
    """``a,b`` -> ``("a", "b")``: lists come comma-separated from environment variables."""
    return tuple(item.strip() for item in value.split(",") if item.strip()) if isinstance(value, str) else value


def _none_words(value: Any) -> Any:
    return None if isinstance(value, str) and value.lower() in _NONE_WORDS else value


def _json_object(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value  # refused as not a mapping, naming the setting


def _from_environment(annotation: Any) -> Any:
    """The option's type, also accepting what an environment variable can spell: comma lists, null words."""
    optional = type(None) in typing.get_args(annotation)
    if typing.get_origin(annotation) is Annotated:
        annotation_type = typing.get_args(annotation)[0]
    else:
        annotation_type = annotation
    extra: list[Any] = []
    if typing.get_origin(annotation_type) is tuple:
        extra = [NoDecode, BeforeValidator(_split_commas)]
    if optional:
        extra.append(BeforeValidator(_none_words))
    return Annotated[annotation, *extra] if extra else annotation


def setting_fields() -> dict[str, tuple[type[Props], str, FieldInfo]]:
    """Setting name -> (options class, option name, field): where each setting's type, default and docs live."""
    fields = {}
    for setting, path in SETTING_PATHS.items():
        owner, field = _option(path)
        fields[setting] = (owner, path.rsplit(".", 1)[-1], field)
    return fields


def _derived_fields() -> dict[str, Any]:
    derived = {}
    for setting, (_, _, field) in setting_fields().items():
        annotation = Annotated[field.annotation, *field.metadata] if field.metadata else field.annotation
        derived[setting] = (_from_environment(annotation), Field(default=field.default, description=field.description))
    return derived


# ------------------------------------------------------------------------------------------------- the settings
Tags = Annotated[
    dict[str, str],
    NoDecode,
    BeforeValidator(_json_object),
    satisfying(
        "string keys of 1-128 and values of 0-256 characters",
        lambda tags: all(1 <= len(k) <= 128 and len(v) <= 256 for k, v in tags.items()),
    ),
]


class _Settings(BaseSettings):
    model_config = SettingsConfigDict(frozen=True, extra="forbid", case_sensitive=False, use_attribute_docstrings=True)

    tags: Tags = {}
    """Extra tags on every resource, beside Project, Environment and ManagedBy. Default: none."""

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings], init_settings: Any, **_: Any) -> tuple:
        """Only the values given: environment files and variables are read per environment (``environments.py``)."""
        return (init_settings,)

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise SettingsError(*describe_failure(type(self), exc, "setting")) from None
        self.api_props()  # the checks that span options, named by setting

    def api_props(self, **extra: Any) -> ServerlessMysqlApiProps:
        """The deployment's props (``extra``: props that are not settings, such as ``invoke_migrator_on_deploy``)."""
        values: dict[str, Any] = {}
        for setting, path in SETTING_PATHS.items():
            group, _, name = path.rpartition(".")
            (values.setdefault(group, {}) if group else values)[name] = getattr(self, setting)
        try:
            return ServerlessMysqlApiProps(**values, **extra)
        except PropError as refused:
            raise SettingsError(*describe_failure(*refused.source, "setting", _label)) from None

    # ---- derived values
    @property
    def engine(self) -> EngineVersion:
        return EngineVersion(self.db_engine_version)

    @property
    def pool_rules(self) -> ConnectionPoolRules:
        """The proxy's pool settings, as the one definition of their arithmetic sees them."""
        return self.api_props().proxy.pool_rules

    @property
    def max_connections(self) -> int:
        """The DB's ``max_connections``: the setting, else RDS's default for the instance class."""
        return self.api_props().db_max_connections

    @property
    def effective_deletion_protection(self) -> bool:
        return self.api_props().deletion_protection

    @property
    def effective_final_snapshot(self) -> bool:
        return self.api_props().final_snapshot

    def with_overrides(self, overrides: Mapping[str, Any]) -> StackSettings:
        """A validated copy with ``overrides`` applied (strings from environment variables are parsed by type)."""
        return type(self)(**{**{name: getattr(self, name) for name in type(self).model_fields}, **overrides})

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> StackSettings:
        return cls(**values)


StackSettings = create_model(
    "StackSettings",
    __base__=_Settings,
    __module__=__name__,
    __doc__="Everything that differs between deployments; each field is documented by the option it sets.",
    **_derived_fields(),
)
