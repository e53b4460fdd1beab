"""`serve` as a real process: the DB instance keeps its data across stop/start and kill -9, a second `serve` is
refused, a killed proxy is restarted, and nothing outlives a killed `serve`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from local.common.processes import ChildRegistry, pid_alive
from local.data_plane.mariadb import mariadbd_available
from local.data_plane.supervisor import Child, Supervisor
from modules.project import REPO_ROOT
from tests.local.data_plane.dataplane_support import write_current_state
from tests.local.data_plane.deployed_state_support import deployed_state, make_secret
from tests.local.data_plane.serve_support import Deployment, Serve, descendants, wait_gone

pytestmark = pytest.mark.heavy

needs_mariadb = pytest.mark.skipif(not mariadbd_available(), reason="mariadb-server is not installed")


@pytest.fixture
def deployment(emulator, tmp_path) -> Deployment:
    state_file = write_current_state(emulator.endpoint, tmp_path)
    return Deployment(state_file, tmp_path / ".local", emulator.endpoint, tmp_path)


@needs_mariadb
def test_rows_survive_a_stop_and_start_of_serve(deployment):
    first = Serve(deployment).start()
    try:
        counts = [first.get()[1]["count"] for _ in range(3)]
        assert counts == [1, 2, 3]
        assert f"data kept in {deployment.instance_dir}" in first.stdout
        (not_honoured,) = [line for line in first.stdout.splitlines() if line.startswith("parameters not honoured")]
        assert "innodb_flush_log_at_trx_commit=2 (would lose committed rows on a crash)" in not_honoured
        assert "binlog_group_commit_sync_delay=0 (MariaDB has no such variable)" in not_honoured
        assert "parameter group applied: long-query-time=1, slow-query-log=1" in first.stdout
        print(first.stdout)
        assert "pw-1" not in first.stdout + first.log()
    finally:
        assert first.stop() == 0
    assert not (deployment.instance_dir / "serve.lock").read_text().strip()
    second = Serve(deployment).start()
    try:
        assert second.get()[1]["count"] == 4
    finally:
        second.stop()


@needs_mariadb
def test_kill_9_of_serve_loses_no_committed_row_and_leaves_nothing_behind(deployment):
    first = Serve(deployment).start()
    try:
        for expected in range(1, 6):
            assert first.get()[1]["count"] == expected
        children = deployment.children()
        assert set(children) == {"mariadb", "rdsproxy"}
        tree = descendants(first.process.pid)
        assert set(children.values()) <= tree
    finally:
        first.kill()
    assert wait_gone(tree) == set(), "children must die with serve (parent-death signal)"
    again = Serve(deployment).start()
    try:
        assert again.get()[1]["count"] == 6  # every committed row kept
        assert f"took over the lock left by serve pid {first.process.pid}" in again.log()
    finally:
        again.stop()
    assert list((deployment.tmpdir / "tmp").iterdir()) == []  # no temp files or dirs left by either run


@needs_mariadb
def test_a_second_serve_on_the_same_stack_is_refused_with_the_pid(deployment):
    first = Serve(deployment).start()
    try:
        second = Serve(deployment).start(wait=False)
        assert second.process.wait(60) == 1
        assert f"already in use by another `serve` (pid {first.process.pid})" in second.log()
        assert first.get()[0] == 200  # the first one is unaffected
    finally:
        first.stop()


@needs_mariadb
def test_a_killed_proxy_is_logged_and_restarted(deployment):
    serve = Serve(deployment).start()
    try:
        assert serve.get()[0] == 200
        old = deployment.children()["rdsproxy"]
        os.kill(old, signal.SIGKILL)
        body = serve.wait_for_200()
        assert body["count"] >= 2
        new = deployment.children()["rdsproxy"]
        assert new != old and wait_gone({old}) == set()
        log = serve.log()
        assert f"RDS Proxy stand-in died (pid {old}, killed by signal 9); restarting it" in log
        assert f"RDS Proxy stand-in restarted (pid {new})" in log
        zombies = subprocess.run(
            ["ps", "-o", "stat=", "--ppid", str(serve.process.pid)], capture_output=True, text=True
        )
        assert "Z" not in zombies.stdout  # the dead proxy was reaped
    finally:
        serve.stop()


@needs_mariadb
def test_a_killed_db_is_logged_and_restarted_with_its_data(deployment):
    serve = Serve(deployment).start()
    try:
        assert [serve.get()[1]["count"] for _ in range(2)] == [1, 2]
        old = deployment.children()["mariadb"]
        os.kill(old, signal.SIGKILL)
        body = serve.wait_for_200(timeout_s=60)
        assert body["count"] == 3
        assert f"MariaDB died (pid {old}, killed by signal 9); restarting it" in serve.log()
    finally:
        serve.stop()


@needs_mariadb
def test_a_proxy_whose_auth_names_another_secret_fails_clearly(emulator, tmp_path):
    master = make_secret(emulator.endpoint, f"rds!db-m-{tmp_path.name}", {"username": "app_admin", "password": "a"})
    other = make_secret(emulator.endpoint, f"other-{tmp_path.name}", {"username": "app_admin", "password": "b"})
    state_file = tmp_path / "terraform.local.tfstate"
    state_file.write_text(json.dumps(deployed_state(master, proxy_secret_arn=other)))
    serve = Serve(Deployment(state_file, tmp_path / ".local", emulator.endpoint, tmp_path)).start(wait=False)
    assert serve.process.wait(120) == 1
    assert f"the proxy's auth secret {other} does not hold the master credentials of sms-local-db" in serve.log()


# ---------------------------------------------------------------- the building blocks, with real processes
_PARENT = """
import subprocess, sys, time
sys.path.insert(0, {root!r})
from local.common.processes import die_with_parent
child = subprocess.Popen(["sleep", "60"], preexec_fn=die_with_parent)
print(child.pid, flush=True)
time.sleep(60)
"""


def test_a_child_dies_with_its_parent_even_after_kill_9():
    parent = subprocess.Popen(
        [sys.executable, "-c", _PARENT.format(root=str(REPO_ROOT))], stdout=subprocess.PIPE, text=True
    )
    try:
        child = int(parent.stdout.readline())
        assert pid_alive(child)
    finally:
        parent.kill()
        parent.wait(10)
        parent.stdout.close()
    assert wait_gone({child}) == set()


def test_recorded_leftovers_are_ended_but_a_recycled_pid_is_left_alone(tmp_path):
    leftover = subprocess.Popen(["sleep", "60"])
    stranger = subprocess.Popen(["sleep", "60"])
    try:
        registry = ChildRegistry(tmp_path / "children.json")
        registry.add("mariadb", leftover.pid)
        registry.add("rdsproxy", stranger.pid)
        record = json.loads(registry.path.read_text())
        record["children"]["rdsproxy"]["start"] -= 1  # the pid now names another process than the one recorded
        registry.path.write_text(json.dumps(record))
        assert ChildRegistry(registry.path).end_leftovers() == {"mariadb": leftover.pid}
        assert leftover.wait(10) == -signal.SIGKILL
        assert stranger.poll() is None
        assert not registry.path.exists()
    finally:
        for process in (leftover, stranger):
            process.kill()
            process.wait(10)


def test_the_supervisor_restarts_a_dead_child_logs_it_and_backs_off_when_restarting_fails():
    lines: list[str] = []
    current = [subprocess.Popen(["sleep", "60"])]
    failures = [1]

    def restart() -> int:
        if failures[0]:
            failures[0] -= 1
            raise RuntimeError("port 1 in use")
        current[0] = subprocess.Popen(["sleep", "60"])
        return current[0].pid

    supervisor = Supervisor(lines.append, interval_s=0.05).start()
    supervisor.watch(Child("worker", lambda: current[0].poll() is None, lambda: "pid x", restart))
    try:
        first = current[0]
        first.kill()
        deadline = time.monotonic() + 10
        while supervisor.restarts("worker") == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert supervisor.restarts("worker") == 1 and current[0] is not first and current[0].poll() is None
        assert first.returncode == -signal.SIGKILL  # reaped by the liveness check: no zombie
        assert lines[0] == "[supervisor] worker died (pid x); restarting it"
        assert lines[1] == "[supervisor] worker could not be restarted (port 1 in use); next try in 0.5 s"
        assert lines[2].startswith(f"[supervisor] worker restarted (pid {current[0].pid}) in ")
        supervisor.pause()
        current[0].kill()
        current[0].wait(10)
        time.sleep(0.3)
        assert supervisor.restarts("worker") == 1  # paused: an orderly shutdown is not restarted
    finally:
        supervisor.stop()
        current[0].kill()
        current[0].wait(10)
