"""The local HTTP API's integration side: timeouts, throttling and the bounded invocation pool."""

from __future__ import annotations

import http.client
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from local.data_plane.http_api import HttpApi, HttpApiConfig, integration_timeout_for
from local.data_plane.runtime import LambdaRuntime, RuntimeConfig
from tests.local.data_plane.dataplane_support import RUNTIME_HANDLERS
from tests.sync_support import wait_until

HANDLERS = RUNTIME_HANDLERS


def get(api: HttpApi, target: str = "/") -> tuple[int, dict]:
    host, port = api.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=20)
    try:
        conn.request("GET", target)
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"null")
    finally:
        conn.close()


def test_integration_timeout_is_504_and_the_function_keeps_its_slot():
    release = threading.Event()
    calls = []

    def slow(event):
        calls.append(event)
        release.wait(10)
        return {"ok": True}

    with HttpApi(slow, HttpApiConfig(integration_timeout_s=0.3, max_invocations=1)) as api:
        assert get(api) == (504, {"message": "Service Unavailable"})
        # Like Lambda behind API Gateway, the function is still running: its slot is taken until it returns.
        assert get(api) == (500, {"message": "Internal Server Error"})
        assert api.in_flight == 1
        release.set()
        deadline = time.monotonic() + 5
        while api.in_flight and time.monotonic() < deadline:
            time.sleep(0.02)
        assert get(api) == (200, {"ok": True})
    assert len(calls) == 2
    assert api.status_counts == {504: 1, 500: 1, 200: 1}


def test_invocations_are_bounded_by_the_container_limit():
    gate = threading.Event()
    running = []

    def held(event):
        running.append(event)
        gate.wait(10)
        return {"ok": True}

    with HttpApi(held, HttpApiConfig(max_invocations=3)) as api, ThreadPoolExecutor(6) as pool:
        futures = [pool.submit(get, api) for _ in range(6)]
        # three invocations held, the three others already answered
        assert wait_until(lambda: len(running) == 3 and sum(f.done() for f in futures) == 3, timeout=10)
        gate.set()
        statuses = sorted(f.result()[0] for f in futures)
    assert statuses == [200, 200, 200, 500, 500, 500]
    assert len(running) == 3 and api.peak_in_flight == 3


def test_defaults_come_from_the_runtime():
    assert integration_timeout_for(3.0) == 4.0 and integration_timeout_for(60.0) == 30.0
    config = RuntimeConfig(handler="sample_app.lambda_handler", code_dir=HANDLERS, max_concurrency=7, timeout_s=5)
    with LambdaRuntime(config) as runtime:
        api = HttpApi(runtime.invoke)
        try:
            assert (api.integration_timeout_s, api.max_invocations) == (6.0, 7)
        finally:
            api.close()
    plain = HttpApi(lambda e: {})
    try:
        assert (plain.integration_timeout_s, plain.max_invocations) == (30.0, 100)
    finally:
        plain.close()


def test_function_timeout_is_lambdas_502_before_the_integration_gives_up():
    config = RuntimeConfig(handler="sample_app.lambda_handler", code_dir=HANDLERS, max_concurrency=2, timeout_s=0.3)
    with LambdaRuntime(config) as runtime, HttpApi(runtime.invoke) as api:
        # The handler sleeps 1 s (its default): past the 0.3 s function timeout, well inside the 1.3 s integration.
        assert get(api, "/?action=sleep") == (502, {"message": "Internal Server Error"})
        assert runtime.stats().timeouts == 1
        assert get(api)[0] == 200  # a new container served it


def test_a_crashed_container_is_502_and_the_next_request_is_served():
    config = RuntimeConfig(handler="sample_app.lambda_handler", code_dir=HANDLERS, max_concurrency=2, timeout_s=2)
    with LambdaRuntime(config) as runtime, HttpApi(runtime.invoke) as api:
        assert get(api, "/?action=exit") == (502, {"message": "Internal Server Error"})
        assert get(api)[0] == 200


def test_a_malformed_result_is_502():
    with HttpApi(lambda e: {"statusCode": 200, "headers": {"x-bad": "a\r\nb"}, "body": ""}) as api:
        assert get(api) == (502, {"message": "Internal Server Error"})
    with HttpApi(lambda e: {"statusCode": 200, "body": "%%%", "isBase64Encoded": True}) as api:
        assert get(api) == (502, {"message": "Internal Server Error"})


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("integration_timeout_s", 31, "integration_timeout_s=31: must be in (0, 30.0]"),
        ("integration_timeout_s", 0, "integration_timeout_s=0: must be in (0, 30.0]"),
        ("max_invocations", 0, "max_invocations=0: must be in 1..1000"),
        ("max_header_bytes", 20000, "max_header_bytes=20000: must be in 1024..10240"),
        ("header_timeout_s", 0, "header_timeout_s=0: must be in (0, 300.0]"),
        ("body_timeout_s", 301, "body_timeout_s=301: must be in (0, 300.0]"),
        ("max_body_bytes", 10 * 1024 * 1024 + 1, "max_body_bytes=10485761: must be in 1..10485760"),
    ],
)
def test_new_settings_name_field_value_and_range(field, value, message):
    with pytest.raises(ValueError) as error:
        HttpApiConfig(**{field: value})
    assert message in str(error.value)
