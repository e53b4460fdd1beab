"""TLS on an accepted MySQL client connection, after its SSLRequest, on top of the plain asyncio streams.

MySQL's server says nothing between the client's SSLRequest and the TLS handshake, so a client sends its
ClientHello right behind the SSLRequest, and the plain ``StreamReader`` often holds it already (one ``recv``
got both). ``StreamWriter.start_tls`` would lose those bytes and the handshake would hang until the login
timeout. Here TLS runs in memory (``ssl.SSLObject`` over ``MemoryBIO``s) and pulls ciphertext from the
plain reader, buffered bytes included; reads pull on demand, so a client that floods is not buffered past
what the session asks for. Works the same on any event loop.
"""

from __future__ import annotations

import asyncio
import ssl

_CHUNK = 1 << 16


class TlsConnection:
    """One server-side TLS session over a plain (reader, writer) pair; ``reader``/``writer`` are its stream faces."""

    def __init__(self, raw_reader: asyncio.StreamReader, raw_writer: asyncio.StreamWriter, context: ssl.SSLContext):
        self._raw_reader, self._raw_writer = raw_reader, raw_writer
        self._incoming, self._outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.ssl_object = context.wrap_bio(self._incoming, self._outgoing, server_side=True)
        self.reader = TlsReader(self)
        self.writer = TlsWriter(self, raw_writer)

    async def handshake(self) -> None:
        """Complete the TLS handshake; ssl.SSLError for garbage, IncompleteReadError if the client leaves."""
        while True:
            try:
                self.ssl_object.do_handshake()
            except ssl.SSLWantReadError:
                self._flush()
                await self._fill()
            else:
                self._flush()
                return

    @property
    def server_name(self) -> str | None:
        """The host name the client asked for (TLS SNI), if it sent one."""
        return getattr(self.ssl_object, "sni", None)

    def _flush(self) -> None:
        pending = self._outgoing.read()
        if pending and not self._raw_writer.is_closing():
            self._raw_writer.write(pending)

    async def _fill(self) -> None:
        data = await self._raw_reader.read(_CHUNK)
        if not data:
            raise asyncio.IncompleteReadError(b"", None)
        self._incoming.write(data)

    async def read(self, limit: int) -> bytes:
        """Up to ``limit`` plaintext bytes; b"" at the end of the connection."""
        while True:
            try:
                data = self.ssl_object.read(limit)
            except ssl.SSLWantReadError:
                self._flush()
                chunk = await self._raw_reader.read(_CHUNK)
                if not chunk:
                    return b""
                self._incoming.write(chunk)
                continue
            except ssl.SSLZeroReturnError:  # the client's close_notify
                return b""
            self._flush()  # post-handshake messages (session tickets, key updates)
            return data

    def write(self, data: bytes) -> None:
        if self._raw_writer.is_closing():
            return
        try:
            view = memoryview(data)
            while view:
                written = self.ssl_object.write(view)
                view = view[written:]
        except ssl.SSLError:  # the session is broken: nothing more can be sent on it
            self._raw_writer.transport.abort()
            return
        self._flush()

    def close_notify(self) -> None:
        try:
            self.ssl_object.unwrap()
        except (ssl.SSLWantReadError, ssl.SSLError):
            pass
        self._flush()


def remember_server_name(ssl_object, server_name: str | None, _context) -> None:
    """``SSLContext.sni_callback``: keep the client's SNI on its SSLObject (read by ``server_name``)."""
    ssl_object.sni = server_name


class TlsReader:
    """The StreamReader calls the session makes (read, readexactly), decrypted."""

    def __init__(self, connection: TlsConnection):
        self._connection = connection
        self._buffer = bytearray()

    async def read(self, limit: int = -1) -> bytes:
        if self._buffer:
            size = len(self._buffer) if limit < 0 else min(limit, len(self._buffer))
            data = bytes(self._buffer[:size])
            del self._buffer[:size]
            return data
        return await self._connection.read(_CHUNK if limit < 0 else limit)

    async def readexactly(self, count: int) -> bytes:
        while len(self._buffer) < count:
            data = await self._connection.read(max(count - len(self._buffer), _CHUNK))
            if not data:
                partial = bytes(self._buffer)
                self._buffer.clear()
                raise asyncio.IncompleteReadError(partial, count)
            self._buffer += data
        data = bytes(self._buffer[:count])
        del self._buffer[:count]
        return data


class TlsWriter:
    """The StreamWriter calls the session makes, encrypted; ``transport`` is the plain one (buffer size, abort)."""

    def __init__(self, connection: TlsConnection, raw_writer: asyncio.StreamWriter):
        self._connection = connection
        self._raw = raw_writer

    @property
    def transport(self) -> asyncio.Transport:
        return self._raw.transport  # type: ignore[return-value]

    def write(self, data: bytes) -> None:
        self._connection.write(data)

    async def drain(self) -> None:
        await self._raw.drain()

    def is_closing(self) -> bool:
        return self._raw.is_closing()

    def write_eof(self) -> None:
        """TLS has no half-close: send close_notify, then end the plain stream's write side."""
        self._connection.close_notify()
        if self._raw.can_write_eof():
            self._raw.write_eof()

    def close(self) -> None:
        if not self._raw.is_closing():
            self._connection.close_notify()
        self._raw.close()

    async def wait_closed(self) -> None:
        await self._raw.wait_closed()

    def get_extra_info(self, name: str, default=None):
        if name == "ssl_object":
            return self._connection.ssl_object
        return self._raw.get_extra_info(name, default)
