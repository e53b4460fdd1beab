"""Payload format 2.0: the event API Gateway sends to Lambda, and how it maps the function's result back.

Pure functions, no sockets: the HTTP server (`server.py`) calls them once a request is complete and valid.
Error bodies are API Gateway's `{"message": ...}` documents.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from local.data_plane.http_api.config import HttpApiConfig

# Content types that API Gateway passes through as text (others are base64-encoded in the event).
_TEXT_TYPES = (
    "text/",
    "application/json",
    "application/xml",
    "application/javascript",
    "application/x-www-form-urlencoded",
)
_ACCOUNT_ID = "000000000000"
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # an HTTP header name (RFC 9110 token)
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # never allowed in a header value


def match_route(route_keys: tuple[str, ...], method: str, path: str) -> str | None:
    """Pick the route like API Gateway: exact method+path, then ANY+path, then greedy `{proxy+}`, then $default."""
    candidates = [f"{method} {path}", f"ANY {path}"]
    for key in candidates:
        if key in route_keys:
            return key
    for key in route_keys:
        if key == "$default":
            continue
        key_method, key_path = key.split(" ", 1)
        if key_method not in (method, "ANY") or not key_path.endswith("{proxy+}"):
            continue
        prefix = key_path[: -len("{proxy+}")]
        if path.startswith(prefix) and len(path) > len(prefix):
            return key
    return "$default" if "$default" in route_keys else None


def build_event(
    config: HttpApiConfig,
    route_key: str,
    method: str,
    raw_path: str,
    raw_query: str,
    headers: list[tuple[str, str]],
    body: bytes,
    source_ip: str,
    request_id: str,
) -> dict[str, Any]:
    """The payload format 2.0 event for one request."""
    merged: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in headers:
        lower = name.lower()
        if lower == "cookie":
            cookies.extend(part.strip() for part in value.split(";") if part.strip())
            continue
        merged[lower] = f"{merged[lower]},{value}" if lower in merged else value
    query: dict[str, str] = {}
    for name, value in parse_qsl(raw_query, keep_blank_values=True):
        query[name] = f"{query[name]},{value}" if name in query else value
    now = time.time()
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": raw_path,
        "rawQueryString": raw_query,
        "headers": merged,
        "requestContext": {
            "accountId": _ACCOUNT_ID,
            "apiId": config.api_id,
            "domainName": merged.get("host", "localhost"),
            "domainPrefix": merged.get("host", "localhost").split(".")[0],
            "http": {
                "method": method,
                "path": raw_path,
                "protocol": "HTTP/1.1",
                "sourceIp": source_ip,
                "userAgent": merged.get("user-agent", ""),
            },
            "requestId": request_id,
            "routeKey": route_key,
            "stage": config.stage,
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "timeEpoch": int(now * 1000),
        },
        "isBase64Encoded": False,
    }
    if cookies:
        event["cookies"] = cookies
    if query:
        event["queryStringParameters"] = query
    if body:
        content_type = merged.get("content-type", "")
        if content_type.startswith(_TEXT_TYPES):
            event["body"] = body.decode("utf-8", errors="replace")
        else:
            event["body"] = base64.b64encode(body).decode("ascii")
            event["isBase64Encoded"] = True
    return event


@dataclass(frozen=True)
class HttpResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


def message_response(status: int, message: str) -> HttpResponse:
    """An API Gateway error document, byte for byte as API Gateway writes it (compact JSON)."""
    body = json.dumps({"message": message}, separators=(",", ":")).encode()
    return HttpResponse(status, [("content-type", "application/json")], body)


def map_result(result: Any) -> HttpResponse:
    """Map a handler result to the HTTP response as API Gateway's 2.0 format does; a malformed one is a 502."""
    if isinstance(result, dict) and "statusCode" in result:
        try:
            return _proxy_response(result)
        except (TypeError, ValueError, AttributeError, binascii.Error, UnicodeError):
            return message_response(502, "Internal Server Error")
    return HttpResponse(200, [("content-type", "application/json")], json.dumps(result).encode())


def _proxy_response(result: dict[str, Any]) -> HttpResponse:
    status = int(result["statusCode"])
    if not 100 <= status <= 599:
        raise ValueError(f"statusCode {status}")
    headers = [(str(k), str(v)) for k, v in (result.get("headers") or {}).items()]
    headers += [("set-cookie", str(c)) for c in result.get("cookies") or []]
    for name, value in headers:
        if not _TOKEN.fullmatch(name) or _CONTROL.search(value):
            raise ValueError(f"header {name!r}")
        (name + value).encode("latin-1")
    body = result.get("body")
    if body is None:
        data = b""
    elif result.get("isBase64Encoded"):
        data = base64.b64decode(body, validate=True)
    else:
        data = (body if isinstance(body, str) else json.dumps(body)).encode()
    return HttpResponse(status, headers, data)
