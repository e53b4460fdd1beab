"""Property tests of the request reader: however a body is split, cut or oversized, the outcome is exact."""

from __future__ import annotations

import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st

from local.data_plane.http_api.app import RequestReader
from local.data_plane.http_api.events import HttpResponse


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(c, len(data)) for c in cuts})
    pieces, start = [], 0
    for point in points:
        pieces.append(data[start:point])
        start = point
    pieces.append(data[start:])
    return pieces


def read(reader: RequestReader, messages: list[dict]) -> bytes | HttpResponse | None:
    queue = list(messages)

    async def receive() -> dict:
        if queue:
            return queue.pop(0)
        await asyncio.sleep(3600)  # a client that stops sending
        raise AssertionError("unreachable")

    return asyncio.run(reader.read_body(receive))


def as_messages(pieces: list[bytes]) -> list[dict]:
    return [
        {"type": "http.request", "body": piece, "more_body": index < len(pieces) - 1}
        for index, piece in enumerate(pieces)
    ]


@settings(max_examples=200, deadline=None)
@given(body=st.binary(max_size=300), cuts=st.lists(st.integers(0, 300), max_size=6), cap=st.integers(1, 300))
def test_a_complete_body_is_reassembled_or_refused_by_size(body, cuts, cap):
    result = read(RequestReader(cap, 5.0, 10240), as_messages(split(body, cuts)))
    if len(body) <= cap:
        assert result == body
    else:
        assert isinstance(result, HttpResponse) and result.status == 413


@settings(max_examples=100, deadline=None)
@given(body=st.binary(min_size=1, max_size=200), cuts=st.lists(st.integers(0, 200), max_size=4), keep=st.data())
def test_a_disconnect_before_the_last_chunk_never_yields_a_body(body, cuts, keep):
    messages = as_messages(split(body, cuts))
    kept = keep.draw(st.integers(0, len(messages) - 1))
    result = read(RequestReader(1000, 5.0, 10240), messages[:kept] + [{"type": "http.disconnect"}])
    assert result is None


def test_a_body_that_stalls_is_408():
    result = read(RequestReader(1000, 0.2, 10240), [{"type": "http.request", "body": b"ab", "more_body": True}])
    assert isinstance(result, HttpResponse) and result.status == 408


@given(
    path=st.binary(min_size=1, max_size=200),
    values=st.lists(st.binary(max_size=3000), max_size=6),
)
def test_the_header_quota_counts_request_line_and_header_values(path, values):
    scope = {"method": "GET", "raw_path": path, "query_string": b"", "headers": [(b"x-h", v) for v in values]}
    size = len("GET") + len(path) + len(" ? HTTP/1.1") + sum(map(len, values))
    assert RequestReader(1000, 1.0, 10240).head_too_large(scope) == (size > 10240)
