"""The local DB instance: deployed settings from state, the secret reader (real moto), the datadir lock (real
processes), durability, set-aside of a forgotten deployment, and destroy with a final snapshot (real MariaDB)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import boto3
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from local.common import db_instance
from local.common.db_instance import DbInstanceError, DeployedDbInstance, InstanceBusy, InstanceLock
from local.data_plane import db_parameters
from local.data_plane.mariadb import MariaDBConfig, MariaDBServer, mariadbd_available
from local.data_plane.mariadb_config import sql_string
from local.data_plane.secrets import SecretError, read_db_secret
from modules.project import REPO_ROOT
from tests.local.data_plane.deployed_state_support import REGION, deployed_state, make_secret

needs_mariadb = pytest.mark.skipif(not mariadbd_available(), reason="mariadb-server is not installed")


# ---------------------------------------------------------------- deployed settings
def test_the_deployed_instance_is_read_from_state():
    instance = db_instance.from_state(deployed_state("arn:aws:secretsmanager:r:1:secret:a", "arn:p"))
    assert instance == DeployedDbInstance(
        identifier="sms-local-db",
        db_name="app",
        username="app_admin",
        port=3306,
        secret_arn="arn:aws:secretsmanager:r:1:secret:a",
        proxy_secret_arn="arn:p",
        skip_final_snapshot=True,
        final_snapshot_identifier=None,
        parameters=(
            ("binlog_group_commit_sync_delay", "0"),
            ("innodb_flush_log_at_trx_commit", "2"),
            ("long_query_time", "1"),
            ("slow_query_log", "1"),
        ),
    )
    assert instance.final_snapshot is None
    kept = db_instance.from_state(deployed_state("arn:x", skip_final_snapshot=False, final_snapshot_identifier="f"))
    assert kept is not None and kept.final_snapshot == "f"
    assert db_instance.from_state({"version": 4, "resources": []}) is None  # destroyed


def test_a_final_snapshot_needs_an_identifier():
    with pytest.raises(DbInstanceError, match="final_snapshot_identifier=None: needed when skip_final_snapshot"):
        db_instance.from_state(deployed_state("arn:x", skip_final_snapshot=False))


def test_parameters_mariadb_cannot_honour_are_listed_with_the_reason():
    known = frozenset({"slow_query_log", "long_query_time", "innodb_flush_log_at_trx_commit", "max_connections"})
    options, skipped = db_parameters.translate(
        [
            ("slow_query_log", "1"),
            ("innodb_flush_log_at_trx_commit", "2"),
            ("max_connections", "{DBInstanceClassMemory/12582880}"),
            ("binlog_group_commit_sync_delay", "0"),
            ("long_query_time", "1; DROP"),
        ],
        known,
    )
    assert options == ("--slow-query-log=1",)
    assert [str(s) for s in skipped] == [
        "innodb_flush_log_at_trx_commit=2 (would lose committed rows on a crash)",
        "max_connections={DBInstanceClassMemory/12582880} (set by the local data plane)",
        "binlog_group_commit_sync_delay=0 (MariaDB has no such variable)",
        "long_query_time=1; DROP (value not usable as a server option)",
    ]


# ---------------------------------------------------------------- the secret, in a real emulator
def test_the_secret_reader_returns_the_credentials_of_the_right_arn(emulator):
    arn = make_secret(emulator.endpoint, "rds!db-right", {"username": "app_admin", "password": "pw-right"})
    make_secret(emulator.endpoint, "rds!db-other", {"username": "app_admin", "password": "pw-other"})
    assert read_db_secret(emulator.endpoint, arn) == ("app_admin", "pw-right")


def test_the_rds_managed_secret_of_an_instance_is_readable(emulator):
    rds = boto3.client(
        "rds", endpoint_url=emulator.endpoint, region_name=REGION, aws_access_key_id="t", aws_secret_access_key="t"
    )
    created = rds.create_db_instance(
        DBInstanceIdentifier="probe-db",
        Engine="mysql",
        DBInstanceClass="db.t3.micro",
        MasterUsername="app_admin",
        ManageMasterUserPassword=True,
        AllocatedStorage=20,
    )["DBInstance"]
    username, password = read_db_secret(emulator.endpoint, created["MasterUserSecret"]["SecretArn"])
    assert username and password  # moto 5.2.5 stores a fixed "admin" user; RDS stores the master user


def test_a_wrong_arn_fails_clearly_without_showing_any_value(emulator):
    arn = make_secret(emulator.endpoint, "rds!db-known", {"username": "u", "password": "pw-known"})
    missing = arn.replace("rds!db-known", "rds!db-missing")
    with pytest.raises(SecretError) as error:
        read_db_secret(emulator.endpoint, missing)
    assert f"cannot read secret {missing}" in str(error.value) and "ResourceNotFoundException" in str(error.value)
    with pytest.raises(SecretError, match="is not a Secrets Manager secret ARN"):
        read_db_secret(emulator.endpoint, "sms-local-db")
    not_credentials = make_secret(emulator.endpoint, "plain", "pw-plain")
    with pytest.raises(SecretError, match="does not hold DB credentials") as error:
        read_db_secret(emulator.endpoint, not_credentials)
    assert "pw-plain" not in str(error.value)


# ---------------------------------------------------------------- the datadir lock, across real processes
_HOLDER = """
import sys, time
sys.path.insert(0, {root!r})
from local.common.db_instance import InstanceLock
InstanceLock({directory!r}).acquire()
print("locked", flush=True)
time.sleep(60)
"""


def test_a_second_holder_is_refused_with_the_pid_and_a_dead_holder_is_taken_over(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER.format(root=str(REPO_ROOT), directory=str(tmp_path))],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with pytest.raises(InstanceBusy, match=rf"already in use by another `serve` \(pid {holder.pid}\)"):
            InstanceLock(tmp_path).acquire()
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(10)
        with InstanceLock(tmp_path) as lock:
            assert lock.previous_pid == holder.pid  # the stale lock is detected and taken over
            assert (tmp_path / "serve.lock").read_text().strip() == str(os.getpid())
    finally:
        holder.kill()
        holder.wait(10)


def test_a_datadir_of_an_earlier_deployment_is_set_aside_not_reused(tmp_path):
    lines: list[str] = []
    first = DeployedDbInstance("sms-local-db", "app", "app_admin", 3306, secret_arn="arn:first")
    directory = db_instance.prepare_dir(tmp_path, first, lines.append)
    (directory / "data").mkdir()
    (directory / "data" / "rows").write_text("9810")
    assert db_instance.prepare_dir(tmp_path, first, lines.append) == directory and lines == []
    again = DeployedDbInstance("sms-local-db", "app", "app_admin", 3306, secret_arn="arn:second")
    assert db_instance.prepare_dir(tmp_path, again, lines.append) == directory
    assert not (directory / "data").exists()
    (aside,) = [p for p in directory.parent.iterdir() if p.name.startswith("sms-local-db.stale-")]
    assert (aside / "data" / "rows").read_text() == "9810"
    assert len(lines) == 1 and aside.name in lines[0] and "earlier deployment" in lines[0]


# ---------------------------------------------------------------- real MariaDB: durability, parameters, destroy
def _count(server: MariaDBServer) -> int:
    with server.app_connect() as conn:
        cursor = conn.cursor()
        cursor.execute("CREATE TABLE IF NOT EXISTS t (id INT AUTO_INCREMENT PRIMARY KEY, v INT)")
        cursor.execute("SELECT COUNT(*) FROM t")
        return int(cursor.fetchone()[0])


def _insert(server: MariaDBServer, rows: int) -> None:
    with server.app_connect() as conn:
        cursor = conn.cursor()
        cursor.execute("CREATE TABLE IF NOT EXISTS t (id INT AUTO_INCREMENT PRIMARY KEY, v INT)")
        for value in range(rows):
            cursor.execute("INSERT INTO t (v) VALUES (%s)", (value,))  # autocommit: each row committed


@needs_mariadb
def test_a_persistent_instance_keeps_committed_rows_across_restart_and_kill_9(tmp_path):
    config = MariaDBConfig(instance_dir=str(tmp_path / "i"), app_user="app_admin", app_password="pw 'quoted'")
    with MariaDBServer(config) as server:
        with server.admin_connect() as admin:
            cursor = admin.cursor()
            cursor.execute("SELECT @@innodb_flush_log_at_trx_commit, @@innodb_doublewrite")
            assert cursor.fetchone() == (1, 1)
        _insert(server, 25)
    assert (tmp_path / "i" / "data").is_dir() and not (tmp_path / "i" / "init.sql").exists()
    server = MariaDBServer(config).start()
    try:
        assert _count(server) == 25
        _insert(server, 5)
        os.kill(server.pid, signal.SIGKILL)
        server.stop()
        server = MariaDBServer(config).start()
        assert _count(server) == 30  # crash recovery kept every committed row
    finally:
        server.stop()


@needs_mariadb
def test_honoured_parameters_reach_the_server(tmp_path):
    known = db_parameters.server_variables(db_parameters_binary())
    options, _ = db_parameters.translate([("slow_query_log", "1"), ("long_query_time", "1")], known)
    with MariaDBServer(MariaDBConfig(instance_dir=str(tmp_path), extra_args=options)) as server:
        admin = server.admin_connect()
        cursor = admin.cursor()
        cursor.execute("SELECT @@slow_query_log, @@long_query_time")
        assert cursor.fetchone() == (1, 1.0)
        admin.close()


def db_parameters_binary() -> str:
    from local.data_plane.mariadb_config import find_binary

    return find_binary(None, "mariadbd")


@needs_mariadb
@pytest.mark.parametrize("final_snapshot", [True, False], ids=["final-snapshot", "skip-final-snapshot"])
def test_destroy_keeps_the_final_snapshot_when_configured_and_removes_the_instance(tmp_path, final_snapshot):
    extra = {"skip_final_snapshot": False, "final_snapshot_identifier": "sms-local-db-final"} if final_snapshot else {}
    state_file = tmp_path / "terraform.local.tfstate"
    state_file.write_text(json.dumps(deployed_state("arn:aws:secretsmanager:r:1:secret:x", **extra)))
    instance = db_instance.from_state_file(state_file)
    assert instance is not None
    local_dir = tmp_path / ".local"
    directory = db_instance.prepare_dir(local_dir, instance, print)
    with MariaDBServer(MariaDBConfig(instance_dir=str(directory), app_user="app_admin", app_password="p")) as server:
        _insert(server, 7)
        with InstanceLock(directory), pytest.raises(InstanceBusy):  # a running serve holds the lock
            db_instance.before_destroy(state_file, local_dir, print)
    lines: list[str] = []
    remove = db_instance.before_destroy(state_file, local_dir, lines.append)
    assert directory.is_dir(), "the data stays until the destroy itself succeeded"
    remove()
    assert not directory.exists()
    snapshot = local_dir / "db-snapshots" / "sms-local-db-final"
    if not final_snapshot:
        assert not snapshot.exists() and "skip_final_snapshot = true" in lines[0]
        return
    assert f"final snapshot sms-local-db-final of sms-local-db kept in {snapshot}" == lines[0][5:]
    restored = tmp_path / "restored"
    restored.mkdir()
    os.rename(snapshot / "data", restored / "data")
    with MariaDBServer(MariaDBConfig(instance_dir=str(restored), app_user="app_admin", app_password="p")) as server:
        assert _count(server) == 7  # the snapshot is a usable datadir
    db_instance.prepare_dir(local_dir, instance, print)
    with MariaDBServer(MariaDBConfig(instance_dir=str(directory), app_user="app_admin", app_password="p")):
        pass
    with pytest.raises(DbInstanceError, match="final snapshot sms-local-db-final already exists"):
        db_instance.before_destroy(state_file, local_dir, print)  # like RDS's DBSnapshotAlreadyExists
    assert (directory / "data").is_dir(), "a refused destroy keeps the data"


def test_nothing_to_retire_without_a_local_instance(tmp_path):
    state_file = tmp_path / "s.tfstate"
    state_file.write_text(json.dumps({"version": 4, "resources": []}))
    lines: list[str] = []
    db_instance.before_destroy(state_file, tmp_path, lines.append)()
    instance_state = tmp_path / "i.tfstate"
    instance_state.write_text(json.dumps(deployed_state("arn:x")))
    db_instance.before_destroy(instance_state, tmp_path, lines.append)()  # deployed but never served: no datadir
    assert lines == [] and sorted(p.name for p in tmp_path.iterdir()) == ["i.tfstate", "s.tfstate"]


# ---------------------------------------------------------------- properties
_names = st.sampled_from(
    [
        "slow_query_log",
        "long_query_time",
        "innodb_flush_log_at_trx_commit",
        "innodb_doublewrite",
        "port",
        "max_connections",
        "datadir",
        "character_set_server",
        "no_such_variable",
    ]
)
_KNOWN = frozenset(
    {
        "slow_query_log",
        "long_query_time",
        "innodb_flush_log_at_trx_commit",
        "innodb_doublewrite",
        "port",
        "max_connections",
        "datadir",
        "character_set_server",
    }
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(_names, st.text(max_size=12)), max_size=8))
@example([("slow_query_log", "1\n")])  # "$" alone would let a trailing newline into the server option
def test_every_parameter_is_either_applied_safely_or_listed(parameters):
    options, skipped = db_parameters.translate(parameters, _KNOWN)
    assert len(options) + len(skipped) == len(parameters)
    for option in options:
        name, _, value = option[2:].partition("=")
        assert name.replace("-", "_") in _KNOWN - db_parameters.LOCALLY_MANAGED
        assert all(c.isascii() and (c.isalnum() or c in "_.,:/+*-") for c in value)
        if name == "innodb-flush-log-at-trx-commit":
            assert value == "1"
        if name == "innodb-doublewrite":
            assert value.upper() in {"1", "ON", "TRUE"}


@needs_mariadb
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(password=st.text(st.characters(codec="utf-8", exclude_characters="\n\r\x00"), max_size=40))
def test_any_password_is_written_as_one_sql_literal(mariadb_for_literals, password):
    with mariadb_for_literals.admin_connect() as admin:
        cursor = admin.cursor()
        cursor.execute(f"SELECT {sql_string(password)}")  # the init file's quoting, read back by the server
        assert cursor.fetchone()[0] == password


@pytest.fixture(scope="module")
def mariadb_for_literals(mariadb_factory):
    return mariadb_factory(max_connections=10)
