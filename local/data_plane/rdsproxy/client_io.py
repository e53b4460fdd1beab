"""Reading commands from and closing a logged-in client connection, with MySQL's size limit."""

from __future__ import annotations

import asyncio

from .protocol import MAX_PAYLOAD


class CommandTooLarge(Exception):
    """The command's packets add up to more than max_allowed_packet; the rest was not read."""

    def __init__(self, seq: int):
        super().__init__(f"command above max_allowed_packet (packet {seq})")
        self.seq = seq


async def read_command(reader: asyncio.StreamReader, header: bytes, limit: int) -> tuple[bytes, bytes, int]:
    """(raw packets, payload, last sequence id) of the command whose first header was read.

    Commands of 16 MiB or more span several packets. Every length header is checked against
    ``limit`` before its payload is read, so an oversized command is never buffered.
    """
    length = total = header[0] | header[1] << 8 | header[2] << 16
    seq = header[3]
    if total > limit:
        raise CommandTooLarge(seq)
    payload = await reader.readexactly(length)
    raw = header + payload
    while length == MAX_PAYLOAD:
        more = await reader.readexactly(4)
        length = more[0] | more[1] << 8 | more[2] << 16
        total += length
        seq = more[3]
        if total > limit:
            raise CommandTooLarge(seq)
        tail = await reader.readexactly(length)
        raw += more + tail
        payload += tail
    return raw, payload, seq


async def linger(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, seconds: float) -> None:
    """Half-close, then discard what the client still sends for up to ``seconds``: closing with unread
    input makes the kernel send a reset, which can destroy the last packet before the client reads it."""
    try:
        writer.write_eof()
        async with asyncio.timeout(seconds):
            while await reader.read(1 << 16):
                pass
    except (TimeoutError, ConnectionError, OSError):
        pass


def close_now(writer: asyncio.StreamWriter) -> None:
    """Close; bytes the client never read are dropped (a plain close would wait for it forever)."""
    transport = writer.transport
    if transport.get_write_buffer_size():
        transport.abort()
    else:
        writer.close()
