"""Cold starts are scheduled: at most `max_concurrent_cold_starts` run at once (init + first invocation), each
waiting invocation gets a container of its own (Lambda's one request per container), and a warm invocation never
waits behind them."""

from __future__ import annotations

import http.client
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from local.data_plane.http_api import HttpApi, HttpApiConfig
from local.data_plane.runtime import LambdaRuntime, RuntimeConfig
from modules.validation import SettingsError
from tests.local.data_plane.dataplane_support import DATAPLANE_HANDLERS

pytestmark = pytest.mark.heavy

HANDLERS = DATAPLANE_HANDLERS


def _runtime(log_dir: Path, slots: int, containers: int = 10, turn_s: float = 10.0) -> LambdaRuntime:
    """A long `turn_s` by default: each cold start keeps its turn through its whole first call."""
    return LambdaRuntime(
        RuntimeConfig(
            handler="cold_start_app.lambda_handler",
            code_dir=HANDLERS,
            environment={"COLD_START_LOG_DIR": str(log_dir)},
            max_concurrency=containers,
            timeout_s=10,
            max_concurrent_cold_starts=slots,
            cold_start_turn_s=turn_s,
        )
    )


def _get(api: HttpApi, target: str) -> tuple[int, dict]:
    host, port = api.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        connection.request("GET", target)
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def _most_at_once(intervals: list[tuple[float, float]]) -> int:
    edges = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    running = most = 0
    for _, step in edges:  # an end sorts before a start at the same instant
        running += step
        most = max(most, running)
    return most


def test_no_more_cold_starts_run_at_once_than_the_slots_and_each_gets_its_own_container(tmp_path):
    with _runtime(tmp_path, slots=2) as runtime, ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: runtime.invoke({"seconds": 0.3}), range(8)))
        stats = runtime.stats()
    assert all(result["call"] == 1 for result in results)  # every waiting invocation got a new container
    assert len({result["pid"] for result in results}) == 8 and stats.cold_starts == stats.containers_created == 8
    cold_starts = [(r["imported"], r["end"]) for r in results]
    assert _most_at_once(cold_starts) <= 2, cold_starts
    assert stats.first_invocation_at <= min(r["imported"] for r in results)
    assert stats.last_cold_start_done_at >= max(r["end"] for r in results)


def _wait_busy(runtime: LambdaRuntime, count: int) -> None:
    while runtime.stats().busy_containers < count:
        threading.Event().wait(0.005)


def test_a_warm_invocation_does_not_wait_behind_a_cold_start(tmp_path):
    with _runtime(tmp_path, slots=1) as runtime, ThreadPoolExecutor(2) as pool:
        first = pool.submit(runtime.invoke, {"seconds": 0.5})  # cold: holds the only slot for 0.5 s
        _wait_busy(runtime, 1)
        second = pool.submit(runtime.invoke, {"seconds": 3.0})  # cold too: waits for the slot, then holds it 3 s
        _wait_busy(runtime, 2)
        first_result = first.result(timeout=30)
        warm = runtime.invoke({})  # the first container is idle now: taken at once, not queued behind the second
        second_result = second.result(timeout=30)
    assert warm["pid"] == first_result["pid"] and warm["call"] == 2
    assert second_result["pid"] != first_result["pid"] and second_result["call"] == 1
    assert warm["end"] < second_result["end"], "the warm invocation waited for a cold start"


def test_waiting_for_a_cold_start_turn_does_not_count_toward_the_integration_timeout(tmp_path):
    api_config = HttpApiConfig(integration_timeout_s=3.0)
    with (
        _runtime(tmp_path, slots=1) as runtime,
        HttpApi(runtime.invoke, api_config) as api,
        ThreadPoolExecutor(2) as pool,
    ):
        first = pool.submit(_get, api, "/?seconds=2")  # holds the only slot for 2 s
        _wait_busy(runtime, 1)
        second = pool.submit(_get, api, "/?seconds=2")  # waits ~2 s for its turn, then runs 2 s: 4 s in all
        _wait_busy(runtime, 2)
        statuses = [first.result(timeout=30)[0], second.result(timeout=30)[0]]
    assert statuses == [200, 200]
    with _runtime(tmp_path, slots=1) as runtime, HttpApi(runtime.invoke, api_config) as api:
        status, body = _get(api, "/?seconds=4")  # its own cold start is longer than the timeout: API Gateway's 504
    assert (status, body) == (504, {"message": "Service Unavailable"})


def test_a_first_call_that_waits_gives_its_turn_back_after_turn_s(tmp_path):
    with _runtime(tmp_path, slots=1, turn_s=0.2) as runtime, ThreadPoolExecutor(3) as pool:
        results = list(pool.map(lambda _: runtime.invoke({"seconds": 1.5}), range(3)))
    cold_starts = sorted((r["imported"], r["end"]) for r in results)
    assert len({r["pid"] for r in results}) == 3
    assert _most_at_once(cold_starts) >= 2, cold_starts  # the waits overlap: no one held the only turn 1.5 s
    assert cold_starts[1][0] < cold_starts[0][1] and cold_starts[2][0] < cold_starts[1][1]


@pytest.mark.parametrize(
    "field, value, allowed",
    [
        ("max_concurrent_cold_starts", 0, "an integer from 1 to 1000"),
        ("max_concurrent_cold_starts", 1001, "an integer from 1 to 1000"),
        ("max_concurrent_cold_starts", True, "an integer from 1 to 1000"),
        ("max_concurrent_cold_starts", 2.5, "an integer from 1 to 1000"),
        ("cold_start_turn_s", 0, "seconds from 0.01 to 10"),
        ("cold_start_turn_s", 60, "seconds from 0.01 to 10"),
    ],
)
def test_the_cold_start_settings_name_the_field_and_range(field, value, allowed):
    with pytest.raises(SettingsError) as refused:
        RuntimeConfig(handler="cold_start_app.lambda_handler", code_dir=HANDLERS, **{field: value})
    assert field in str(refused.value) and allowed in str(refused.value)
