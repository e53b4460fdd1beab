"""The local HTTP API: payload 2.0 events in, API Gateway's response mapping out."""

from __future__ import annotations

import base64
import http.client
import json

import pytest

from local.data_plane.http_api import HttpApi, HttpApiConfig, build_event, map_result, match_route
from local.data_plane.runtime import FunctionError, LambdaRuntime, RuntimeConfig, Throttled
from tests.local.data_plane.dataplane_support import RUNTIME_HANDLERS

HANDLERS = RUNTIME_HANDLERS


def request(api: HttpApi, method: str, target: str, body: bytes | None = None, headers: dict | None = None):
    host, port = api.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request(method, target, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def test_event_has_the_payload_2_0_fields():
    event = build_event(
        HttpApiConfig(),
        "$default",
        "POST",
        "/items/1",
        "a=1&a=2&b=",
        [
            ("Host", "localhost:1"),
            ("X-Multi", "x"),
            ("x-multi", "y"),
            ("Cookie", "c1=v1; c2=v2"),
            ("Content-Type", "application/json"),
        ],
        b'{"k": 1}',
        "127.0.0.1",
        "req-1",
    )
    assert event["version"] == "2.0"
    assert (event["routeKey"], event["rawPath"], event["rawQueryString"]) == ("$default", "/items/1", "a=1&a=2&b=")
    assert event["headers"]["x-multi"] == "x,y"
    assert "cookie" not in event["headers"] and event["cookies"] == ["c1=v1", "c2=v2"]
    assert event["queryStringParameters"] == {"a": "1,2", "b": ""}
    http_ctx = event["requestContext"]["http"]
    assert (http_ctx["method"], http_ctx["path"], http_ctx["sourceIp"]) == ("POST", "/items/1", "127.0.0.1")
    assert event["requestContext"]["requestId"] == "req-1"
    assert event["requestContext"]["stage"] == "$default"
    assert event["isBase64Encoded"] is False and event["body"] == '{"k": 1}'


def test_binary_body_is_base64_encoded_and_no_body_means_no_key():
    binary = build_event(
        HttpApiConfig(),
        "$default",
        "PUT",
        "/",
        "",
        [("content-type", "application/octet-stream")],
        b"\x00\xff",
        "127.0.0.1",
        "r",
    )
    assert binary["isBase64Encoded"] is True and base64.b64decode(binary["body"]) == b"\x00\xff"
    empty = build_event(HttpApiConfig(), "$default", "GET", "/", "", [], b"", "127.0.0.1", "r")
    assert "body" not in empty and "queryStringParameters" not in empty


def test_result_mapping_follows_format_2_0():
    full = map_result({"statusCode": 503, "headers": {"x-a": "1"}, "cookies": ["s=1"], "body": "{}"})
    assert (full.status, full.body) == (503, b"{}")
    assert ("x-a", "1") in full.headers and ("set-cookie", "s=1") in full.headers
    plain = map_result({"hello": "world"})
    assert (plain.status, json.loads(plain.body)) == (200, {"hello": "world"})
    assert map_result({"statusCode": 200, "body": "aGk=", "isBase64Encoded": True}).body == b"hi"
    assert map_result({"statusCode": "nope"}).status == 502


def test_route_matching():
    keys = ("GET /", "ANY /items/{proxy+}")
    assert match_route(keys, "GET", "/") == "GET /"
    assert match_route(keys, "POST", "/items/1/2") == "ANY /items/{proxy+}"
    assert match_route(keys, "POST", "/") is None
    assert match_route(("$default",), "DELETE", "/x") == "$default"


def test_error_mapping_like_api_gateway():
    def failing(event):
        raise FunctionError({"errorType": "ValueError", "errorMessage": "x"})

    def throttled(event):
        raise Throttled({"errorType": "TooManyRequestsException", "errorMessage": "busy"})

    assert HttpApi(failing).handle("GET", "/", [], b"", "127.0.0.1").status == 502
    assert HttpApi(throttled).handle("GET", "/", [], b"", "127.0.0.1").status == 500
    routed = HttpApi(lambda e: {}, HttpApiConfig(route_keys=("GET /",)))
    assert routed.handle("POST", "/", [], b"", "127.0.0.1").status == 404


def test_end_to_end_through_a_real_socket_and_runtime():
    runtime_config = RuntimeConfig(
        handler="sample_app.lambda_handler", code_dir=HANDLERS, max_concurrency=2, timeout_s=2
    )
    with LambdaRuntime(runtime_config) as runtime, HttpApi(runtime.invoke) as api:
        status, headers, data = request(api, "GET", "/hello?x=1", headers={"X-Test": "yes"})
        assert status == 200 and headers["content-type"] == "application/json"
        assert "apigw-requestid" in headers
        event = json.loads(data)["event"]
        assert (event["rawPath"], event["queryStringParameters"], event["headers"]["x-test"]) == (
            "/hello",
            {"x": "1"},
            "yes",
        )
        status, _, data = request(api, "GET", "/?action=raise")
        assert (status, json.loads(data)) == (502, {"message": "Internal Server Error"})
        assert api.status_counts == {200: 1, 502: 1}


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("port", 70000, "port=70000: must be in 0..65535"),
        ("route_keys", ("GET",), "route_keys entry 'GET'"),
        ("max_body_bytes", 0, "max_body_bytes=0"),
    ],
)
def test_config_errors_name_the_field(field, value, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        HttpApiConfig(**{field: value})
