"""Counters the load experiment samples, plus a tiny ``GET /stats`` JSON endpoint.

The endpoint exists so another process (the data plane, the experiment driver) can read the
proxy's own view -- peak backend connections above all -- without importing it.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict, dataclass, field


@dataclass
class Stats:
    client_connections: int = 0
    client_connections_peak: int = 0
    client_connections_total: int = 0
    auth_failures: int = 0
    backend_connections: int = 0
    backend_connections_peak: int = 0
    backend_connections_opened: int = 0
    backend_connect_errors: int = 0
    borrow_waits: int = 0
    borrow_timeouts: int = 0
    pinned_sessions: int = 0
    pinned_sessions_total: int = 0
    statements: int = 0
    idle_client_timeouts: int = 0
    #: clients dropped for not finishing login within login_timeout
    login_timeouts: int = 0
    #: clients dropped for not reading a response within client_write_timeout
    client_write_timeouts: int = 0
    #: commands refused with error 1153 (above max_allowed_packet)
    oversized_packets: int = 0
    #: backends the database closed while a client held them for a transaction (client disconnected)
    held_backends_lost: int = 0
    #: clients that completed a TLS handshake (counted whether or not they then logged in)
    tls_clients: int = 0
    #: clients whose TLS handshake failed (garbage, wrong protocol, untrusted certificate on their side)
    tls_handshake_failures: int = 0
    #: refused IAM logins by the check that failed ("expired", "not authorized", ...)
    iam_auth_failures: dict[str, int] = field(default_factory=dict)

    def client_opened(self) -> None:
        self.client_connections += 1
        self.client_connections_total += 1
        if self.client_connections > self.client_connections_peak:
            self.client_connections_peak = self.client_connections

    def auth_failed(self, reason: str) -> None:
        self.auth_failures += 1
        if reason:
            self.iam_auth_failures[reason] = self.iam_auth_failures.get(reason, 0) + 1

    def backend_opened(self) -> None:
        self.backend_connections += 1
        self.backend_connections_opened += 1
        if self.backend_connections > self.backend_connections_peak:
            self.backend_connections_peak = self.backend_connections

    def snapshot(self) -> dict:
        return asdict(self)


async def serve_stats(host: str, port: int, snapshot) -> asyncio.AbstractServer:
    """Serve ``GET /stats`` (JSON of ``snapshot()``) on host:port; 0 picks a free port."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            request_line = head.split(b"\r\n", 1)[0].split()
            if request_line[:2] == [b"GET", b"/stats"]:
                status, body = b"200 OK", json.dumps(snapshot()).encode()
            else:
                status, body = b"404 Not Found", b'{"error": "only GET /stats"}'
            writer.write(
                b"HTTP/1.1 " + status + b"\r\nContent-Type: application/json\r\n"
                b"Content-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body
            )
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, IndexError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(handle, host, port)
