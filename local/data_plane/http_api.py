"""A local stand-in for an API Gateway HTTP API with a Lambda proxy integration (payload format 2.0).

It turns each HTTP request into the 2.0 event the real service sends, hands it to an `invoke`
callable (normally `LambdaRuntime.invoke`) and maps the result back the way API Gateway does:
a dict with `statusCode` is used as is, any other JSON value becomes a 200 `application/json`
body, a function error is a 502 and a Lambda throttle a 500, both `{"message": ...}`.

A threaded stdlib server is enough here: per-request cost is far below the handler's, and each
keep-alive client gets its own thread, which is what lets 100 users reach 100 containers at once.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from dataclasses import dataclass
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Mapping
from urllib.parse import parse_qsl

from local.data_plane.runtime import InvocationError, Throttled

Invoke = Callable[[Mapping[str, Any]], Any]

# Content types that API Gateway passes through as text (others are base64-encoded in the event).
_TEXT_TYPES = ("text/", "application/json", "application/xml", "application/javascript", "application/x-www-form-urlencoded")
_ACCOUNT_ID = "000000000000"


@dataclass(frozen=True)
class HttpApiConfig:
    """Where to listen and which routes exist; `route_keys` use API Gateway's syntax ("$default", "GET /", "ANY /x")."""

    host: str = "127.0.0.1"
    port: int = 0
    route_keys: tuple[str, ...] = ("$default",)
    stage: str = "$default"
    api_id: str = "local"
    max_body_bytes: int = 10 * 1024 * 1024  # HTTP API's payload limit

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port={self.port}: must be in 0..65535 (0 picks a free port)")
        if not self.route_keys:
            raise ValueError("route_keys=(): need at least one route")
        for key in self.route_keys:
            if key != "$default" and len(key.split(" ")) != 2:
                raise ValueError(f"route_keys entry {key!r}: expected '$default' or 'METHOD /path'")
        if not 0 < self.max_body_bytes <= 10 * 1024 * 1024:
            raise ValueError(f"max_body_bytes={self.max_body_bytes}: must be in 1..10485760")


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


def _message(status: int, message: str) -> HttpResponse:
    return HttpResponse(status, [("content-type", "application/json")], json.dumps({"message": message}).encode())


def map_result(result: Any) -> HttpResponse:
    """Map a handler result to the HTTP response as API Gateway's 2.0 format does."""
    if isinstance(result, dict) and "statusCode" in result:
        try:
            status = int(result["statusCode"])
        except (TypeError, ValueError):
            return _message(502, "Internal Server Error")
        headers = [(str(k), str(v)) for k, v in (result.get("headers") or {}).items()]
        headers += [("set-cookie", str(c)) for c in result.get("cookies") or []]
        body = result.get("body")
        if body is None:
            data = b""
        elif result.get("isBase64Encoded"):
            data = base64.b64decode(body)
        else:
            data = (body if isinstance(body, str) else json.dumps(body)).encode()
        return HttpResponse(status, headers, data)
    return HttpResponse(200, [("content-type", "application/json")], json.dumps(result).encode())


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # the default backlog of 5 drops SYNs when 100 users connect at once


class HttpApi:
    """The endpoint; `start()` serves in a background thread, `url` is the base URL. Context manager."""

    def __init__(self, invoke: Invoke, config: HttpApiConfig | None = None):
        self.config = config or HttpApiConfig()
        self._invoke = invoke
        self._server = _Server((self.config.host, self.config.port), self._handler_class())
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.status_counts: dict[int, int] = {}
        self.open_connections = 0
        self.peak_connections = 0

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def handle(self, method: str, target: str, headers: list[tuple[str, str]], body: bytes, source_ip: str) -> HttpResponse:
        """Route, build the event, invoke, map. Separate from the socket code so it can be tested directly."""
        raw_path, _, raw_query = target.partition("?")
        request_id = uuid.uuid4().hex[:16]
        route_key = match_route(self.config.route_keys, method, raw_path)
        if route_key is None:
            response = _message(404, "Not Found")
        elif len(body) > self.config.max_body_bytes:
            response = _message(413, "Request Entity Too Large")
        else:
            event = build_event(self.config, route_key, method, raw_path, raw_query, headers, body, source_ip, request_id)
            try:
                response = map_result(self._invoke(event))
            except Throttled:
                response = _message(500, "Internal Server Error")
            except InvocationError:
                response = _message(502, "Internal Server Error")
        response.headers.append(("apigw-requestid", request_id))
        with self._lock:
            self.status_counts[response.status] = self.status_counts.get(response.status, 0) + 1
        return response

    def _count_connection(self, delta: int) -> None:
        with self._lock:
            self.open_connections += delta
            self.peak_connections = max(self.peak_connections, self.open_connections)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as the real endpoint offers
            # Headers and body go out in separate writes; with Nagle on, each response would wait
            # for the client's delayed ACK (~40 ms on Linux).
            disable_nagle_algorithm = True

            def setup(self) -> None:
                super().setup()
                api._count_connection(+1)

            def finish(self) -> None:
                try:
                    super().finish()
                finally:
                    api._count_connection(-1)

            def _serve(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                response = api.handle(self.command, self.path, list(self.headers.items()), body, self.client_address[0])
                self.send_response_only(response.status)
                self.send_header("date", formatdate(usegmt=True))
                self.send_header("content-length", str(len(response.body)))
                for name, value in response.headers:
                    if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                        self.send_header(name, value)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(response.body)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_HEAD = _serve

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
                pass  # access logs would cost more than the requests under load

        return Handler

    def start(self) -> "HttpApi":
        self._thread = threading.Thread(target=self._server.serve_forever, name="http-api", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(5)
        self._server.server_close()

    def __enter__(self) -> "HttpApi":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()
