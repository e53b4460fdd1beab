"""The Lambda-like runtime: warm reuse, on-demand containers up to the limit, LIFO, errors, timeouts."""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from local.data_plane.runtime import (
    ContainerCrashed,
    FunctionError,
    FunctionTimeout,
    LambdaRuntime,
    RuntimeConfig,
    Throttled,
)

HANDLERS = str(Path(__file__).parent / "runtime_handlers")


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
    barrier_event = {"action": "sleep", "seconds": 0.6}
    with ThreadPoolExecutor(5) as pool:
        futures = [pool.submit(runtime.invoke, barrier_event) for _ in range(4)]
        time.sleep(0.3)  # all four are running now
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
    ],
)
def test_config_errors_name_field_value_and_range(field, value, message):
    with pytest.raises(ValueError) as error:
        config(**{field: value})
    assert message in str(error.value)
