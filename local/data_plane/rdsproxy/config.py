"""Typed, validated settings of the local RDS Proxy stand-in.

Field names follow the RDS Proxy settings they emulate (``max_connections_percent``,
``connection_borrow_timeout``, ...) so the experiment can be configured from the same numbers
as the deployed ``aws_db_proxy`` / ``aws_db_proxy_default_target_group``. The pool rules (ranges,
defaults, pool-cap and max-idle arithmetic, pinning-filter names) are ``modules.pool_rules``'s; the
stand-in only adds fractional timeouts (tests use sub-second ones) and its own network limits.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from modules.pool_rules import (
    CONNECTION_BORROW_TIMEOUT_RANGE,
    EXCLUDE_VARIABLE_SETS,
    IDLE_CLIENT_TIMEOUT_RANGE,
    MAX_CONNECTIONS_PERCENT_RANGE,
    ConnectionPoolRules,
)
from modules.pool_rules import (
    SESSION_PINNING_FILTERS as _FILTER_NAMES,
)
from modules.validation import SettingsError

from .accounts import Account, AccountError, SecretAccount, account_from_json, check_accounts
from .growth import DEFAULT_PATIENCE_S

SESSION_PINNING_FILTERS = frozenset(_FILTER_NAMES)
EVENT_LOOPS = ("auto", "asyncio", "uvloop")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
#: MySQL's max_allowed_packet range and the RDS for MySQL 8.0 default (64 MiB).
MAX_ALLOWED_PACKET_RANGE = (1024, 1 << 30)
DEFAULT_MAX_ALLOWED_PACKET = 64 << 20
#: Reply bytes buffered for one client (the handler's replies are a few KiB); the most a stalled reader costs in memory.
CLIENT_BUFFER_LIMIT_RANGE = (64 << 10, 1 << 30)
DEFAULT_CLIENT_BUFFER_LIMIT = 1 << 20
#: Seconds; MySQL's connect_timeout default is 10 s, net_write_timeout 60 s.
LOGIN_TIMEOUT_RANGE = (0.1, 3600)
CLIENT_WRITE_TIMEOUT_RANGE = (0.1, 3600)
REPLY_STALL_TIMEOUT_RANGE = (0.1, 3600)
POOL_GROWTH_PATIENCE_RANGE = (0.0001, 10)

__all__ = ["EXCLUDE_VARIABLE_SETS", "SESSION_PINNING_FILTERS", "ProxyConfig", "ProxyConfigError"]


class ProxyConfigError(SettingsError):
    """A ProxyConfig field is out of range; the message names field, value and range."""

    def __init__(self, field_name: str, value, allowed: str):
        self.field_name, self.value, self.allowed = field_name, value, allowed
        ValueError.__init__(self, f"{field_name}={value!r}: must be {allowed}")


def _check_range(name: str, value, low, high) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ProxyConfigError(name, value, f"a number in [{low}, {high}]")
    if not low <= value <= high:
        raise ProxyConfigError(name, value, f"in [{low}, {high}]")


def _check_int(name: str, value, low, high) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ProxyConfigError(name, value, f"an integer in [{low}, {high}]")
    _check_range(name, value, low, high)


def _check_text(name: str, value, allow_empty: bool) -> None:
    if not isinstance(value, str) or (not allow_empty and not value):
        raise ProxyConfigError(name, value, "a string" if allow_empty else "a non-empty string")


@dataclass(frozen=True)
class ProxyConfig:
    """Settings of one proxy instance (one RDS Proxy with one default target group).

    Defaults are RDS Proxy's own (100 % / 50 %, 120 s borrow timeout, 1800 s idle client timeout) except the
    ports, which default to a free loopback port.
    """

    backend_host: str
    backend_port: int
    #: One account per client user (``StaticAccount`` or ``SecretAccount``): clients log in as one of these users
    #: and get database connections opened with that account's credentials.
    accounts: tuple[Account, ...]
    db_max_connections: int
    max_connections_percent: int = 100
    max_idle_connections_percent: int = 50
    #: Seconds a command waits for a database connection when the pool is at its cap; 0 waits without limit.
    connection_borrow_timeout: float = 120.0
    idle_client_timeout: float = 1800.0
    init_query: str = ""
    session_pinning_filters: frozenset[str] = field(default_factory=frozenset)
    listen_host: str = "127.0.0.1"
    listen_port: int = 0
    #: Port of the ``GET /stats`` JSON endpoint on ``listen_host``; None disables it, 0 picks a free port.
    stats_port: int | None = None
    #: "auto" uses uvloop when it is installed.
    event_loop: str = "auto"
    #: Seconds a client has from TCP accept to a finished login before it is dropped.
    login_timeout: float = 10.0
    #: Seconds a client may leave reply bytes unread (taking none of them) before it is dropped with its buffer.
    client_write_timeout: float = 60.0
    #: Reply bytes buffered for one client. A reply that fits is read from the database at once and the backend
    #: goes back to the pool however slowly the client reads; above it, the client must keep reading.
    client_buffer_limit: int = DEFAULT_CLIENT_BUFFER_LIMIT
    #: Seconds a client holding a backend may sit above ``client_buffer_limit`` without reading a quarter of it;
    #: then it is dropped and its backend closed, so a stalled reader never keeps a pool slot.
    reply_stall_timeout: float = 1.0
    #: Seconds the first queued borrow waits for a connection to come back before the pool opens one more (one at
    #: a time; see ``growth``). RDS Proxy documents no number; small values make the pool greedier.
    pool_growth_patience: float = DEFAULT_PATIENCE_S
    #: Largest command a logged-in client may send (bytes); bigger ones get error 1153 and are closed.
    max_allowed_packet: int = DEFAULT_MAX_ALLOWED_PACKET
    #: RDS Proxy's require_tls: clients that do not start TLS are refused (error 3159) before any password.
    require_tls: bool = False
    #: Terraform state of the deployed stack: when set, clients log in with RDS IAM auth tokens
    #: (mysql_clear_password, TLS required); else with their account's password (mysql_native_password).
    iam_state_file: str = ""
    #: Local CA directory ("" = .local/ca). TLS is offered when require_tls, iam_state_file or ca_dir is set.
    ca_dir: str = ""
    #: Key that runtime credentials are derived from ("" = .local/auth/issuer.key); IAM mode only.
    issuer_key_path: str = ""
    #: Secrets Manager endpoint (the emulator) that ``SecretAccount`` secrets and IAM principals are read from.
    secrets_endpoint: str = ""
    #: Level of the stand-in's log; INFO shows every refused login (one line each).
    log_level: str = "INFO"

    def __post_init__(self) -> None:
        _check_text("backend_host", self.backend_host, allow_empty=False)
        _check_int("backend_port", self.backend_port, 1, 65535)
        try:
            object.__setattr__(self, "accounts", check_accounts(self.accounts))
        except AccountError as exc:
            raise ProxyConfigError("accounts", self.accounts, f"a list of valid accounts ({exc})") from None
        _check_int("db_max_connections", self.db_max_connections, 1, 100000)
        _check_int("max_connections_percent", self.max_connections_percent, *MAX_CONNECTIONS_PERCENT_RANGE)
        _check_int("max_idle_connections_percent", self.max_idle_connections_percent, 0, self.max_connections_percent)
        _check_range("connection_borrow_timeout", self.connection_borrow_timeout, *CONNECTION_BORROW_TIMEOUT_RANGE)
        _check_range("idle_client_timeout", self.idle_client_timeout, *IDLE_CLIENT_TIMEOUT_RANGE)
        _check_text("init_query", self.init_query, allow_empty=True)
        self._check_filters()
        _check_text("listen_host", self.listen_host, allow_empty=False)
        _check_int("listen_port", self.listen_port, 0, 65535)
        if self.stats_port is not None:
            _check_int("stats_port", self.stats_port, 0, 65535)
        if self.event_loop not in EVENT_LOOPS:
            raise ProxyConfigError("event_loop", self.event_loop, f"one of {EVENT_LOOPS}")
        if self.log_level not in LOG_LEVELS:
            raise ProxyConfigError("log_level", self.log_level, f"one of {LOG_LEVELS}")
        _check_range("login_timeout", self.login_timeout, *LOGIN_TIMEOUT_RANGE)
        _check_range("client_write_timeout", self.client_write_timeout, *CLIENT_WRITE_TIMEOUT_RANGE)
        _check_int("client_buffer_limit", self.client_buffer_limit, *CLIENT_BUFFER_LIMIT_RANGE)
        _check_range("reply_stall_timeout", self.reply_stall_timeout, *REPLY_STALL_TIMEOUT_RANGE)
        _check_range("pool_growth_patience", self.pool_growth_patience, *POOL_GROWTH_PATIENCE_RANGE)
        _check_int("max_allowed_packet", self.max_allowed_packet, *MAX_ALLOWED_PACKET_RANGE)
        self._check_security()
        try:
            rules = ConnectionPoolRules(
                max_connections_percent=self.max_connections_percent,
                max_idle_connections_percent=self.max_idle_connections_percent,
                init_query=self.init_query or None,
                session_pinning_filters=tuple(sorted(self.session_pinning_filters)),
            )
        except SettingsError as exc:
            raise ProxyConfigError(exc.field_name, exc.value, exc.allowed) from None
        object.__setattr__(self, "_rules", rules)
        if self.db_max_connections * self.max_connections_percent // 100 < 1:
            raise ProxyConfigError(
                "db_max_connections",
                self.db_max_connections,
                f"a value that with max_connections_percent={self.max_connections_percent} does not give "
                "a pool of 0 connections (need >= 1)",
            )

    def _check_filters(self) -> None:
        filters = self.session_pinning_filters
        if isinstance(filters, str) or not all(isinstance(f, str) for f in filters):
            raise ProxyConfigError(
                "session_pinning_filters", filters, f"a set of strings from {sorted(SESSION_PINNING_FILTERS)}"
            )
        object.__setattr__(self, "session_pinning_filters", frozenset(filters))
        unknown = self.session_pinning_filters - SESSION_PINNING_FILTERS
        if unknown:
            raise ProxyConfigError(
                "session_pinning_filters",
                sorted(self.session_pinning_filters),
                f"from {sorted(SESSION_PINNING_FILTERS)} (unknown {sorted(unknown)})",
            )

    def _check_security(self) -> None:
        if not isinstance(self.require_tls, bool):
            raise ProxyConfigError("require_tls", self.require_tls, "true or false")
        for name in ("iam_state_file", "ca_dir", "issuer_key_path", "secrets_endpoint"):
            _check_text(name, getattr(self, name), allow_empty=True)
        if self.issuer_key_path and not self.iam_state_file:
            raise ProxyConfigError("issuer_key_path", self.issuer_key_path, "empty unless iam_state_file is set")
        needs_endpoint = any(isinstance(account, SecretAccount) for account in self.accounts)
        if needs_endpoint and not self.secrets_endpoint:
            raise ProxyConfigError(
                "secrets_endpoint",
                self.secrets_endpoint,
                "an http(s):// Secrets Manager endpoint when an account is a secret ARN",
            )
        if self.secrets_endpoint and not self.secrets_endpoint.startswith(("http://", "https://")):
            raise ProxyConfigError("secrets_endpoint", self.secrets_endpoint, "an http:// or https:// URL")

    @property
    def iam_auth(self) -> bool:
        """Clients log in with IAM auth tokens (RDS Proxy's auth block with iam_auth REQUIRED)."""
        return bool(self.iam_state_file)

    @property
    def tls_required(self) -> bool:
        """Plain-text clients are refused: require_tls, and always with IAM (a token is never sent in clear)."""
        return self.require_tls or self.iam_auth

    @property
    def tls_offered(self) -> bool:
        return self.tls_required or bool(self.ca_dir)

    @property
    def rules(self) -> ConnectionPoolRules:
        """The shared pool rules these settings satisfy (timeouts there are AWS's whole seconds)."""
        return self._rules  # type: ignore[attr-defined]

    @property
    def pool_cap(self) -> int:
        """Most backend connections the proxy opens: floor(max_connections * percent / 100)."""
        return self.rules.pool_cap(self.db_max_connections)

    @property
    def max_idle(self) -> int:
        """Most idle backend connections kept open; extra ones are closed on release."""
        return self.rules.max_idle(self.db_max_connections)

    @property
    def exclude_variable_sets(self) -> bool:
        return self.rules.excludes_variable_sets

    def to_json(self) -> dict:
        """Every field as JSON values (the child process's config file; passwords included)."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        fields["accounts"] = [account.to_json() for account in self.accounts]
        fields["session_pinning_filters"] = sorted(self.session_pinning_filters)
        return fields

    @classmethod
    def from_json(cls, fields: dict) -> ProxyConfig:
        """The inverse of ``to_json``; ProxyConfigError for a bad field."""
        fields = dict(fields)
        try:
            fields["accounts"] = tuple(account_from_json(a) for a in fields.get("accounts", ()))
        except (AccountError, TypeError, AttributeError) as exc:
            raise ProxyConfigError("accounts", "<from the config file>", f"a list of valid accounts ({exc})") from None
        fields["session_pinning_filters"] = frozenset(fields.get("session_pinning_filters", ()))
        return cls(**fields)

    def __repr__(self) -> str:  # keep secrets out of logs and tracebacks
        accounts = [getattr(a, "user", None) or getattr(a, "secret_arn", "?") for a in self.accounts]
        cap = f"{self.pool_cap}, max_idle={self.max_idle}" if hasattr(self, "_rules") else "?"  # while validating
        return (
            f"ProxyConfig(listen={self.listen_host}:{self.listen_port}, backend={self.backend_host}:"
            f"{self.backend_port}, accounts={accounts}, cap={cap}, borrow_timeout={self.connection_borrow_timeout}, "
            f"idle_client_timeout={self.idle_client_timeout}, "
            f"filters={sorted(self.session_pinning_filters)}, login_timeout={self.login_timeout}, "
            f"client_write_timeout={self.client_write_timeout}, client_buffer_limit={self.client_buffer_limit}, "
            f"reply_stall_timeout={self.reply_stall_timeout}, pool_growth_patience={self.pool_growth_patience}, "
            f"max_allowed_packet={self.max_allowed_packet}, "
            f"require_tls={self.require_tls}, iam={self.iam_state_file or None})"
        )
