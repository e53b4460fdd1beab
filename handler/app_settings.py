"""Handler configuration, read once per container from environment variables and validated up front.

A bad value fails the cold start with a message naming the variable, instead of surfacing later as a
confusing database error on every request.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

if __package__:
    from . import app_contract as env_names
else:  # top level of the Lambda zip
    import app_contract as env_names  # type: ignore[no-redef]

LAMBDA_CA_BUNDLE = env_names.LAMBDA_CA_BUNDLE
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
_AUTH_MODES = env_names.AUTH_MODES


class ConfigError(ValueError):
    """An environment variable is missing or has a value outside its allowed range."""


@dataclass(frozen=True)
class Settings:
    """Validated connection and behaviour settings of the handler."""

    host: str
    database: str
    user: str
    port: int = 3306
    table: str = "access_times"
    auth: str = "iam"
    password: str | None = field(default=None, repr=False)  # never in logs or tracebacks
    region: str | None = None
    ssl_ca: str | None = None
    ssl_verify_identity: bool = True
    response_limit: int = 100
    connect_timeout: float = 5.0
    log_level: str = "INFO"

    def __post_init__(self) -> None:
        for var, value in (("DB_HOST", self.host), ("DB_NAME", self.database), ("DB_USER", self.user)):
            if not value or value != value.strip():
                raise ConfigError(f"{var}={value!r} must be a non-empty string without surrounding spaces")
        if not 1 <= self.port <= 65535:
            raise ConfigError(f"DB_PORT={self.port!r} is out of range; allowed 1..65535")
        if not _IDENTIFIER.match(self.table):
            # The table name is spliced into SQL (identifiers cannot be bound parameters).
            raise ConfigError(
                f"DB_TABLE={self.table!r} is not a safe identifier; allowed [A-Za-z_][A-Za-z0-9_]{{0,63}}"
            )
        if self.auth not in _AUTH_MODES:
            raise ConfigError(f"DB_AUTH={self.auth!r} is not supported; allowed {', '.join(_AUTH_MODES)}")
        if self.auth == "iam":
            if not self.region:
                raise ConfigError("AWS_REGION must be set when DB_AUTH=iam (needed to sign the RDS auth token)")
            if not self.ssl_ca:
                raise ConfigError("DB_SSL_CA must not be empty when DB_AUTH=iam (IAM auth requires verified TLS)")
        if self.auth == "password" and self.password is None:
            raise ConfigError("DB_PASSWORD must be set when DB_AUTH=password")
        if not 1 <= self.response_limit <= 1000:
            raise ConfigError(f"RESPONSE_LIMIT={self.response_limit!r} is out of range; allowed 1..1000")
        if not 0 < self.connect_timeout <= 60:
            raise ConfigError(f"DB_CONNECT_TIMEOUT={self.connect_timeout!r} is out of range; allowed >0..60 seconds")
        if self.log_level not in _LOG_LEVELS:
            raise ConfigError(f"LOG_LEVEL={self.log_level!r} is not supported; allowed {', '.join(_LOG_LEVELS)}")

    @property
    def uses_tls(self) -> bool:
        return self.ssl_ca is not None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """Build settings from an environment mapping (``os.environ`` in Lambda)."""
        auth = env.get("DB_AUTH", "iam").strip().lower()
        ssl_ca = env.get("DB_SSL_CA")
        if ssl_ca is None and auth == "iam":
            ssl_ca = LAMBDA_CA_BUNDLE
        return cls(
            host=_required(env, "DB_HOST"),
            database=_required(env, "DB_NAME"),
            user=_required(env, "DB_USER"),
            port=_integer(env, "DB_PORT", 3306),
            table=env.get("DB_TABLE", "access_times"),
            auth=auth,
            password=env.get("DB_PASSWORD") if auth == "password" else None,
            region=env.get("AWS_REGION") or None,
            ssl_ca=ssl_ca or None,
            ssl_verify_identity=_boolean(env, "DB_SSL_VERIFY_IDENTITY", True),
            response_limit=_integer(env, "RESPONSE_LIMIT", 100),
            connect_timeout=_number(env, "DB_CONNECT_TIMEOUT", 5.0),
            log_level=env.get("LOG_LEVEL", "INFO").strip().upper(),
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
