"""`serve`'s addresses: stable ports across restarts, a refusal naming a taken port, the record other commands read,
the hosts line and the stats address; and the stand-in's refusals in serve's own output."""

from __future__ import annotations

import json
import re
import socket
import time

import mysql.connector
import pytest

from local.common import ports as port_rules
from local.common.ports import LocalPorts, PortSettingError, PortTakenError, require_free, stack_ports
from local.common.serve_record import read_record, record_path
from local.data_plane.mariadb import mariadbd_available
from tests.local.data_plane.dataplane_support import write_current_state
from tests.local.data_plane.serve_support import Deployment, Serve

pytestmark = pytest.mark.heavy

needs_mariadb = pytest.mark.skipif(not mariadbd_available(), reason="mariadb-server is not installed")
ENDPOINT = "sms-local-proxy.proxy-x.ap-northeast-1.rds.amazonaws.com"
ADDRESS_LINE = re.compile(r"^(HTTP API|RDS Proxy stand-in|DB instance \(MariaDB\)|hosts line[^:]*): .*$", re.M)


# ---------------------------------------------------------------- the port block
def test_a_stack_keeps_its_block_and_the_base_variable_moves_it():
    assert stack_ports("local", {}) == stack_ports("local", {})
    assert stack_ports("local", {}) != stack_ports("aws", {})
    moved = stack_ports("local", {"LOCAL_PORT_BASE": "25000"})
    assert moved == LocalPorts(http=25000, proxy=25001, proxy_stats=25002, db=25003, db_extra=25004)
    with pytest.raises(PortSettingError, match=r"invalid setting LOCAL_PORT_BASE=70000: allowed an integer from 1024"):
        stack_ports("local", {"LOCAL_PORT_BASE": "70000"})


def test_single_ports_move_with_the_serve_options_and_clashes_are_refused():
    block = stack_ports("local", {"LOCAL_PORT_BASE": "25000"})
    assert block.with_overrides(http=8080, proxy=None) == LocalPorts(8080, 25001, 25002, 25003, 25004)
    with pytest.raises(PortSettingError, match=r"invalid port proxy=25003: used twice"):
        block.with_overrides(proxy=25003)
    with pytest.raises(PortSettingError, match=r"invalid port http=0: allowed an integer from 1 to 65535"):
        block.with_overrides(http=0)


def test_a_taken_port_is_refused_naming_it_and_what_to_set():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        taken = listener.getsockname()[1]
        block = LocalPorts(http=taken + 1 if taken < 65000 else 1025, proxy=taken, proxy_stats=1, db=2, db_extra=3)
        with pytest.raises(PortTakenError) as refused:
            require_free(block, ["proxy"])
    message = str(refused.value)
    assert f"port proxy={taken} on 127.0.0.1 is taken by another program" in message
    assert f"set {port_rules.PORT_BASE_VARIABLE}" in message and "--proxy-port" in message


# ---------------------------------------------------------------- serve as a real process
@pytest.fixture
def deployment(emulator, tmp_path) -> Deployment:
    state_file = write_current_state(emulator.endpoint, tmp_path)
    state = json.loads(state_file.read_text())
    for resource in state["resources"]:
        if resource["type"] == "aws_db_proxy":
            resource["instances"][0]["attributes"]["endpoint"] = ENDPOINT
    state_file.write_text(json.dumps(state))
    return Deployment(state_file, tmp_path / ".local", emulator.endpoint, tmp_path)


@needs_mariadb
def test_two_serve_starts_print_the_same_addresses_and_record_them(deployment):
    printed, records = [], []
    for _ in range(2):
        serve = Serve(deployment).start()
        try:
            assert serve.get()[0] == 200
            printed.append(
                ADDRESS_LINE.findall(serve.stdout) and [m.group(0) for m in ADDRESS_LINE.finditer(serve.stdout)]
            )
            records.append(read_record(deployment.local_state_dir, "local"))
        finally:
            assert serve.stop() == 0
        assert not record_path(deployment.local_state_dir, "local").exists()  # removed at stop
    assert printed[0] == printed[1] and len(printed[0]) == 4, printed
    base = deployment.port_base
    assert printed[0][0] == f"HTTP API: http://127.0.0.1:{base}/"
    assert printed[0][1] == f"RDS Proxy stand-in: 127.0.0.1:{base + 1}  (stats: http://127.0.0.1:{base + 2}/stats)"
    assert printed[0][2] == f"DB instance (MariaDB): 127.0.0.1:{base + 3}"
    assert printed[0][3].endswith(
        f"(then use port {base + 1}): 127.0.0.1 sms-local-proxy.proxy-x.ap-northeast-1.rds.amazonaws.com"
    )
    first, second = records
    assert first is not None and second is not None and first.pid != second.pid
    assert (first.http_url, first.proxy_port, first.stats_url, first.db_port) == (
        f"http://127.0.0.1:{base}",
        base + 1,
        f"http://127.0.0.1:{base + 2}/stats",
        base + 3,
    )
    assert first.endpoint == ENDPOINT and first.endpoint_port == 3306
    assert {**first.__dict__, "pid": 0} == {**second.__dict__, "pid": 0}


@needs_mariadb
def test_serve_refuses_a_taken_port_and_names_it(deployment):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", deployment.port_base + 1))
        squatter.listen()
        serve = Serve(deployment).start(wait=False)
        assert serve.process.wait(120) == 1
    log = serve.log()
    assert f"port proxy={deployment.port_base + 1} on 127.0.0.1 is taken by another program" in log, log
    assert "LOCAL_PORT_BASE" in log and "--proxy-port" in log
    moved = Serve(deployment, args=("--proxy-port", str(deployment.port_base + 6))).start()  # the way out it names
    try:
        assert moved.get()[0] == 200
        assert f"RDS Proxy stand-in: 127.0.0.1:{deployment.port_base + 6} " in moved.stdout
    finally:
        moved.stop()


@needs_mariadb
def test_a_refused_login_shows_in_serves_output_with_the_failed_check(deployment):
    serve = Serve(deployment).start()  # password mode: the stand-in checks each user's account password
    try:
        assert serve.get()[0] == 200
        with pytest.raises(mysql.connector.Error) as refused:
            mysql.connector.connect(
                host="127.0.0.1",
                port=deployment.port_base + 1,
                user="app_admin",
                password="not-the-password",
                use_pure=True,
                connection_timeout=10,
            )
        assert refused.value.errno == 1045
        line = _wait_for_line(serve, "refused login user=app_admin from 127.0.0.1:")
        assert "rdsproxy INFO" in line and line.split(": ", 1)[1], line  # the check that failed follows the address
        assert serve.get()[0] == 200  # the app is unaffected
    finally:
        serve.stop()
    assert f"(stats: http://127.0.0.1:{deployment.port_base + 2}/stats)" in serve.stdout


def _wait_for_line(serve: Serve, fragment: str, timeout_s: float = 30.0) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = [line for line in serve.log().splitlines() if fragment in line]
        if found:
            return found[0]
        time.sleep(0.1)
    raise AssertionError(f"no line with {fragment!r} in serve's output:\n{serve.log()}")
