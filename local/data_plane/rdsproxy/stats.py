"""What the proxy counts and measures, and the tiny HTTP endpoint that serves it as JSON.

``GET /stats`` lets another process (the data plane, the experiment) read the proxy's own view without importing
it: above all how many database connections it holds (peak and time-weighted mean, the reference run's "8 DB
connections") and how long commands waited for one and held it. ``POST /stats/reset`` answers the closing window's
figures and starts a new window for the peaks, means and percentiles, so one proxy can be measured per phase;
counters keep counting across windows.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .metrics import LatencyHistogram, TimeWeightedGauge

Clock = Callable[[], float]


@dataclass
class Stats:
    clock: Clock = field(default=time.monotonic, repr=False)
    client_connections_total: int = 0
    auth_failures: int = 0
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
    #: clients dropped for leaving reply bytes unread for client_write_timeout
    client_write_timeouts: int = 0
    #: clients dropped for holding a backend above client_buffer_limit for reply_stall_timeout (backend closed)
    stalled_replies: int = 0
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

    def __post_init__(self) -> None:
        now = self.clock()
        self._started = now
        self._clients = TimeWeightedGauge(now)
        self._backends = TimeWeightedGauge(now)
        self._borrow_wait = LatencyHistogram()
        self._borrow_hold = LatencyHistogram()

    # -- what the proxy reports as it goes -----------------------------------------------------------
    @property
    def client_connections(self) -> int:
        return self._clients.value

    @property
    def backend_connections(self) -> int:
        return self._backends.value

    def client_opened(self) -> None:
        self.client_connections_total += 1
        self._clients.set(self._clients.value + 1, self.clock())

    def client_closed(self) -> None:
        self._clients.set(self._clients.value - 1, self.clock())

    def backend_opened(self) -> None:
        self.backend_connections_opened += 1
        self._backends.set(self._backends.value + 1, self.clock())

    def backend_closed(self) -> None:
        self._backends.set(self._backends.value - 1, self.clock())

    def borrowed(self, wait_s: float) -> None:
        self._borrow_wait.add(wait_s)

    def returned(self, hold_s: float) -> None:
        self._borrow_hold.add(hold_s)

    def auth_failed(self, reason: str) -> None:
        self.auth_failures += 1
        if reason:
            self.iam_auth_failures[reason] = self.iam_auth_failures.get(reason, 0) + 1

    # -- reading ---------------------------------------------------------------------------------------
    def snapshot(self) -> dict:
        now = self.clock()
        data = {
            name: getattr(self, name)
            for name in self.__dataclass_fields__
            if name != "clock" and not name.startswith("_")
        }
        data["iam_auth_failures"] = dict(self.iam_auth_failures)
        data.update(
            client_connections=self._clients.value,
            client_connections_peak=self._clients.peak,
            backend_connections=self._backends.value,
            backend_connections_peak=self._backends.peak,
            backend_connections_mean=round(self._backends.mean(now), 3),
            backend_connection_seconds=round(self._backends.area(now), 3),
            borrow_wait_ms=self._borrow_wait.summary_ms(),
            borrow_hold_ms=self._borrow_hold.summary_ms(),
            uptime_s=round(now - self._started, 3),
            window_s=round(self._backends.window(now), 3),
        )
        return data

    def reset_window(self) -> dict:
        """The closing window's snapshot; then peaks, means and percentiles start over (counters do not)."""
        closing = self.snapshot()
        now = self.clock()
        self._clients.reset(now)
        self._backends.reset(now)
        self._borrow_wait = LatencyHistogram()
        self._borrow_hold = LatencyHistogram()
        return closing


async def serve_stats(
    host: str, port: int, snapshot: Callable[[], dict], reset: Callable[[], dict]
) -> asyncio.AbstractServer:
    """Serve ``GET /stats`` and ``POST /stats/reset`` (JSON) on host:port; 0 picks a free port."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            request_line = head.split(b"\r\n", 1)[0].split()
            route = request_line[:2]
            if route == [b"GET", b"/stats"]:
                status, body = b"200 OK", json.dumps(snapshot()).encode()
            elif route == [b"POST", b"/stats/reset"]:
                status, body = b"200 OK", json.dumps(reset()).encode()
            else:
                status, body = b"404 Not Found", b'{"error": "only GET /stats and POST /stats/reset"}'
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
