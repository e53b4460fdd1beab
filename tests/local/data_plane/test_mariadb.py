"""The private MariaDB launcher: isolation, unprivileged app account, extra-port monitoring, cleanup."""

from __future__ import annotations

import contextlib
import getpass
import os
import pwd
import shutil
import socket
import stat
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import mysql.connector
import pytest

from local.data_plane.mariadb import MariaDBConfig, MariaDBError, MariaDBServer
from tests.local.data_plane.os_user_support import (
    OTHER_USER,
    mariadb_cli_as_other_user,
    require_other_user,
    world_traversable_dir,
)


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
        # The refused connection's thread may still be ending; once it has, the ten are all that count: the
        # monitor asking on the extra port is not counted.
        assert small.wait_for_connections(at_most=10) == 10
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


# -- closed to other OS users ------------------------------------------------------------------
def _accounts(server: MariaDBServer) -> list[tuple[str, str, str, str, str]]:
    with server.admin_connect() as admin:
        cursor = admin.cursor()
        cursor.execute(
            "SELECT User, Host, JSON_VALUE(Priv, '$.plugin'), JSON_VALUE(Priv, '$.authentication_string'),"
            " IFNULL(JSON_EXTRACT(Priv, '$.account_locked'), 'false') FROM mysql.global_priv ORDER BY User, Host"
        )
        return [tuple(_text(value) for value in row) for row in cursor.fetchall()]


def _text(value: object) -> str:
    return value.decode() if isinstance(value, (bytes, bytearray)) else str(value)


def _passwordless(server: MariaDBServer) -> list[tuple[str, str]]:
    """Accounts anyone who reaches the server could log in to without a secret (unix_socket needs the OS user)."""
    return [
        (user, host)
        for user, host, plugin, auth, locked in _accounts(server)
        if locked != "true" and plugin != "unix_socket" and auth in ("", "None")
    ]


def test_no_account_logs_in_without_a_password(small: MariaDBServer) -> None:
    assert _passwordless(small) == []
    hosts = {(user, host) for user, host, *_ in _accounts(small)}
    assert hosts == {("root", "localhost"), ("root", "127.0.0.1"), ("mariadb.sys", "localhost"), (small.app_user, "%")}


def test_the_master_can_manage_its_database_and_users_but_holds_no_connection_reserve(small: MariaDBServer) -> None:
    with small.app_connect() as conn:
        cursor = conn.cursor()
        cursor.execute("SHOW GRANTS")
        grants = [row[0] for row in cursor.fetchall()]
        assert any(f"ON `{small.database}`.*" in g and g.endswith("WITH GRANT OPTION") for g in grants), grants
        assert any(g.startswith("GRANT CREATE USER ON *.*") for g in grants), grants
        assert not any("SUPER" in g or "CONNECTION ADMIN" in g or "ALL PRIVILEGES ON *.*" in g for g in grants), grants
        cursor.execute("CREATE USER probe_user@'%' IDENTIFIED BY 'x'")  # what a migrator does for the app user
        try:
            cursor.execute(f"GRANT SELECT ON `{small.database}`.* TO probe_user@'%'")
            cursor.execute("SHOW GRANTS FOR probe_user@'%'")
            assert len(cursor.fetchall()) == 2
            with pytest.raises(mysql.connector.Error) as denied:
                cursor.execute("GRANT SELECT ON mysql.* TO probe_user@'%'")
            assert denied.value.errno in (1044, 1142)  # access denied: nothing beyond its own database
        finally:
            cursor.execute("DROP USER probe_user@'%'")


@pytest.fixture(scope="module")
def exposed_server() -> Iterator[MariaDBServer]:
    """A throw-away server under a directory every OS user may traverse: only its own protections count."""
    parent = world_traversable_dir("mariadb-exposed-")
    try:
        with MariaDBServer(MariaDBConfig(max_connections=10, tmp_parent=str(parent))) as server:
            yield server
    finally:
        shutil.rmtree(parent, ignore_errors=True)


def test_another_os_user_reaches_nothing_by_socket_or_tcp(exposed_server: MariaDBServer) -> None:
    require_other_user()
    server = exposed_server
    socket_dir = server.socket_path.parent
    assert stat.S_IMODE(socket_dir.stat().st_mode) == 0o700 and stat.S_IMODE(socket_dir.parent.stat().st_mode) == 0o755
    ours = subprocess.run(  # positive control: our own OS user does get in through the socket
        ["mariadb", "--no-defaults", "-S", str(server.socket_path), "-uroot", "-N", "-e", "SELECT CURRENT_USER()"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert ours.stdout.strip() == "root@localhost", ours.stderr
    for user in ("root", server.app_user, "mysql", OTHER_USER):
        by_socket = mariadb_cli_as_other_user("-S", str(server.socket_path), f"-u{user}")
        assert by_socket.returncode != 0 and "(13" in by_socket.stderr, by_socket  # EACCES on the socket
    for port in (server.port, server.extra_port):
        for user in ("root", "", server.app_user, OTHER_USER):
            over_tcp = mariadb_cli_as_other_user("-h127.0.0.1", f"-P{port}", "--protocol=TCP", f"-u{user}")
            assert over_tcp.returncode != 0 and "ERROR 1045" in over_tcp.stderr, (port, user, over_tcp)


def test_a_long_datadir_path_keeps_its_socket_in_a_private_directory(tmp_path: Path) -> None:
    require_other_user()
    parent = world_traversable_dir("mariadb-long-")
    deep = parent / ("d" * 60) / ("e" * 60)
    socket_dir = Path("/nonexistent")
    try:
        with MariaDBServer(MariaDBConfig(instance_dir=str(deep), app_user="app_admin", app_password="p")) as server:
            socket_dir = server.socket_path.parent
            assert not str(server.socket_path).startswith(str(deep)) and len(str(server.socket_path)) <= 100
            assert stat.S_IMODE(socket_dir.stat().st_mode) == 0o700
            denied = mariadb_cli_as_other_user("-S", str(server.socket_path), "-uroot")
            assert denied.returncode != 0 and "(13" in denied.stderr, denied
            with server.admin_connect() as admin:
                assert admin.is_connected()
        assert not socket_dir.exists()  # removed with the server
        socket_dir.mkdir(mode=0o755)  # another user gets there first: the name is predictable
        os.chown(socket_dir, pwd.getpwnam(OTHER_USER).pw_uid, -1)
        squatted = MariaDBServer(MariaDBConfig(instance_dir=str(deep), app_user="app_admin", app_password="p"))
        with pytest.raises(MariaDBError, match=r"is not a 0700 directory of this OS user: remove it"):
            squatted.start()
        assert not squatted.running
    finally:
        shutil.rmtree(parent, ignore_errors=True)
        shutil.rmtree(socket_dir, ignore_errors=True)


def test_a_datadir_installed_with_passwordless_root_is_closed_at_its_next_start(tmp_path: Path) -> None:
    instance = tmp_path / "instance"
    (instance / "data").parent.mkdir()
    installed = subprocess.run(
        [
            "mariadb-install-db",
            "--no-defaults",
            f"--datadir={instance / 'data'}",
            f"--user={getpass.getuser()}",
            "--auth-root-authentication-method=normal",  # how earlier releases installed the local DB instance
            "--skip-test-db",
            f"--tmpdir={tmp_path}",
            "--innodb-log-file-size=16M",
            "--innodb-buffer-pool-size=64M",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert installed.returncode == 0, installed.stdout[-2000:]
    config = MariaDBConfig(instance_dir=str(instance), app_user="app_admin", app_password="p")
    with MariaDBServer(config) as server:
        with server.app_connect() as conn:
            conn.cursor().execute("CREATE TABLE kept (x INT)")
        assert _passwordless(server) == []
        assert ("root", "::1") not in {(u, h) for u, h, *_ in _accounts(server)}
    with MariaDBServer(config) as server, server.app_connect() as conn:  # nothing that worked before breaks
        cursor = conn.cursor()
        cursor.execute("SELECT COUNT(*) FROM kept")
        assert cursor.fetchone() == (0,)


def test_a_long_tmpdir_puts_the_socket_directory_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    long_tmpdir = tmp_path / ("t" * 70)
    long_tmpdir.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(long_tmpdir))
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    with MariaDBServer(MariaDBConfig(instance_dir=str(deep), app_user="app_admin", app_password="p")) as server:
        socket_dir = server.socket_path.parent
        assert socket_dir.parent == Path("/tmp") and stat.S_IMODE(socket_dir.stat().st_mode) == 0o700, socket_dir
        with server.admin_connect() as admin:
            assert admin.is_connected()
    assert not socket_dir.exists()
