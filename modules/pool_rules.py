"""RDS Proxy connection-pool rules: ranges, AWS defaults and the pool-cap arithmetic, defined once.

The stack's settings, the reader of the deployed state and the local proxy stand-in all build a
``ConnectionPoolRules``, so a value the stack accepts is exactly a value the stand-in starts with.
Ranges and defaults are those of ``aws_db_proxy_default_target_group.connection_pool_config`` and
``aws_db_proxy.idle_client_timeout`` (RDS API ``ConnectionPoolConfiguration``).
"""

from __future__ import annotations

from dataclasses import dataclass

from modules.validation import SettingsError, check_choice, check_range

#: The only session pinning filter RDS Proxy offers for MySQL: SET statements no longer pin.
EXCLUDE_VARIABLE_SETS = "EXCLUDE_VARIABLE_SETS"
SESSION_PINNING_FILTERS = (EXCLUDE_VARIABLE_SETS,)

MAX_CONNECTIONS_PERCENT_RANGE = (1, 100)
CONNECTION_BORROW_TIMEOUT_RANGE = (0, 3600)
IDLE_CLIENT_TIMEOUT_RANGE = (1, 28800)
INIT_QUERY_MAX_CHARS = 4096


@dataclass(frozen=True)
class ConnectionPoolRules:
    """One proxy's pool settings; defaults are AWS's (100 %, 50 %, 120 s borrow, 1800 s idle client)."""

    max_connections_percent: int = 100
    max_idle_connections_percent: int = 50
    connection_borrow_timeout: int = 120
    """Seconds a client waits for a pooled DB connection before failing (error 9501)."""
    idle_client_timeout: int = 1800
    """Seconds before the proxy closes an idle client connection."""
    init_query: str | None = None
    session_pinning_filters: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check_range("max_connections_percent", self.max_connections_percent, *MAX_CONNECTIONS_PERCENT_RANGE)
        idle = self.max_idle_connections_percent
        if isinstance(idle, bool) or not isinstance(idle, int) or not 0 <= idle <= self.max_connections_percent:
            raise SettingsError(
                "max_idle_connections_percent",
                idle,
                f"an integer from 0 to max_connections_percent ({self.max_connections_percent})",
            )
        check_range("connection_borrow_timeout", self.connection_borrow_timeout, *CONNECTION_BORROW_TIMEOUT_RANGE)
        check_range("idle_client_timeout", self.idle_client_timeout, *IDLE_CLIENT_TIMEOUT_RANGE)
        if self.init_query is not None and (
            not isinstance(self.init_query, str)
            or not self.init_query.strip()
            or len(self.init_query) > INIT_QUERY_MAX_CHARS
        ):
            raise SettingsError("init_query", self.init_query, f"null or 1-{INIT_QUERY_MAX_CHARS} characters of SQL")
        if isinstance(self.session_pinning_filters, str):
            raise SettingsError(
                "session_pinning_filters",
                self.session_pinning_filters,
                "a list of " + ", ".join(SESSION_PINNING_FILTERS),
            )
        object.__setattr__(self, "session_pinning_filters", tuple(self.session_pinning_filters))
        for name in self.session_pinning_filters:
            check_choice("session_pinning_filters", name, SESSION_PINNING_FILTERS)

    @property
    def excludes_variable_sets(self) -> bool:
        return EXCLUDE_VARIABLE_SETS in self.session_pinning_filters

    def pool_cap(self, db_max_connections: int) -> int:
        """Most DB connections the proxy opens: floor(max_connections x percent / 100), never 0."""
        cap = db_max_connections * self.max_connections_percent // 100
        if cap < 1:
            raise SettingsError(
                "max_connections_percent",
                self.max_connections_percent,
                f"a percentage that leaves at least one connection of the DB's max_connections={db_max_connections}",
            )
        return cap

    def max_idle(self, db_max_connections: int) -> int:
        """Most idle DB connections kept open; extra ones are closed on release."""
        return db_max_connections * self.max_idle_connections_percent // 100
