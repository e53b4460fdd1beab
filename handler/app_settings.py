"""Handler configuration, read once per container from environment variables and validated up front.

A bad value fails the cold start with a message naming the variable, instead of surfacing later as a
confusing database error on every request.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from handler import app_contract as env_names

LAMBDA_CA_BUNDLE = env_names.LAMBDA_CA_BUNDLE
_MAX_TABLE = env_names.TABLE_NAME_MAX_LENGTH
_IDENTIFIER = re.compile(rf"^[A-Za-z_][A-Za-z0-9_]{{0,{_MAX_TABLE - 1}}}$")
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
_AUTH_MODES = env_names.AUTH_MODES
_LIMIT_LOW, _LIMIT_HIGH = env_names.RESPONSE_LIMIT_RANGE
_MARGIN_LOW, _MARGIN_HIGH = env_names.DEADLINE_MARGIN_MS_RANGE


class ConfigError(ValueError):
    """An environment variable is missing or has a value outside its allowed range."""


@dataclass(frozen=True)
class Settings:
    """Validated connection and behaviour settings of the handler."""

    host: str
    database: str
    user: str
    port: int = env_names.DEFAULT_PORT
    table: str = env_names.DEFAULT_TABLE
    auth: str = env_names.AUTH_IAM
    password: str | None = field(default=None, repr=False)  # never in logs or tracebacks
    region: str | None = None
    ssl_ca: str | None = None
    ssl_verify_identity: bool = True
    response_limit: int = env_names.RESPONSE_LIMIT_DEFAULT
    connect_timeout: float = env_names.CONNECT_TIMEOUT_DEFAULT
    deadline_margin_ms: int = env_names.DEADLINE_MARGIN_MS_DEFAULT
    log_level: str = "INFO"

    def __post_init__(self) -> None:
        required = ((env_names.DB_HOST, self.host), (env_names.DB_NAME, self.database), (env_names.DB_USER, self.user))
        for var, value in required:
            if not value or value != value.strip():
                raise ConfigError(f"{var}={value!r} must be a non-empty string without surrounding spaces")
        if not 1 <= self.port <= 65535:
            raise ConfigError(f"{env_names.DB_PORT}={self.port!r} is out of range; allowed 1..65535")
        if not _IDENTIFIER.match(self.table):
            # The table name is spliced into SQL (identifiers cannot be bound parameters); the handler's own
            # tables add a suffix to it, so it is shorter than MySQL's 64-character limit.
            raise ConfigError(
                f"{env_names.DB_TABLE}={self.table!r} is not a safe identifier; "
                f"allowed [A-Za-z_][A-Za-z0-9_]{{0,{_MAX_TABLE - 1}}}"
            )
        if self.auth not in _AUTH_MODES:
            raise ConfigError(f"{env_names.DB_AUTH}={self.auth!r} is not supported; allowed {', '.join(_AUTH_MODES)}")
        if self.auth == env_names.AUTH_IAM:
            when_iam = f"when {env_names.DB_AUTH}=iam"
            if not self.region:
                raise ConfigError(f"{env_names.AWS_REGION} must be set {when_iam} (needed to sign the RDS auth token)")
            if not self.ssl_ca:
                raise ConfigError(f"{env_names.DB_SSL_CA} must not be empty {when_iam} (IAM requires verified TLS)")
        if self.auth == env_names.AUTH_PASSWORD and self.password is None:
            raise ConfigError(f"{env_names.DB_PASSWORD} must be set when {env_names.DB_AUTH}=password")
        if not _LIMIT_LOW <= self.response_limit <= _LIMIT_HIGH:
            raise ConfigError(
                f"{env_names.RESPONSE_LIMIT}={self.response_limit!r} is out of range; "
                f"allowed {_LIMIT_LOW}..{_LIMIT_HIGH}"
            )
        if not 0 < self.connect_timeout <= 60:
            raise ConfigError(
                f"{env_names.DB_CONNECT_TIMEOUT}={self.connect_timeout!r} is out of range; allowed >0..60 seconds"
            )
        if not _MARGIN_LOW <= self.deadline_margin_ms <= _MARGIN_HIGH:
            raise ConfigError(
                f"{env_names.DB_DEADLINE_MARGIN_MS}={self.deadline_margin_ms!r} is out of range; "
                f"allowed {_MARGIN_LOW}..{_MARGIN_HIGH} milliseconds"
            )
        if self.log_level not in _LOG_LEVELS:
            raise ConfigError(
                f"{env_names.LOG_LEVEL}={self.log_level!r} is not supported; allowed {', '.join(_LOG_LEVELS)}"
            )

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """Build settings from an environment mapping (``os.environ`` in Lambda)."""
        auth = env.get(env_names.DB_AUTH, env_names.AUTH_IAM).strip().lower()
        ssl_ca = env.get(env_names.DB_SSL_CA)
        if ssl_ca is None and auth == env_names.AUTH_IAM:
            ssl_ca = LAMBDA_CA_BUNDLE
        return cls(
            host=_required(env, env_names.DB_HOST),
            database=_required(env, env_names.DB_NAME),
            user=_required(env, env_names.DB_USER),
            port=_integer(env, env_names.DB_PORT, env_names.DEFAULT_PORT),
            table=env.get(env_names.DB_TABLE, env_names.DEFAULT_TABLE),
            auth=auth,
            password=env.get(env_names.DB_PASSWORD) if auth == env_names.AUTH_PASSWORD else None,
            region=env.get(env_names.AWS_REGION) or None,
            ssl_ca=ssl_ca or None,
            ssl_verify_identity=_boolean(env, env_names.DB_SSL_VERIFY_IDENTITY, True),
            response_limit=_integer(env, env_names.RESPONSE_LIMIT, env_names.RESPONSE_LIMIT_DEFAULT),
            connect_timeout=_number(env, env_names.DB_CONNECT_TIMEOUT, env_names.CONNECT_TIMEOUT_DEFAULT),
            deadline_margin_ms=_integer(env, env_names.DB_DEADLINE_MARGIN_MS, env_names.DEADLINE_MARGIN_MS_DEFAULT),
            log_level=env.get(env_names.LOG_LEVEL, "INFO").strip().upper(),
        )


_USER_NAME = re.compile(env_names.APP_USER_NAME_PATTERN)
_SECRET_ARN = re.compile(r"^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:[A-Za-z0-9/_+=.@-]+$")


@dataclass(frozen=True)
class MigratorSettings:
    """The migrator's settings: the master connection (``DB_*``) and the application user it manages."""

    connection: Settings
    """How to reach the database as the master user (``DB_USER``): the same variables as the request path."""
    app_user: str
    """``APP_DB_USER``: the application user the request path logs in as; created and granted here."""
    app_secret_arn: str
    """``APP_DB_SECRET_ARN``: the Secrets Manager secret whose JSON holds that user's name and password."""

    def __post_init__(self) -> None:
        if not _USER_NAME.match(self.app_user):
            # Spliced into account-management statements (a user name cannot be a bound parameter).
            raise ConfigError(
                f"{env_names.APP_DB_USER}={self.app_user!r} is not a valid user name; "
                f"allowed {env_names.APP_USER_NAME_ALLOWED}"
            )
        if self.app_user == self.connection.user:
            raise ConfigError(
                f"{env_names.APP_DB_USER}={self.app_user!r} must differ from {env_names.DB_USER} (the master user, "
                "which only the migrator uses)"
            )
        if not _SECRET_ARN.match(self.app_secret_arn):
            raise ConfigError(
                f"{env_names.APP_DB_SECRET_ARN}={self.app_secret_arn!r} is not a Secrets Manager secret ARN; "
                "allowed arn:aws:secretsmanager:<region>:<account>:secret:<name>"
            )

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> MigratorSettings:
        """Build settings from an environment mapping (``os.environ`` in Lambda)."""
        return cls(
            connection=Settings.from_env(env),
            app_user=_required(env, env_names.APP_DB_USER).strip(),
            app_secret_arn=_required(env, env_names.APP_DB_SECRET_ARN).strip(),
        )


def _required(env: Mapping[str, str], name: str) -> str:
    value = env.get(name)
    if value is None or not value.strip():
        raise ConfigError(f"{name} is required but not set")
    return value


def _integer(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not an integer") from None


def _number(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None
    if math.isnan(value) or math.isinf(value):
        raise ConfigError(f"{name}={raw!r} is not a number")
    return value


def _boolean(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None:
        return default
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name}={raw!r} is not a boolean; allowed true/false")
