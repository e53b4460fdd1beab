"""RDS Proxy's options: its connection pool and logging. Pure data (no cdktf).

The pool's ranges are ``modules.pool_rules``' (shared with the local RDS Proxy stand-in), so a value the stack
accepts is exactly one the stand-in starts with. The defaults are AWS's, except the pool cap: 70 % of the DB's
``max_connections``, as in the reference experiment, leaving room for administration and monitoring sessions.
"""

from __future__ import annotations

from typing import Annotated, Self

from pydantic import model_validator

from modules.pool_rules import (
    CONNECTION_BORROW_TIMEOUT_RANGE,
    IDLE_CLIENT_TIMEOUT_RANGE,
    INIT_QUERY_MAX_CHARS,
    MAX_CONNECTIONS_PERCENT_RANGE,
    SESSION_PINNING_FILTERS,
    ConnectionPoolRules,
)
from modules.props import Props, between, one_of, satisfying

DEFAULT_TARGET_GROUP = "default"
"""The name of RDS Proxy's one target group, which holds the pool settings."""

InitQuery = Annotated[
    str,
    satisfying(
        f"null or 1-{INIT_QUERY_MAX_CHARS} characters of SQL", lambda q: 0 < len(q.strip()) <= INIT_QUERY_MAX_CHARS
    ),
]


class ProxyOptions(Props):
    """RDS Proxy: TLS and IAM authentication are always required; these tune its pool and logging."""

    max_connections_percent: Annotated[int, between(*MAX_CONNECTIONS_PERCENT_RANGE)] = 70
    """Pool cap, as a percentage of the DB's max_connections: the most DB connections the proxy opens. 70 as in the
    reference experiment (AWS's default is 100). Default: 70."""
    max_idle_connections_percent: Annotated[int, between(0, 100)] = 50
    """Idle pooled connections kept open, as a percentage of max_connections; at most max_connections_percent.
    Default: 50 (AWS's)."""
    connection_borrow_timeout: Annotated[int, between(*CONNECTION_BORROW_TIMEOUT_RANGE)] = 120
    """Seconds a client waits for a pooled connection before it fails. Default: 120 (AWS's)."""
    idle_client_timeout: Annotated[int, between(*IDLE_CLIENT_TIMEOUT_RANGE)] = 1800
    """Seconds before the proxy closes an idle client connection. Default: 1800 (AWS's)."""
    init_query: InitQuery | None = None
    """SQL run on every new DB connection of the pool. Default: None."""
    session_pinning_filters: tuple[Annotated[str, one_of(SESSION_PINNING_FILTERS)], ...] = ()
    """Session state that does not pin a client to its DB connection. Default: none."""
    debug_logging: bool = False
    """Log SQL text to the proxy's log group; for debugging only. Default: False."""

    @model_validator(mode="after")
    def _idle_within_cap(self) -> Self:
        if self.max_idle_connections_percent > self.max_connections_percent:
            cap = self.max_connections_percent
            self.refuse("max_idle_connections_percent", f"an integer from 0 to {{max_connections_percent}} ({cap})")
        return self

    @property
    def pool_rules(self) -> ConnectionPoolRules:
        """The pool as the one definition of its arithmetic (pool cap, idle connections) sees it."""
        return ConnectionPoolRules(
            max_connections_percent=self.max_connections_percent,
            max_idle_connections_percent=self.max_idle_connections_percent,
            connection_borrow_timeout=self.connection_borrow_timeout,
            idle_client_timeout=self.idle_client_timeout,
            init_query=self.init_query,
            session_pinning_filters=self.session_pinning_filters,
        )
