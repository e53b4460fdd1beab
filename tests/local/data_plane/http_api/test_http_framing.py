"""The local HTTP API over raw sockets: incomplete or malformed requests never reach the function.

Each test counts invocations at the `invoke` boundary (a real server on a real socket in front of it), and
the end-to-end ones count them in the real runtime too.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from local.data_plane.http_api import HttpApi, HttpApiConfig
from local.data_plane.runtime import LambdaRuntime, RuntimeConfig
from tests.local.data_plane.dataplane_support import RUNTIME_HANDLERS

HANDLERS = RUNTIME_HANDLERS


class Counter:
    """An `invoke` that records every event it is given."""

    def __init__(self, delay_s: float = 0.0):
        self.events: list[dict] = []
        self.delay_s = delay_s
        self._lock = threading.Lock()

    def __call__(self, event):
        with self._lock:
            self.events.append(event)
        if self.delay_s:
            time.sleep(self.delay_s)
        return {"statusCode": 200, "body": json.dumps({"body": event.get("body")})}


def address(api: HttpApi) -> tuple[str, int]:
    host, port = api.url.removeprefix("http://").split(":")
    return host, int(port)


def exchange(api: HttpApi, data: bytes, half_close: bool = True, timeout: float = 5.0, requests: int = 1) -> bytes:
    """Send raw bytes, optionally end the stream, return what the server sent.

    That is everything until it closed, or until the replies to ``requests`` requests are complete and the last
    keeps the connection open (the server keeps a half-closed keep-alive connection until its idle timeout).
    """
    with socket.create_connection(address(api), timeout=timeout) as sock:
        sock.sendall(data)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        return read_all(sock, requests)


def read_all(sock: socket.socket, requests: int | None = None) -> bytes:
    """Read until the server closes, or (with ``requests``) until that many replies are complete and kept open."""
    chunks = []
    try:
        while not (requests and kept_open_after(b"".join(chunks), requests)) and (chunk := sock.recv(65536)):
            chunks.append(chunk)
    except (ConnectionResetError, TimeoutError):
        pass
    return b"".join(chunks)


def kept_open_after(data: bytes, replies: int) -> bool:
    """``data`` holds ``replies`` whole replies (each has a Content-Length) and the last does not close."""
    head = b""
    for _ in range(replies):
        end = data.find(b"\r\n\r\n")
        if end < 0:
            return False
        head = data[:end].lower()
        length = re.search(rb"\r\ncontent-length: *(\d+)", head)
        size = end + 4 + (int(length.group(1)) if length else 0)
        if len(data) < size:
            return False
        data = data[size:]
    return b"\r\nconnection: close" not in head


def closed_by_server(sock: socket.socket) -> bool:
    """True once the server ends the connection; False if it is still open when the socket times out."""
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        pass
    except TimeoutError:
        return False
    return True


def status_of(reply: bytes) -> int | None:
    return int(reply.split(b" ", 2)[1]) if reply.startswith(b"HTTP/1.1 ") else None


@pytest.fixture
def counted():
    counter = Counter()
    with HttpApi(counter, HttpApiConfig(max_body_bytes=1000)) as api:
        yield api, counter


def test_end_of_stream_inside_the_headers_is_refused(counted):
    api, counter = counted
    reply = exchange(api, b"GET / HTTP/1.1\r\nHost: x\r\nX-Partial: yes")
    assert status_of(reply) in (None, 400)
    assert counter.events == []


@pytest.mark.parametrize("version", [b"9.9", b"2.0", b"0.9", b"3.1"])
def test_a_request_line_with_an_unsupported_http_version_is_400_and_never_invoked(counted, version):
    api, counter = counted
    reply = exchange(api, b"GET / HTTP/" + version + b"\r\nHost: x\r\n\r\n")
    assert status_of(reply) == 400, reply
    assert reply.endswith(b'{"message":"Bad Request"}'), reply
    assert b"connection: close" in reply.lower()
    assert counter.events == []


@pytest.mark.parametrize("version", [b"1.0", b"1.1", b"1.2"])
def test_http_1_x_request_lines_are_served(counted, version):
    api, counter = counted
    reply = exchange(api, b"GET /v HTTP/" + version + b"\r\nHost: x\r\n\r\n")
    assert status_of(reply) == 200, reply
    assert [event["rawPath"] for event in counter.events] == ["/v"]


@pytest.mark.parametrize("length", [b"-1", b"abc", b"1e3", b"5, 6"])
def test_bad_content_length_is_a_400_not_an_invocation(counted, length):
    api, counter = counted
    reply = exchange(api, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: " + length + b"\r\n\r\nhello")
    assert status_of(reply) == 400
    assert counter.events == []


def test_a_body_cut_short_by_end_of_stream_is_never_invoked(counted):
    api, counter = counted
    reply = exchange(api, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n" + b"x" * 10)
    assert status_of(reply) != 200
    assert counter.events == []


def test_a_complete_body_is_invoked_exactly_once(counted):
    api, counter = counted
    reply = exchange(api, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello")
    assert status_of(reply) == 200
    assert [e["body"] for e in counter.events] == ["hello"]


def test_chunked_bodies_are_decoded_and_the_connection_stays_in_sync(counted):
    api, counter = counted
    chunked = (
        b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    )
    follow_up = b"GET /b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    reply = exchange(api, chunked + follow_up, requests=2)
    assert reply.count(b"HTTP/1.1 200") == 2
    assert [(e["rawPath"], e.get("body")) for e in counter.events] == [("/a", "hello world"), ("/b", None)]


def test_bad_chunking_is_a_400_not_an_invocation(counted):
    api, counter = counted
    reply = exchange(api, b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n")
    assert status_of(reply) == 400
    assert counter.events == []


def test_chunked_body_past_the_payload_limit_is_413(counted):
    api, counter = counted
    chunk = b"%x\r\n%s\r\n" % (600, b"y" * 600)
    reply = exchange(
        api, b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk * 2 + b"0\r\n\r\n"
    )
    assert status_of(reply) == 413
    assert json.loads(reply.split(b"\r\n\r\n", 1)[1]) == {"message": "Request Entity Too Large"}
    assert counter.events == []


def test_payload_limit_is_inclusive(counted):
    api, counter = counted
    for size, expected in ((1000, 200), (1001, 413)):
        head = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n" % size
        assert status_of(exchange(api, head + b"z" * size)) == expected
    assert len(counter.events) == 1


def test_a_declared_1_gb_body_is_refused_from_its_length_without_being_read():
    counter = Counter()
    with HttpApi(counter) as api, socket.create_connection(address(api), timeout=5) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1073741824\r\n\r\n")
        sent, block, started = 0, b"\0" * 65536, time.monotonic()
        try:
            while sent < 256 * 1024 * 1024 and time.monotonic() - started < 10:
                sent += sock.send(block)
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            pass
        reply = read_all(sock)
    assert status_of(reply) == 413
    # The server stopped reading: what went out is at most socket buffers' worth, far below the 10 MB limit.
    assert sent < 10 * 1024 * 1024
    assert counter.events == []


def test_headers_over_the_limit_are_431(counted):
    api, counter = counted
    reply = exchange(api, b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 11000 + b"\r\n\r\n")
    assert status_of(reply) == 431
    assert counter.events == []


def test_headers_within_the_limit_are_served(counted):
    api, counter = counted
    reply = exchange(api, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n")
    assert status_of(reply) == 200
    assert counter.events[0]["headers"]["x-big"] == "a" * 9000


def test_a_body_that_does_not_arrive_in_time_is_408_and_never_invoked():
    counter = Counter()
    with HttpApi(counter, HttpApiConfig(body_timeout_s=0.5)) as api, socket.create_connection(address(api), 5) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
        reply = read_all(sock)
    assert status_of(reply) == 408
    assert counter.events == []


def test_slowloris_connections_time_out_and_never_invoke():
    counter = Counter()
    with HttpApi(counter, HttpApiConfig(header_timeout_s=1.0)) as api:
        partial = [socket.create_connection(address(api), timeout=4) for _ in range(200)]
        for sock in partial:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
        time.sleep(0.5)
        for sock in partial:  # still trickling, never finishing the headers
            sock.sendall(b"X-Slow: 1\r\n")
        # While 200 clients hang, a normal request is still served.
        assert status_of(exchange(api, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")) == 200
        deadline = time.monotonic() + 6  # bounds the wait when connections are (wrongly) left open
        closed = 0
        for sock in partial:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            closed += closed_by_server(sock)
        for sock in partial:
            sock.close()
    assert closed == 200
    assert len(counter.events) == 1  # only the complete request


def test_early_client_disconnect_logs_no_traceback(caplog, capfd):
    counter = Counter(delay_s=0.3)
    with caplog.at_level("DEBUG"), HttpApi(counter) as api:
        for _ in range(20):
            sock = socket.create_connection(address(api), timeout=5)
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # RST
            sock.close()
        time.sleep(0.8)  # a window for a traceback to appear (what must not happen cannot be polled for)
        assert status_of(exchange(api, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")) == 200
    output = capfd.readouterr()
    assert "Traceback" not in output.err + output.out
    assert not [r for r in caplog.records if r.exc_info or "Traceback" in r.getMessage()]


def test_incomplete_requests_through_the_real_runtime_never_run_the_function():
    runtime_config = RuntimeConfig(
        handler="sample_app.lambda_handler", code_dir=HANDLERS, max_concurrency=2, timeout_s=2
    )
    with LambdaRuntime(runtime_config) as runtime, HttpApi(runtime.invoke) as api:
        exchange(api, b"GET / HTTP/1.1\r\nHost: x\r\nX-Cut")
        exchange(api, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\nabc")
        exchange(api, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\nabc")
        exchange(api, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\nshort")
        exchange(api, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\n\r\n")
        assert runtime.stats().invocations == 0 and runtime.stats().cold_starts == 0
        assert status_of(exchange(api, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")) == 200
        assert runtime.stats().invocations == 1


_REQUEST = b"POST /p?q=1 HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 11\r\n\r\nhello world"


@pytest.fixture(scope="module")
def shared_api():
    """A short header timeout: the empty request (cut 0) is an idle connection, closed only by that timer."""
    counter = Counter()
    with HttpApi(counter, HttpApiConfig(header_timeout_s=1.0)) as api:
        yield api, counter


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.integers(min_value=0, max_value=len(_REQUEST)))
def test_any_truncation_of_a_request_is_invoked_only_when_complete(shared_api, cut):
    api, counter = shared_api
    before = len(counter.events)
    reply = exchange(api, _REQUEST[:cut])
    invoked = len(counter.events) - before
    if cut == len(_REQUEST):
        assert invoked == 1 and status_of(reply) == 200
    else:
        assert invoked == 0 and status_of(reply) != 200
