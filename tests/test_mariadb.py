"""The private MariaDB launcher: isolation, unprivileged app account, extra-port monitoring, cleanup."""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Callable

import mysql.connector
import pytest

from local.data_plane.mariadb import MariaDBConfig, MariaDBServer


@pytest.fixture(scope="module")
def small(mariadb_factory: Callable[..., MariaDBServer]) -> MariaDBServer:
    return mariadb_factory(max_connections=10, wait_timeout=120)


def test_knobs_reach_the_server(small: MariaDBServer) -> None:
    with small.admin_connect() as admin:
        cursor = admin.cursor()
        cursor.execute("SELECT @@max_connections, @@wait_timeout, @@port, @@extra_port, @@bind_address")
        assert cursor.fetchone() == (10, 120, small.port, small.extra_port, "127.0.0.1")


def test_app_account_is_unprivileged_but_owns_its_database(small: MariaDBServer) -> None:
    with small.app_connect() as conn:
        cursor = conn.cursor()
        cursor.execute("SHOW GRANTS")
        grants = " ".join(row[0] for row in cursor.fetchall())
        assert "SUPER" not in grants and "CONNECTION ADMIN" not in grants and "ALL PRIVILEGES ON *.*" not in grants
        assert f"GRANT ALL PRIVILEGES ON `{small.database}`.*" in grants
        cursor.execute("CREATE TABLE probe (x INT)")
        cursor.execute("DROP TABLE probe")
        with small.admin_connect() as admin, pytest.raises(mysql.connector.Error) as denied:
            cursor.execute(f"KILL CONNECTION {admin.connection_id}")
        assert denied.value.errno == 1095  # ER_KILL_DENIED_ERROR: "You are not owner of thread"


def test_full_server_refuses_the_app_with_1040_while_the_monitor_still_works(small: MariaDBServer) -> None:
    small.wait_for_connections(at_most=0)  # slots of earlier tests' closed connections are released
    held: list = []
    try:
        held.extend(small.app_connect() for _ in range(10))
        with pytest.raises(mysql.connector.Error) as refused:
            small.app_connect()  # no reserved SUPER slot for the app account
        assert refused.value.errno == 1040
        assert small.threads_connected() == 10  # the monitor on the extra port is not counted
        with small.admin_connect() as admin:  # extra port: outside max_connections
            assert admin.is_connected()
    finally:
        for connection in held:
            connection.close()


def test_kill_connections_kills_only_that_user_and_waits(small: MariaDBServer) -> None:
    small.wait_for_connections(at_most=0)
    victims = [small.app_connect() for _ in range(3)]
    monitor_ids_before = small.connection_ids("root")
    try:
        assert len(small.connection_ids(small.app_user)) == 3
        assert small.kill_connections(small.app_user) == 3
        assert small.connection_ids(small.app_user) == []
        assert small.connection_ids("root") == monitor_ids_before
        with pytest.raises(mysql.connector.Error) as lost:
            victims[0].cursor().execute("SELECT 1")
        assert lost.value.errno in (2013, 2055, 2006, -1)
    finally:
        for connection in victims:
            with contextlib.suppress(mysql.connector.Error):
                connection.close()


def test_instances_are_isolated_and_cleaned_up(small: MariaDBServer) -> None:
    with MariaDBServer(MariaDBConfig(database="other_db", app_user="other")) as second:
        assert {second.port, second.extra_port}.isdisjoint({small.port, small.extra_port})
        assert second.app_password != small.app_password
        datadir, pid = second.socket_path.parent, second.pid
        assert datadir.is_dir() and pid is not None
        with second.app_connect() as conn:
            cursor = conn.cursor()
            cursor.execute("SELECT DATABASE(), CURRENT_USER()")
            assert cursor.fetchone() == ("other_db", "other@%")
        with second.admin_connect() as admin:  # the shared datadir template carries no accounts over
            cursor = admin.cursor()
            cursor.execute("SELECT User FROM mysql.user WHERE User NOT IN ('root', 'mariadb.sys') ORDER BY User")
            assert cursor.fetchall() == [("other",)]
        assert not any(path.name == "init.sql" for path in datadir.iterdir())  # no password file left behind
        port = second.port
    assert not datadir.exists()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    with socket.socket() as probe:  # the port is free again
        assert probe.connect_ex(("127.0.0.1", port)) != 0


def test_root_over_tcp_needs_the_random_password(small: MariaDBServer) -> None:
    with pytest.raises(mysql.connector.Error) as denied:
        mysql.connector.connect(host=small.host, port=small.extra_port, user="root", password="", use_pure=True)
    assert denied.value.errno == 1045


@pytest.mark.parametrize(
    ("knobs", "message"),
    [
        ({"max_connections": 5}, "MariaDBConfig.max_connections=5 is out of range; allowed 10..100000"),
        ({"port": 0}, "MariaDBConfig.port=0 is out of range; allowed 1..65535"),
        ({"port": 4000, "extra_port": 4000}, "MariaDBConfig.extra_port=4000 must differ from port=4000"),
        ({"wait_timeout": 0}, "MariaDBConfig.wait_timeout=0 is out of range"),
        ({"database": "app; DROP"}, "MariaDBConfig.database='app; DROP' is not a safe identifier"),
        ({"app_user": "root"}, "MariaDBConfig.app_user='root' is not allowed"),
        ({"extra_args": ("max-connections=5",)}, "must be a tuple of '--option' strings"),
    ],
)
def test_invalid_config_names_field_value_and_range(knobs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError) as error:
        MariaDBConfig(**knobs)  # type: ignore[arg-type]
    assert message in str(error.value)


def test_failed_start_reports_the_error_log_and_cleans_up(tmp_path) -> None:
    config = MariaDBConfig(extra_args=("--no-such-option",), tmp_parent=str(tmp_path), reuse_datadir_template=False)
    server = MariaDBServer(config)
    with pytest.raises(RuntimeError, match="no-such-option"):
        server.start()
    assert not server.running
    assert list(tmp_path.iterdir()) == []
