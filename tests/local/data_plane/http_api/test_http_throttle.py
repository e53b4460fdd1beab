"""Throttling at the edge, locally: API Gateway's token bucket in front of the real runtime."""

from __future__ import annotations

import http.client
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from local.data_plane.http_api import HttpApi, HttpApiConfig
from local.data_plane.http_api.throttle import TokenBucket
from local.data_plane.runtime import LambdaRuntime, RuntimeConfig
from tests.local.data_plane.dataplane_support import RUNTIME_HANDLERS

HANDLERS = RUNTIME_HANDLERS


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def get(api: HttpApi, connection: http.client.HTTPConnection) -> tuple[int, bytes]:
    connection.request("GET", "/")
    response = connection.getresponse()
    return response.status, response.read()


def test_a_burst_above_the_limit_gets_429_and_never_reaches_the_function():
    runtime_config = RuntimeConfig(handler="sample_app.lambda_handler", code_dir=HANDLERS, max_concurrency=2)
    throttled = HttpApiConfig(throttling_rate_limit=0.01, throttling_burst_limit=3)
    with LambdaRuntime(runtime_config) as runtime, HttpApi(runtime.invoke, throttled) as api:
        host, port = api.url.removeprefix("http://").split(":")
        connection = http.client.HTTPConnection(host, int(port), timeout=10)
        try:
            replies = [get(api, connection) for _ in range(10)]
        finally:
            connection.close()
        invocations = runtime.stats().invocations
    assert [status for status, _ in replies] == [200] * 3 + [429] * 7
    assert {body for status, body in replies if status == 429} == {b'{"message":"Too Many Requests"}'}
    assert invocations == 3  # the seven throttled requests never reached a container
    assert api.status_counts == {200: 3, 429: 7} and api.throttle is not None and api.throttle.throttled == 7


def test_the_bucket_refills_at_the_rate_up_to_the_burst():
    clock = FakeClock()
    bucket = TokenBucket(rate_per_s=2.0, burst=4, clock=clock)
    assert [bucket.take() for _ in range(5)] == [True] * 4 + [False]
    clock.now += 1.0  # two tokens back
    assert [bucket.take() for _ in range(3)] == [True, True, False]
    clock.now += 60.0  # never more than the burst
    assert sum(bucket.take() for _ in range(10)) == 4


@given(
    rate=st.floats(min_value=0, max_value=1000, allow_nan=False),
    burst=st.integers(min_value=0, max_value=200),
    gaps=st.lists(st.floats(min_value=0, max_value=2, allow_nan=False), max_size=300),
)
def test_admitted_requests_never_exceed_burst_plus_rate_times_elapsed(rate, burst, gaps):
    clock = FakeClock()
    bucket = TokenBucket(rate_per_s=rate, burst=burst, clock=clock)
    admitted, start = 0, clock.now
    for gap in gaps:
        clock.now += gap
        admitted += bucket.take()
        assert admitted <= burst + rate * (clock.now - start) + 1e-6
    assert bucket.throttled == len(gaps) - admitted


def test_a_zero_burst_refuses_everything():
    api = HttpApi(lambda event: {"statusCode": 200}, HttpApiConfig(throttling_rate_limit=0, throttling_burst_limit=0))
    response = api.handle("GET", "/", [], b"", "127.0.0.1")
    assert (response.status, json.loads(response.body)) == (429, {"message": "Too Many Requests"})


@pytest.mark.parametrize(
    "knobs, message",
    [
        ({"throttling_rate_limit": 5.0}, "set both (a token bucket) or neither"),
        ({"throttling_burst_limit": 5}, "set both (a token bucket) or neither"),
    ],
)
def test_throttling_settings_come_in_pairs(knobs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        HttpApiConfig(**knobs)


@pytest.mark.parametrize(
    "rate, burst, message",
    [
        (-1, 5, "throttling_rate_limit=-1: allowed a number >= 0"),
        (1.0, -2, "throttling_burst_limit=-2: allowed an integer >= 0"),
        (1.0, 2.5, "throttling_burst_limit=2.5: allowed an integer >= 0"),
    ],
)
def test_bad_bucket_settings_name_the_field(rate, burst, message):
    with pytest.raises(ValueError, match=message):
        TokenBucket(rate, burst)
    with pytest.raises(ValueError, match=message):
        HttpApiConfig(throttling_rate_limit=rate, throttling_burst_limit=burst)
