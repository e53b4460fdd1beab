"""The ASGI application: reads one complete, valid request within the limits, then hands it to `dispatch`.

The server library (h11 under hypercorn) has already rejected malformed framing before this runs: a bad or
negative `Content-Length`, bad chunking, a request head that keeps growing past its buffer bound, or
end-of-stream inside the headers never reach here. What is left to enforce is API Gateway's own contract:
- a request line plus header values over the header quota is refused (431), whichever way it arrived;
- a declared body over the payload limit is refused from `Content-Length` alone (413), before any of it is read;
- a chunked body is counted as it arrives and refused (413) the moment it passes the limit;
- a body that does not arrive in time is refused (408), and one cut off by the client (disconnect) is dropped;
in all three cases the function is never invoked.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from local.data_plane.http_api.events import HttpResponse, message_response

log = logging.getLogger("local.data_plane.http_api")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
Dispatch = Callable[[str, str, str, list[tuple[str, str]], bytes, str], Awaitable[HttpResponse]]

_DRAIN_LIMIT_S = 5.0
SUPPORTED_HTTP_VERSIONS = ("1.0", "1.1", "2")
"""What API Gateway's endpoints speak. A higher 1.x minor version is read as 1.1 (RFC 9112 section 2.3); any other
version in a request line (``HTTP/9.9``, ``HTTP/0.5``) is refused like an unparsable request line: 400, closed."""


class RequestReader:
    """Turns ASGI receive events into a bounded body, or the API Gateway error that refuses the request."""

    def __init__(self, max_body_bytes: int, body_timeout_s: float, max_header_bytes: int):
        self.max_body_bytes = max_body_bytes
        self.body_timeout_s = body_timeout_s
        self.max_header_bytes = max_header_bytes

    def head_too_large(self, scope: Scope) -> bool:
        """API Gateway's quota counts the request line plus the header values."""
        line = len(scope["method"]) + len(scope["raw_path"]) + len(scope["query_string"]) + len(" ? HTTP/1.1")
        return line + sum(len(value) for _name, value in scope["headers"]) > self.max_header_bytes

    def declared_too_large(self, headers: list[tuple[str, str]]) -> bool:
        for name, value in headers:
            if name == "content-length":
                try:
                    return int(value) > self.max_body_bytes
                except ValueError:  # h11 has validated the framing; anything else is its to refuse
                    return False
        return False

    async def read_body(self, receive: Receive) -> bytes | HttpResponse | None:
        """The body, an error response (413/408), or None when the client went away mid-request."""
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self.body_timeout_s):
                while True:
                    message = await receive()
                    if message["type"] != "http.request":
                        return None  # http.disconnect: incomplete request, never invoke
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    if size > self.max_body_bytes:
                        return message_response(413, "Request Entity Too Large")
                    chunks.append(chunk)
                    if not message.get("more_body", False):
                        return b"".join(chunks)
        except TimeoutError:
            return message_response(408, "Request Timeout")


class HttpApiApp:
    """ASGI 3 callable; everything after the body is read is `dispatch`'s job (route, invoke, map)."""

    def __init__(self, reader: RequestReader, dispatch: Dispatch):
        self._reader = reader
        self._dispatch = dispatch
        self._drains: set[asyncio.Task[None]] = set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return  # no WebSockets on an HTTP API: the server closes the connection
        version = scope.get("http_version", "1.1")
        if version not in SUPPORTED_HTTP_VERSIONS and not version.startswith("1."):
            await self._refuse(message_response(400, "Bad Request"), receive, send)
            return
        if self._reader.head_too_large(scope):
            await self._refuse(message_response(431, "Request Header Fields Too Large"), receive, send)
            return
        headers = [(name.decode("latin-1"), value.decode("latin-1")) for name, value in scope["headers"]]
        if self._reader.declared_too_large(headers):
            await self._refuse(message_response(413, "Request Entity Too Large"), receive, send)
            return
        body = await self._reader.read_body(receive)
        if body is None:
            return
        if isinstance(body, HttpResponse):
            await self._refuse(body, receive, send)
            return
        client = scope.get("client") or ("127.0.0.1", 0)
        target = scope["raw_path"].decode("latin-1")
        response = await self._dispatch(
            scope["method"], target, scope["query_string"].decode("latin-1"), headers, body, client[0]
        )
        await _send_response(send, response, close=False)

    async def _refuse(self, response: HttpResponse, receive: Receive, send: Send) -> None:
        """Answer and close without reading the rest of the body.

        The server queues body chunks for the app with a small bound; once this app returns, the server tells
        it the stream closed through that same queue, so a short-lived task keeps it from filling until the
        server has closed the connection (then no more of the body is read).
        """
        await _send_response(send, response, close=True)
        task = asyncio.get_running_loop().create_task(_drain(receive))
        self._drains.add(task)
        task.add_done_callback(self._drains.discard)


async def _drain(receive: Receive) -> None:
    try:
        async with asyncio.timeout(_DRAIN_LIMIT_S):
            while (await receive())["type"] != "http.disconnect":
                pass
    except TimeoutError:
        pass


async def _send_response(send: Send, response: HttpResponse, close: bool) -> None:
    headers = [(b"content-length", str(len(response.body)).encode())]
    for name, value in response.headers:
        if name.lower() not in ("content-length", "connection", "transfer-encoding"):
            headers.append((name.encode("latin-1"), value.encode("latin-1")))
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    await send({"type": "http.response.body", "body": response.body})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
