"""Connections to a running private MariaDB: the app account, root over the extra port, and monitoring.

A mixin of `local.data_plane.mariadb.MariaDBServer` (which provides host, ports, users and passwords).
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any

from local.data_plane.mariadb_config import MariaDBError


class MariaDBConnections:
    host: str
    admin_user: str
    database: str
    app_user: str
    app_password: str
    admin_password: str
    port: int
    extra_port: int
    _monitor: Any
    _monitor_lock: threading.Lock

    @property
    def running(self) -> bool:  # provided by the server class
        raise NotImplementedError

    # -- connections ------------------------------------------------------------------------------
    def app_connect(self, **overrides: Any) -> Any:
        """A new pure-Python connection as the unprivileged app account (counts against max_connections)."""
        import mysql.connector

        params: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "user": self.app_user,
            "password": self.app_password,
            "database": self.database,
            "use_pure": True,
            "autocommit": True,
            "connection_timeout": 5,
        }
        params.update(overrides)
        return mysql.connector.connect(**params)

    def admin_connect(self, **overrides: Any) -> Any:
        """A new root connection over the extra port, i.e. outside max_connections."""
        import mysql.connector

        if not self.running:
            raise MariaDBError("server not running")
        params: dict[str, Any] = {
            "host": self.host,
            "port": self.extra_port,
            "user": self.admin_user,
            "password": self.admin_password,
            "use_pure": True,
            "autocommit": True,
            "connection_timeout": 5,
        }
        params.update(overrides)
        return mysql.connector.connect(**params)

    def _query_as_monitor(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        # One long-lived monitor connection: sampling during load must not open a connection per sample.
        with self._monitor_lock:
            if self._monitor is None or not self._monitor.is_connected():
                self._monitor = self.admin_connect()
            cursor = self._monitor.cursor()
            try:
                cursor.execute(sql, params)
                return list(cursor.fetchall()) if cursor.with_rows else []
            finally:
                cursor.close()

    def _close_monitor(self) -> None:
        with self._monitor_lock:
            monitor, self._monitor = self._monitor, None
        if monitor is not None:
            with contextlib.suppress(Exception):  # the server may already be gone
                monitor.close()

    def threads_connected(self) -> int:
        """Connections counted against max_connections (MariaDB leaves extra-port ones, like the monitor, out)."""
        rows = self._query_as_monitor("SHOW GLOBAL STATUS LIKE 'Threads_connected'")
        return int(rows[0][1])

    def wait_for_connections(self, at_most: int = 0, timeout: float = 5.0) -> int:
        """Wait (bounded) until at most ``at_most`` connections count against max_connections.

        A client's close() returns before the server has released the slot; tests that fill the
        server to max_connections wait here first.
        """
        deadline = time.monotonic() + timeout
        while (current := self.threads_connected()) > at_most:
            if time.monotonic() > deadline:
                raise MariaDBError(f"still {current} connections after {timeout}s (wanted <= {at_most})")
            time.sleep(0.01)
        return current

    def connection_ids(self, user: str) -> list[int]:
        """Server-side connection ids of ``user``'s sessions, sorted."""
        rows = self._query_as_monitor(
            "SELECT ID FROM information_schema.PROCESSLIST WHERE USER = %s AND ID <> CONNECTION_ID() ORDER BY ID",
            (user,),
        )
        return [int(row[0]) for row in rows]

    def kill_connections(self, user: str, timeout: float = 5.0) -> int:
        """Kill every connection of ``user`` and wait (bounded) until they are gone; returns how many."""
        ids = self.connection_ids(user)
        for connection_id in ids:
            try:
                self._query_as_monitor(f"KILL CONNECTION {int(connection_id)}")
            except Exception as exc:
                if getattr(exc, "errno", None) != 1094:  # ER_NO_SUCH_THREAD
                    raise
        deadline = time.monotonic() + timeout
        while set(ids) & set(self.connection_ids(user)):
            if time.monotonic() > deadline:
                raise MariaDBError(f"connections of {user!r} still present {timeout}s after KILL")
            time.sleep(0.01)
        return len(ids)
