"""Typed, validated settings of the local RDS Proxy stand-in.

Field names follow the RDS Proxy settings they emulate (``max_connections_percent``,
``connection_borrow_timeout``, ...) so the experiment can be configured from the same numbers
as the deployed ``aws_db_proxy`` / ``aws_db_proxy_default_target_group``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

#: The only session pinning filter RDS Proxy offers for MySQL.
EXCLUDE_VARIABLE_SETS = "EXCLUDE_VARIABLE_SETS"
SESSION_PINNING_FILTERS = frozenset({EXCLUDE_VARIABLE_SETS})
EVENT_LOOPS = ("auto", "asyncio", "uvloop")


class ProxyConfigError(ValueError):
    """A ProxyConfig field is out of range; the message names field, value and range."""


def _check_range(name: str, value, low, high) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ProxyConfigError(f"{name}={value!r}: must be a number in [{low}, {high}]")
    if not low <= value <= high:
        raise ProxyConfigError(f"{name}={value!r}: must be in [{low}, {high}]")


def _check_int(name: str, value, low, high) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ProxyConfigError(f"{name}={value!r}: must be an integer in [{low}, {high}]")
    _check_range(name, value, low, high)


def _check_text(name: str, value, allow_empty: bool) -> None:
    if not isinstance(value, str) or (not allow_empty and not value):
        kind = "a string" if allow_empty else "a non-empty string"
        raise ProxyConfigError(f"{name}={value!r}: must be {kind}")


@dataclass(frozen=True)
class ProxyConfig:
    """Settings of one proxy instance (one RDS Proxy with one default target group).

    Defaults are RDS Proxy's own defaults (100 % / 50 %, 120 s borrow timeout, 1800 s idle
    client timeout) except the ports, which default to a free loopback port.
    """

    backend_host: str
    backend_port: int
    backend_user: str
    backend_password: str
    client_user: str
    client_password: str
    db_max_connections: int
    max_connections_percent: int = 100
    max_idle_connections_percent: int = 50
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

    def __post_init__(self) -> None:
        _check_text("backend_host", self.backend_host, allow_empty=False)
        _check_int("backend_port", self.backend_port, 1, 65535)
        _check_text("backend_user", self.backend_user, allow_empty=False)
        _check_text("backend_password", self.backend_password, allow_empty=True)
        _check_text("client_user", self.client_user, allow_empty=False)
        _check_text("client_password", self.client_password, allow_empty=True)
        _check_int("db_max_connections", self.db_max_connections, 1, 100000)
        _check_int("max_connections_percent", self.max_connections_percent, 1, 100)
        _check_int("max_idle_connections_percent", self.max_idle_connections_percent,
                   0, self.max_connections_percent)
        _check_range("connection_borrow_timeout", self.connection_borrow_timeout, 0, 3600)
        _check_range("idle_client_timeout", self.idle_client_timeout, 1, 28800)
        _check_text("init_query", self.init_query, allow_empty=True)
        filters = self.session_pinning_filters
        if isinstance(filters, str) or not all(isinstance(f, str) for f in filters):
            raise ProxyConfigError(
                f"session_pinning_filters={filters!r}: must be a set of strings from "
                f"{sorted(SESSION_PINNING_FILTERS)}")
        object.__setattr__(self, "session_pinning_filters", frozenset(filters))
        unknown = self.session_pinning_filters - SESSION_PINNING_FILTERS
        if unknown:
            raise ProxyConfigError(
                f"session_pinning_filters={sorted(self.session_pinning_filters)!r}: "
                f"unknown {sorted(unknown)}, allowed {sorted(SESSION_PINNING_FILTERS)}")
        _check_text("listen_host", self.listen_host, allow_empty=False)
        _check_int("listen_port", self.listen_port, 0, 65535)
        if self.stats_port is not None:
            _check_int("stats_port", self.stats_port, 0, 65535)
        if self.event_loop not in EVENT_LOOPS:
            raise ProxyConfigError(f"event_loop={self.event_loop!r}: must be one of {EVENT_LOOPS}")
        if self.pool_cap < 1:
            raise ProxyConfigError(
                f"db_max_connections={self.db_max_connections} x max_connections_percent="
                f"{self.max_connections_percent} gives a pool of 0 connections; need >= 1")

    @property
    def pool_cap(self) -> int:
        """Most backend connections the proxy opens: floor(max_connections * percent / 100)."""
        return self.db_max_connections * self.max_connections_percent // 100

    @property
    def max_idle(self) -> int:
        """Most idle backend connections kept open; extra ones are closed on release."""
        return self.db_max_connections * self.max_idle_connections_percent // 100

    @property
    def exclude_variable_sets(self) -> bool:
        return EXCLUDE_VARIABLE_SETS in self.session_pinning_filters

    def __repr__(self) -> str:  # keep secrets out of logs and tracebacks
        return (f"ProxyConfig(listen={self.listen_host}:{self.listen_port}, backend="
                f"{self.backend_user}@{self.backend_host}:{self.backend_port}, cap={self.pool_cap}, "
                f"max_idle={self.max_idle}, borrow_timeout={self.connection_borrow_timeout}, "
                f"idle_client_timeout={self.idle_client_timeout}, "
                f"filters={sorted(self.session_pinning_filters)})")
