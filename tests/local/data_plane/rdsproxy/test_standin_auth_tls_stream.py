"""Property tests of the stand-in's server-side TLS layer (``rdsproxy.tls_stream``), in memory.

However the client's bytes are cut into reads (a ClientHello glued to the bytes before it, records split
mid-header, one byte at a time), the handshake completes and data crosses both ways unchanged; garbage is a
TLS error, and a client that leaves mid-handshake is an incomplete read, never a hang.
"""

from __future__ import annotations

import asyncio
import random
import ssl
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from local.data_plane.auth.local_ca import LocalCa, LocalCaSettings
from local.data_plane.rdsproxy.tls_stream import TlsConnection, remember_server_name


class _Transport:
    def __init__(self) -> None:
        self.aborted = False

    def get_write_buffer_size(self) -> int:
        return 0

    def abort(self) -> None:
        self.aborted = True


class _Writer:
    """The plain StreamWriter side: collects what the server sends."""

    def __init__(self) -> None:
        self.sent = bytearray()
        self.transport = _Transport()
        self.closed = False

    def write(self, data: bytes) -> None:
        self.sent += data

    def is_closing(self) -> bool:
        return self.closed or self.transport.aborted

    async def drain(self) -> None:
        return None


@pytest.fixture(scope="module")
def contexts(tmp_path_factory) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    ca = LocalCa(LocalCaSettings(directory=Path(tmp_path_factory.mktemp("ca"))))
    server = ca.server_ssl_context(["db.proxy.example", "127.0.0.1"])
    server.sni_callback = remember_server_name
    client = ssl.create_default_context(cafile=str(ca.ca_bundle_path))
    return server, client


def _payload(size: int) -> bytes:
    return random.Random(size).randbytes(size)  # several TLS records for the larger sizes


def _cut(data: bytes, sizes: list[int]) -> list[bytes]:
    pieces, pos = [], 0
    for size in sizes:
        if pos >= len(data):
            break
        pieces.append(data[pos : pos + size])
        pos += size
    if pos < len(data):
        pieces.append(data[pos:])
    return pieces


async def _session(server_ctx, client_ctx, sizes: list[int], upstream: bytes, downstream: bytes, early: bool):
    reader, writer = asyncio.StreamReader(), _Writer()
    cin, cout = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = client_ctx.wrap_bio(cin, cout, server_hostname="db.proxy.example")
    if early:  # the plain reader already holds the ClientHello when TLS starts (read with the SSLRequest)
        with pytest.raises(ssl.SSLWantReadError):
            client.do_handshake()
        reader.feed_data(cout.read())
    connection = TlsConnection(reader, writer, server_ctx)
    handshake = asyncio.ensure_future(connection.handshake())

    async def pump_to_server() -> None:
        for piece in _cut(cout.read(), sizes):
            reader.feed_data(piece)
            await asyncio.sleep(0)

    def pump_to_client() -> None:
        cin.write(bytes(writer.sent))
        writer.sent.clear()

    client_done = False
    for _ in range(50):
        if not client_done:
            try:
                client.do_handshake()
                client_done = True
            except ssl.SSLWantReadError:
                pass
        await pump_to_server()
        await asyncio.sleep(0)
        pump_to_client()
        if client_done and handshake.done():
            break
    await asyncio.wait_for(handshake, 5)
    assert connection.server_name == "db.proxy.example"

    client.write(upstream)
    await pump_to_server()
    received = await asyncio.wait_for(connection.reader.readexactly(len(upstream)), 5)
    connection.writer.write(downstream)
    pump_to_client()
    echoed = b""
    while len(echoed) < len(downstream):
        echoed += client.read(len(downstream) - len(echoed))
    return received, echoed


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    sizes=st.lists(st.integers(1, 700), max_size=40),
    upstream=st.integers(1, 100_000).map(_payload),
    downstream=st.integers(1, 100_000).map(_payload),
    early=st.booleans(),
)
def test_any_cut_of_the_client_bytes_gives_the_same_stream(contexts, sizes, upstream, downstream, early):
    received, echoed = asyncio.run(_session(*contexts, sizes, upstream, downstream, early))
    assert received == upstream and echoed == downstream


async def _client_hello(client_ctx) -> bytes:
    client = client_ctx.wrap_bio(ssl.MemoryBIO(), (out := ssl.MemoryBIO()), server_hostname="db.proxy.example")
    with pytest.raises(ssl.SSLWantReadError):
        client.do_handshake()
    return out.read()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(garbage=st.binary(min_size=1, max_size=2000))
def test_garbage_is_a_tls_error_or_a_short_read_never_a_hang(contexts, garbage):
    server_ctx, _ = contexts

    async def run() -> None:
        reader, writer = asyncio.StreamReader(), _Writer()
        connection = TlsConnection(reader, writer, server_ctx)
        reader.feed_data(garbage)
        reader.feed_eof()
        with pytest.raises((ssl.SSLError, asyncio.IncompleteReadError)):
            await asyncio.wait_for(connection.handshake(), 5)

    asyncio.run(run())


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(keep=st.integers(0, 400))
def test_a_client_that_leaves_mid_hello_is_an_incomplete_read(contexts, keep):
    server_ctx, client_ctx = contexts

    async def run() -> None:
        hello = await _client_hello(client_ctx)
        reader, writer = asyncio.StreamReader(), _Writer()
        connection = TlsConnection(reader, writer, server_ctx)
        reader.feed_data(hello[: min(keep, len(hello) - 1)])
        reader.feed_eof()
        with pytest.raises((asyncio.IncompleteReadError, ssl.SSLError)):
            await asyncio.wait_for(connection.handshake(), 5)

    asyncio.run(run())
