"""The Lambda-like runtime: warm reuse, on-demand containers up to the limit, LIFO, errors, timeouts, and the
production auth path's needs (per-container role credentials, region, endpoint name resolution, retirement)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import socket
import ssl
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from handler.app_contract import REQUEST_HANDLER
from local.data_plane.auth.authenticator import RuntimeCredentials
from local.data_plane.auth.credentials import CredentialIssuer, IssuerSettings
from local.data_plane.auth.local_ca import LocalCa, LocalCaSettings
from local.data_plane.auth.rds_token import TokenCheckSettings, verify_token
from local.data_plane.plane import HANDLER_DIR
from local.data_plane.runtime import (
    ContainerCrashed,
    FunctionError,
    FunctionTimeout,
    LambdaRuntime,
    RuntimeConfig,
    Throttled,
)
from local.data_plane.runtime_worker import WARM_BOTO3, ContainerSpec
from local.data_plane.task_root import unpacked_handler
from modules.validation import SettingsError
from tests.handler.handler_support import create_master, migrate, new_table
from tests.local.data_plane.auth.auth_support import DB_USER, ENDPOINT, REGION, ROLE_ARN
from tests.local.data_plane.dataplane_support import RUNTIME_HANDLERS
from tests.sync_support import wait_until

pytestmark = pytest.mark.heavy

HANDLERS = RUNTIME_HANDLERS


def config(**overrides) -> RuntimeConfig:
    values = dict(
        handler="sample_app.lambda_handler",
        code_dir=HANDLERS,
        environment={"SAMPLE_VALUE": "from-config"},
        max_concurrency=4,
        timeout_s=2.0,
    )
    values.update(overrides)
    return RuntimeConfig(**values)


def body(result: dict) -> dict:
    return json.loads(result["body"])


@pytest.fixture
def runtime():
    with LambdaRuntime(config()) as rt:
        yield rt


def test_warm_container_keeps_module_state_and_environment(runtime):
    first, second = body(runtime.invoke({"n": 1})), body(runtime.invoke({"n": 2}))
    assert first["pid"] == second["pid"]
    assert (first["calls"], second["calls"]) == (1, 2)
    assert second["env"] == "from-config"
    assert second["event"] == {"n": 2}
    assert 0 < second["remaining_ms"] <= 2000
    stats = runtime.stats()
    assert (stats.containers_created, stats.cold_starts, stats.invocations) == (1, 1, 2)


def test_containers_run_below_the_priority_of_the_shared_db_and_proxy():
    own = os.nice(0)
    with LambdaRuntime(config(cpu_niceness=7)) as rt:
        assert body(rt.invoke({}))["niceness"] == min(19, own + 7)


def test_containers_are_created_on_demand_up_to_the_limit_then_throttled(runtime):
    barrier_event = {"action": "sleep", "seconds": 1.5}
    with ThreadPoolExecutor(5) as pool:
        futures = [pool.submit(runtime.invoke, barrier_event) for _ in range(4)]
        assert wait_until(lambda: runtime.stats().busy_containers == 4, timeout=10)  # all four are running now
        with pytest.raises(Throttled) as throttled:
            runtime.invoke({})
        pids = {body(f.result())["pid"] for f in futures}
    assert throttled.value.error_type == "TooManyRequestsException"
    assert len(pids) == 4
    stats = runtime.stats()
    assert (stats.containers_created, stats.throttles, stats.peak_concurrency) == (4, 1, 4)
    # Once idle, the same containers serve again: no more cold starts.
    for _ in range(6):
        runtime.invoke({})
    assert runtime.stats().cold_starts == 4


def test_idle_containers_are_reused_last_in_first_out(runtime):
    with ThreadPoolExecutor(2) as pool:
        short = pool.submit(runtime.invoke, {"action": "sleep", "seconds": 0.1})
        long = pool.submit(runtime.invoke, {"action": "sleep", "seconds": 0.5})
        short_pid, long_pid = body(short.result())["pid"], body(long.result())["pid"]
    assert short_pid != long_pid
    assert body(runtime.invoke({}))["pid"] == long_pid  # released last, reused first


def test_handler_exception_is_a_function_error_and_the_container_stays_warm(runtime):
    pid = body(runtime.invoke({}))["pid"]
    with pytest.raises(FunctionError) as error:
        runtime.invoke({"action": "raise"})
    assert error.value.payload["errorType"] == "ValueError"
    assert error.value.payload["errorMessage"] == "boom"
    assert body(runtime.invoke({}))["pid"] == pid


def test_result_that_is_not_json_is_a_function_error(runtime):
    with pytest.raises(FunctionError) as error:
        runtime.invoke({"action": "not_json"})
    assert error.value.payload["errorType"] == "TypeError"


def test_timeout_kills_the_container_and_the_next_call_is_cold():
    with LambdaRuntime(config(timeout_s=0.3)) as rt:
        pid = body(rt.invoke({}))["pid"]
        started = time.monotonic()
        with pytest.raises(FunctionTimeout) as error:
            rt.invoke({"action": "sleep", "seconds": 5})
        assert time.monotonic() - started < 1.5
        assert "Task timed out after 0.30 seconds" in error.value.payload["errorMessage"]
        assert body(rt.invoke({}))["pid"] != pid
        stats = rt.stats()
        assert (stats.timeouts, stats.cold_starts, stats.live_containers) == (1, 2, 1)


def test_timeout_logs_lambdas_line_with_the_request_id_and_kills_the_container(caplog, tmp_path):
    log_file = tmp_path / "function.log"
    with LambdaRuntime(config(timeout_s=0.4, log_path=str(log_file))) as rt:
        pid = body(rt.invoke({}))["pid"]
        with caplog.at_level(logging.WARNING, logger="local.data_plane.runtime"), pytest.raises(FunctionTimeout):
            rt.invoke({"action": "sleep", "seconds": 5}, request_id="req-timeout-1")
        lines = [r.getMessage() for r in caplog.records if "Task timed out" in r.getMessage()]
        assert len(lines) == 1
        match = re.fullmatch(
            r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z) req-timeout-1 Task timed out after (\d+\.\d\d) seconds", lines[0]
        )
        assert match is not None, lines[0]
        assert 0.4 <= float(match.group(2)) < 2.0
        assert lines[0] in log_file.read_text().splitlines()  # the function's log stream, as on CloudWatch
        deadline = time.monotonic() + 5
        while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not os.path.exists(f"/proc/{pid}") or Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
        assert body(rt.invoke({}))["pid"] != pid  # the next invocation cold-starts a new container


def test_context_reports_the_time_left_before_the_function_timeout():
    with LambdaRuntime(config(timeout_s=3.0)) as rt:
        result = body(rt.invoke({"action": "sleep", "seconds": 0.5}))
    assert 2000 < result["remaining_ms"] <= 2500


def test_a_crashed_container_is_replaced(runtime):
    pid = body(runtime.invoke({}))["pid"]
    with pytest.raises(ContainerCrashed):
        runtime.invoke({"action": "exit"})
    assert body(runtime.invoke({}))["pid"] != pid


def test_init_failure_is_reported_with_its_error_type():
    with LambdaRuntime(config(environment={"SAMPLE_FAIL_INIT": "1"})) as rt:
        with pytest.raises(FunctionError) as error:
            rt.invoke({})
        assert error.value.payload["errorType"] == "RuntimeError"
        assert rt.stats().live_containers == 0


def test_close_stops_every_container():
    rt = LambdaRuntime(config())
    with ThreadPoolExecutor(3) as pool:
        list(pool.map(lambda _: rt.invoke({"action": "sleep", "seconds": 0.2}), range(3)))
    containers = list(rt._all)
    zygote = rt._zygote.process
    assert len(containers) == 3 and all(c.alive() for c in containers)
    rt.close()
    assert not any(c.alive() for c in containers)
    assert zygote.poll() is not None
    with pytest.raises(RuntimeError):
        rt.invoke({})


def test_concurrent_invocations_are_thread_safe(runtime):
    results: list[int] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(25):
            pid = body(runtime.invoke({}))["pid"]
            with lock:
                results.append(pid)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    stats = runtime.stats()
    assert len(results) == 100 and stats.invocations == 100
    assert stats.containers_created == len(set(results)) <= 4
    assert stats.busy_containers == 0


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("handler", "nodot", "handler='nodot'"),
        ("code_dir", "/nonexistent/dir", "code_dir='/nonexistent/dir'"),
        ("max_concurrency", 0, "max_concurrency=0: must be in 1..1000"),
        ("timeout_s", 901, "timeout_s=901: must be in (0, 900.0]"),
        ("memory_mb", 64, "memory_mb=64: must be in 128..10240"),
        ("environment", {"A": 1}, "environment={'A': 1}"),
        ("cpu_niceness", 20, "cpu_niceness=20: must be in 0..19"),
        ("region", "Tokyo", "invalid setting region='Tokyo'"),
        ("preload_modules", ["not a module"], "invalid setting preload_modules='not a module'"),
        ("address_overrides", ["db.example.com=127.0.0.1:1"], "invalid setting address_override="),
        ("address_overrides", ["db.example.com:3306=localhost:1"], "invalid setting target_host='localhost'"),
        ("max_container_age_s", 0, "invalid setting max_container_age_s=0: allowed seconds in (0, 43200]"),
        ("max_container_age_s", 43201, "invalid setting max_container_age_s=43201"),
    ],
)
def test_config_errors_name_field_value_and_range(field, value, message):
    with pytest.raises(ValueError) as error:
        config(**{field: value})
    assert message in str(error.value)


# --- the production auth path: role credentials, region, endpoint names, retirement ----------------------------


def probe(**overrides) -> RuntimeConfig:
    return config(**{"handler": "probe_app.lambda_handler", "environment": {"PROBE_VALUE": "function"}, **overrides})


@pytest.fixture
def issuer(tmp_path) -> CredentialIssuer:
    return CredentialIssuer(IssuerSettings(key_path=tmp_path / "issuer.key"))


@contextlib.contextmanager
def line_server(line: bytes, tls: ssl.SSLContext | None = None):
    """A loopback listener that answers every connection with `line` (over TLS when given); yields its port."""
    server = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            try:
                with tls.wrap_socket(conn, server_side=True) if tls else conn as peer:
                    peer.sendall(line + b"\n")
                    peer.recv(1)  # until the client closes
            except OSError:
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        server.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept() (close() alone does not on Linux)
        server.close()
        thread.join(5)
        assert not thread.is_alive()


def test_each_container_gets_its_own_role_credentials_from_container_environment(issuer):
    credentials = RuntimeCredentials(issuer, ROLE_ARN, "sms-local-api")
    with LambdaRuntime(probe(), container_environment=credentials.environment) as rt:
        with ThreadPoolExecutor(2) as pool:
            seen = list(pool.map(lambda _: rt.invoke({"action": "sleep", "seconds": 0.4}), range(2)))
        again = rt.invoke({})
    assert len({s["pid"] for s in seen}) == 2
    keys = {s["env"]["AWS_ACCESS_KEY_ID"] for s in seen}
    assert len(keys) == 2, "every container has fresh keys"
    for s in seen:
        env = s["env"]
        issued = issuer.resolve(env["AWS_ACCESS_KEY_ID"], env["AWS_SESSION_TOKEN"])
        assert issued.role_arn == ROLE_ARN and issued.secret_access_key == env["AWS_SECRET_ACCESS_KEY"]
        assert env["PROBE_VALUE"] == "function"  # the function's own variables are still there
    assert again["env"]["AWS_ACCESS_KEY_ID"] in keys  # a warm container keeps the keys it started with


@pytest.mark.parametrize("preload", [(), ("boto3", WARM_BOTO3)], ids=["cold-boto3", "warmed-boto3"])
def test_container_credentials_sign_an_rds_token_the_proxy_accepts(issuer, preload):
    """Also with boto3 warmed in the zygote: each container still signs with its own keys and region."""
    credentials = RuntimeCredentials(issuer, ROLE_ARN, "sms-local-api")
    config = probe(region=REGION, timeout_s=10.0, preload_modules=preload)
    event = {"action": "token", "host": ENDPOINT, "port": 3306, "user": DB_USER, "seconds": 0.3}
    with LambdaRuntime(config, container_environment=credentials.environment) as rt, ThreadPoolExecutor(2) as pool:
        signed = list(pool.map(lambda _: rt.invoke(event), range(2)))
    assert {s["session_was_warm"] for s in signed} == {bool(preload)}
    assert len({s["key"] for s in signed}) == 2
    checks = TokenCheckSettings(ENDPOINT, 3306, REGION)
    for s in signed:
        verified = verify_token(s["token"], DB_USER, checks, issuer).credentials
        assert (verified.role_arn, verified.access_key_id) == (ROLE_ARN, s["key"])


def test_container_environment_values_must_be_strings_and_are_not_echoed():
    with LambdaRuntime(probe(), container_environment=lambda: {"AWS_SESSION_TOKEN": b"secret-bytes"}) as rt:
        with pytest.raises(SettingsError) as error:
            rt.invoke({})
        assert "AWS_SESSION_TOKEN" in str(error.value) and "secret-bytes" not in str(error.value)
        stats = rt.stats()
        assert (stats.busy_containers, stats.live_containers) == (0, 0)


def test_container_spec_keeps_the_environment_out_of_its_repr():
    spec = probe().container_spec({"AWS_SECRET_ACCESS_KEY": "not-for-logs"})
    assert "not-for-logs" not in repr(spec)
    assert ContainerSpec.from_json(spec.to_json()) == spec


@settings(max_examples=200, deadline=None)
@given(
    environment=st.dictionaries(st.text(), st.text()),
    overrides=st.lists(st.text()),
    log_path=st.none() | st.text(),
    niceness=st.integers(0, 19),
)
def test_container_spec_survives_the_zygote_wire_format(environment, overrides, log_path, niceness):
    spec = ContainerSpec("m.f", "/code", "fn", 128, REGION, environment, tuple(overrides), log_path, niceness)
    decoded = ContainerSpec.from_json(spec.to_json().encode())
    assert decoded == spec and dict(decoded.environment) == environment


@pytest.mark.parametrize(
    "region, environment, expected",
    [
        (REGION, {}, REGION),
        (REGION, {"AWS_REGION": "eu-west-1"}, REGION),  # the function's region wins, as Lambda's own variable
        (None, {"AWS_REGION": "eu-west-1"}, "eu-west-1"),
        (None, {}, "us-east-1"),
    ],
)
def test_containers_get_the_functions_region(region, environment, expected):
    with LambdaRuntime(probe(region=region, environment=environment)) as rt:
        seen = rt.invoke({})
    assert seen["env"]["AWS_REGION"] == seen["env"]["AWS_DEFAULT_REGION"] == expected
    assert seen["arn"].startswith(f"arn:aws:lambda:{expected}:")


def test_address_override_routes_the_deployed_endpoint_to_a_local_listener_before_import():
    with line_server(b"hello from the stand-in") as port:
        override = f"{ENDPOINT.upper()}:3306=127.0.0.1:{port}"
        environment = {"PROBE_HOST": ENDPOINT, "PROBE_PORT": "3306"}
        with LambdaRuntime(probe(address_overrides=[override], environment=environment)) as rt:
            assert rt.config.address_overrides == (f"{ENDPOINT}:3306=127.0.0.1:{port}",)
            seen = rt.invoke({})
            read = rt.invoke({"action": "connect", "host": ENDPOINT, "port": 3306})["read"]
    assert seen["resolved_at_import"] == ["127.0.0.1", port]
    assert read == "hello from the stand-in"


def test_tls_through_an_override_verifies_the_deployed_name(tmp_path):
    ca = LocalCa(LocalCaSettings(directory=tmp_path / "ca"))
    with line_server(b"tls ok", tls=ca.server_ssl_context((ENDPOINT,))) as port:
        overrides = (f"{ENDPOINT}:3306=127.0.0.1:{port}",)
        with LambdaRuntime(probe(address_overrides=overrides)) as rt:
            seen = rt.invoke({"action": "tls", "host": ENDPOINT, "port": 3306, "ca": str(ca.ca_bundle_path)})
            with pytest.raises(FunctionError) as error:  # without the override the name does not resolve here
                rt.invoke({"action": "tls", "host": "other." + ENDPOINT, "port": 3306, "ca": str(ca.ca_bundle_path)})
    assert seen["read"] == "tls ok" and ENDPOINT in seen["peer_names"]
    assert error.value.error_type == "gaierror"


def wait_gone(pid: int) -> bool:
    deadline = time.monotonic() + 5
    while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
        time.sleep(0.02)
    return not os.path.exists(f"/proc/{pid}") or Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"


def test_an_idle_container_past_its_age_is_replaced_with_fresh_credentials(issuer):
    credentials = RuntimeCredentials(issuer, ROLE_ARN, "sms-local-api")
    # An age well above a cold start on a loaded machine, so only the idle time retires the first container.
    with LambdaRuntime(probe(max_container_age_s=2.0), container_environment=credentials.environment) as rt:
        first = rt.invoke({})
        time.sleep(2.1)  # the container ages past its limit while idle
        second = rt.invoke({})
        stats = rt.stats()
    assert second["pid"] != first["pid"]
    assert second["env"]["AWS_ACCESS_KEY_ID"] != first["env"]["AWS_ACCESS_KEY_ID"]
    assert (stats.retired, stats.cold_starts, stats.live_containers) == (1, 2, 1)
    assert wait_gone(first["pid"])


def test_a_container_that_ages_out_during_an_invocation_finishes_it_then_retires():
    with LambdaRuntime(probe(max_container_age_s=0.5)) as rt:
        finished = rt.invoke({"action": "sleep", "seconds": 0.6})
        stats = rt.stats()
        assert (stats.retired, stats.live_containers, stats.errors) == (1, 0, 0)
        assert wait_gone(finished["pid"])
        assert rt.invoke({})["pid"] != finished["pid"]


def test_a_failed_boto3_warm_up_does_not_stop_the_runtime(monkeypatch, tmp_path):
    monkeypatch.setenv("AWS_PROFILE", "no-such-profile")  # the zygote inherits it; boto3 then refuses to start
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "missing-config"))
    with LambdaRuntime(probe(preload_modules=("boto3", WARM_BOTO3))) as rt:
        assert rt.invoke({})["env"]["PROBE_VALUE"] == "function"


# --- what the function can import ------------------------------------------------------------------------------
def test_the_function_imports_its_code_and_the_runtimes_libraries_but_not_the_project():
    """As in Lambda: the code directory (/var/task) and the interpreter's libraries, not modules/ or local/, even
    though the zygote that forked the container had loaded parts of local/ itself."""
    modules = ["probe_app", "json", "boto3", "mysql.connector", "modules", "modules.project", "local", "tests"]
    config = probe(preload_modules=("mysql.connector", "boto3", WARM_BOTO3), timeout_s=10.0)
    with LambdaRuntime(config) as rt:
        seen = rt.invoke({"action": "imports", "modules": [*modules, "local.data_plane.runtime_worker"]})
    assert seen["importable"] == {
        "probe_app": True,
        "json": True,
        "boto3": True,
        "mysql.connector": True,
        "modules": False,
        "modules.project": False,
        "local": False,
        "tests": False,
        "local.data_plane.runtime_worker": False,
    }
    assert seen["path0"] == HANDLERS and not seen["cwd_on_path"]


def test_the_request_function_runs_from_its_deployment_zip(mariadb, tmp_path):
    """The plane's code directory: the zip the stack deploys, unpacked; the handler string of the contract."""
    accounts, table = create_master(mariadb), new_table()
    migrate(mariadb, accounts, table)
    task_root = unpacked_handler(HANDLER_DIR, tmp_path / "tasks")
    assert unpacked_handler(HANDLER_DIR, tmp_path / "tasks") == task_root  # unchanged code: the same copy
    environment = {
        "DB_HOST": mariadb.host,
        "DB_PORT": str(mariadb.port),
        "DB_NAME": mariadb.database,
        "DB_USER": accounts.app_user,
        "DB_PASSWORD": accounts.app_password,
        "DB_AUTH": "password",
        "DB_TABLE": table,
    }
    config = RuntimeConfig(handler=REQUEST_HANDLER, code_dir=str(task_root), environment=environment, timeout_s=10)
    event = {"version": "2.0", "rawPath": "/", "requestContext": {"http": {"method": "GET", "path": "/"}}}
    with LambdaRuntime(config) as rt:
        first, second = rt.invoke(event), rt.invoke({**event, "rawPath": "/times"})
    assert (first["statusCode"], json.loads(first["body"])["count"]) == (200, 1)
    assert (second["statusCode"], json.loads(second["body"])["count"]) == (200, 1)
    assert sorted(path.name for path in (task_root / "handler").glob("*.py")) == sorted(
        path.name for path in HANDLER_DIR.glob("*.py")
    )
