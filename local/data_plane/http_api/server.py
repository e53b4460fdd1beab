"""The local endpoint: hypercorn serving `HttpApiApp` on its own event loop, invocations in a bounded pool.

Why hypercorn (0.18, HTTP/1.1 via h11): it is the one maintained server here with a timeout that covers a
connection *before* its headers are complete. Its `keep_alive_timeout` idle timer starts when the connection
opens and stops only when h11 has the whole request head, so a slowloris client is closed after
`header_timeout_s` (uvicorn's keep-alive timer only starts after a first response). h11 rejects malformed
framing itself (bad/negative `Content-Length`, bad chunks, end-of-stream mid-message) and `h11_max_incomplete_size`
bounds the request head. One asyncio task per connection replaces the old thread per connection, so slow
clients cost a socket, not a thread. (aiohttp is not in the venv.) The loop is uvloop's: it takes 11-16 % less
CPU per request than the standard asyncio loop, and on a 2-core machine the load experiment's function and
database share that CPU with this endpoint.

Responses for requests that never reach the function:
- malformed request, incomplete request, bad framing: 400 from h11 (connection closed);
- a request line with an HTTP version other than 1.x (e.g. ``HTTP/9.9``): 400 ``{"message":"Bad Request"}``
  (connection closed), as for any request line API Gateway cannot parse (`app.SUPPORTED_HTTP_VERSIONS`);
- no route for the method and path: 404 ``{"message":"Not Found"}``;
- the stage's token bucket is empty (`throttle`): 429 ``{"message":"Too Many Requests"}``;
- request line + header values over `max_header_bytes` (API Gateway: 10240 bytes): 431
  `{"message":"Request Header Fields Too Large"}`; a head still growing past twice that is cut by h11 (431 too);
- body over `max_body_bytes` (API Gateway: 10 MB): 413 `{"message":"Request Entity Too Large"}`, decided from
  `Content-Length` before reading, or while counting a chunked body;
- body not complete within `body_timeout_s`: 408; headers not complete within `header_timeout_s`: closed.

Responses from the integration, as API Gateway maps a Lambda proxy integration
(https://docs.aws.amazon.com/lambda/latest/dg/services-apigateway-errors.html: "If the Lambda API rejects the
invocation request, API Gateway returns a 500 error code. If the function runs but returns an error, or returns
a response in the wrong format, API Gateway returns a 502"):
- function error, crash, function timeout, malformed result: 502 `{"message":"Internal Server Error"}`;
- throttled (every container busy; Lambda's 429 TooManyRequestsException is rejected by the Lambda API): 500
  `{"message":"Internal Server Error"}`;
- no result within the integration timeout (at most 30 s, API Gateway's quota): 504
  `{"message":"Service Unavailable"}` (https://repost.aws/knowledge-center/api-gateway-504-errors: "If an
  integration request takes longer than your ... maximum integration timeout ..., API Gateway returns an HTTP
  504"); the function keeps running, as it does on AWS, and keeps its slot in the pool until it returns. The
  timeout counts from the moment the runtime starts the invocation: a cold start waiting for its turn on this
  machine's cores (`RuntimeConfig.max_concurrent_cold_starts`) is a local wait that AWS does not have.
The default integration timeout is the function timeout + 1 s (capped at 30 s), so a function timeout is 502.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import random
import socket
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import uvloop
from hypercorn.asyncio.run import worker_serve
from hypercorn.config import Config as HypercornConfig
from hypercorn.config import Sockets
from hypercorn.utils import wrap_app

from local.data_plane.http_api.app import HttpApiApp, RequestReader
from local.data_plane.http_api.config import (
    DEFAULT_INVOCATIONS,
    MAX_INTEGRATION_TIMEOUT_S,
    HttpApiConfig,
    integration_timeout_for,
)
from local.data_plane.http_api.events import HttpResponse, build_event, map_result, match_route, message_response
from local.data_plane.http_api.throttle import TokenBucket
from local.data_plane.runtime import InvocationError, Throttled

Invoke = Callable[[Mapping[str, Any]], Any]
log = logging.getLogger("local.data_plane.http_api")

_BACKLOG = 1024  # 100 users connecting at once must not see dropped SYNs
_STOP_GRACE_S = 2.0


def _request_id() -> str:
    """Unique enough to correlate logs; not a secret, so no system entropy call per request."""
    return f"{random.getrandbits(64):016x}"


def _runtime_limits(invoke: Invoke) -> tuple[float | None, int | None]:
    """(function timeout, container limit) when `invoke` is a LambdaRuntime's bound method, else (None, None)."""
    runtime_config = getattr(getattr(invoke, "__self__", None), "config", None)
    timeout = getattr(runtime_config, "timeout_s", None)
    concurrency = getattr(runtime_config, "max_concurrency", None)
    return (
        float(timeout) if isinstance(timeout, (int, float)) else None,
        concurrency if isinstance(concurrency, int) else None,
    )


def _listening_socket(host: str, port: int) -> socket.socket:
    """Bound and listening now, so `url` is valid (and connects queue) before the server loop runs.

    Created with an explicit IPPROTO_TCP: asyncio only turns Nagle off on accepted sockets whose protocol
    says TCP, and with Nagle on each response's body waits for the client's delayed ACK (~40 ms on Linux).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host, port))
        sock.listen(_BACKLOG)
    except OSError:
        sock.close()
        raise
    return sock


class HttpApi:
    """The endpoint; `start()` serves in a background thread, `url` is the base URL. Context manager."""

    def __init__(self, invoke: Invoke, config: HttpApiConfig | None = None):
        self.config = config or HttpApiConfig()
        self._invoke = invoke
        function_timeout, containers = _runtime_limits(invoke)
        self.integration_timeout_s = self.config.integration_timeout_s or (
            integration_timeout_for(function_timeout) if function_timeout else MAX_INTEGRATION_TIMEOUT_S
        )
        self.max_invocations = self.config.max_invocations or containers or DEFAULT_INVOCATIONS
        self._reports_start = "on_start" in inspect.signature(invoke).parameters
        self.throttle = (
            TokenBucket(self.config.throttling_rate_limit, self.config.throttling_burst_limit)  # type: ignore[arg-type]
            if self.config.throttled
            else None
        )
        self._executor = ThreadPoolExecutor(self.max_invocations, thread_name_prefix="http-api-invoke")
        self._socket = _listening_socket(self.config.host, self.config.port)
        self._lock = threading.Lock()
        self.status_counts: dict[int, int] = {}
        self.in_flight = 0  # invocations running, including ones whose client already got a 504
        self.peak_in_flight = 0
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self._failure: BaseException | None = None
        self.app = HttpApiApp(
            RequestReader(self.config.max_body_bytes, self.config.body_timeout_s, self.config.max_header_bytes),
            self._serve_one,
        )

    @property
    def url(self) -> str:
        host, port = self._socket.getsockname()[:2]
        return f"http://{host}:{port}"

    # --- request handling ------------------------------------------------------------------
    def handle(
        self, method: str, target: str, headers: list[tuple[str, str]], body: bytes, source_ip: str
    ) -> HttpResponse:
        """Route, build the event, invoke, map, count; in the caller's thread (tests call it directly)."""
        raw_path, _, raw_query = target.partition("?")
        request_id = _request_id()
        route = self._admit(method, raw_path)
        if isinstance(route, HttpResponse):
            return self._finish(route, request_id)
        response = self._dispatch(request_id, route, method, raw_path, raw_query, headers, body, source_ip)
        return self._finish(response, request_id)

    def _admit(self, method: str, raw_path: str) -> str | HttpResponse:
        """The route key, or API Gateway's answer when there is no route (404) or the stage throttles (429)."""
        route_key = match_route(self.config.route_keys, method, raw_path)
        if route_key is None:
            return message_response(404, "Not Found")
        if self.throttle is not None and not self.throttle.take():
            return message_response(429, "Too Many Requests")
        return route_key

    def _dispatch(
        self,
        request_id: str,
        route_key: str,
        method: str,
        raw_path: str,
        raw_query: str,
        headers: list[tuple[str, str]],
        body: bytes,
        source_ip: str,
        on_start: Callable[[], None] | None = None,
    ) -> HttpResponse:
        if len(body) > self.config.max_body_bytes:
            return message_response(413, "Request Entity Too Large")
        event = build_event(self.config, route_key, method, raw_path, raw_query, headers, body, source_ip, request_id)
        try:
            if self._reports_start:
                return map_result(self._invoke(event, on_start=on_start))  # type: ignore[call-arg]
            if on_start is not None:
                on_start()
            return map_result(self._invoke(event))
        except Throttled:
            return message_response(500, "Internal Server Error")
        except InvocationError:
            return message_response(502, "Internal Server Error")
        except Exception as exc:  # noqa: BLE001 - e.g. the runtime closed under us: the integration failed
            log.warning("request %s: integration failed: %r", request_id, exc)
            return message_response(500, "Internal Server Error")

    def _finish(self, response: HttpResponse, request_id: str) -> HttpResponse:
        response.headers.append(("apigw-requestid", request_id))
        with self._lock:
            self.status_counts[response.status] = self.status_counts.get(response.status, 0) + 1
        return response

    async def _serve_one(
        self, method: str, raw_path: str, raw_query: str, headers: list[tuple[str, str]], body: bytes, source_ip: str
    ) -> HttpResponse:
        """A complete request from the server: invoke in the bounded pool, give up at the integration timeout."""
        request_id = _request_id()
        route = self._admit(method, raw_path)
        if isinstance(route, HttpResponse):
            return self._finish(route, request_id)
        with self._lock:
            if self.in_flight >= self.max_invocations:
                throttled = True
            else:
                throttled = False
                self.in_flight += 1
                self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        if throttled:  # every container is busy (some perhaps past their 504): Lambda would throttle
            return self._finish(message_response(500, "Internal Server Error"), request_id)
        loop = asyncio.get_running_loop()
        started = asyncio.Event()
        future = loop.run_in_executor(
            self._executor,
            self._dispatch,
            *(request_id, route, method, raw_path, raw_query, headers, body, source_ip),
            lambda: loop.call_soon_threadsafe(started.set),
        )
        future.add_done_callback(self._invocation_done)
        waiting = loop.create_task(started.wait())
        await asyncio.wait((future, waiting), return_when=asyncio.FIRST_COMPLETED)  # a local wait for a cold start
        waiting.cancel()
        try:
            async with asyncio.timeout(self.integration_timeout_s):
                response = await asyncio.shield(future)
        except TimeoutError:
            response = message_response(504, "Service Unavailable")
        return self._finish(response, request_id)

    def _invocation_done(self, _future: object) -> None:
        with self._lock:
            self.in_flight -= 1

    # --- server lifecycle ------------------------------------------------------------------
    def _hypercorn_config(self) -> HypercornConfig:
        config = HypercornConfig()
        config.keep_alive_timeout = self.config.header_timeout_s
        config.read_timeout = None  # a read timeout would also cut a client waiting for a slow function
        # h11's bound on a request head still arriving (names and CRLFs included, so with room for them);
        # the app then applies API Gateway's exact quota to every complete head.
        config.h11_max_incomplete_size = 2 * self.config.max_header_bytes
        config.backlog = _BACKLOG
        config.graceful_timeout = _STOP_GRACE_S
        config.include_server_header = False
        config.accesslog = None  # access logs would cost more than the requests under load
        config.errorlog = log
        return config

    def _run(self) -> None:
        try:
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                runner.run(self._serve())
        except BaseException as exc:  # noqa: BLE001 - reported to start() or logged; the thread must end quietly
            self._failure = exc
            log.error("the HTTP API stopped: %r", exc)
        finally:
            self._started.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._started.set()
        sockets = Sockets(secure_sockets=[], insecure_sockets=[self._socket], quic_sockets=[])
        await worker_serve(
            wrap_app(self.app, 0, "asgi"), self._hypercorn_config(), sockets=sockets, shutdown_trigger=self._stop.wait
        )

    def start(self) -> HttpApi:
        self._thread = threading.Thread(target=self._run, name="http-api", daemon=True)
        self._thread.start()
        self._started.wait(10)
        if self._failure is not None:
            raise RuntimeError(f"the HTTP API did not start: {self._failure!r}")
        return self

    def close(self) -> None:
        if self._thread is not None and self._loop is not None and self._stop is not None:
            try:
                self._loop.call_soon_threadsafe(self._stop.set)
            except RuntimeError:
                pass  # the loop already ended
            self._thread.join(_STOP_GRACE_S + 3)
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._socket.close()

    def __enter__(self) -> HttpApi:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()
