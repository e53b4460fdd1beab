"""Samples of the DB's and the proxy's connections while the load runs, from outside the measured slots.

The DB's count is ``Threads_connected`` read over MariaDB's extra port (the monitor connection is counted against
``extra_max_connections``, not the 65 slots it measures). On the proxy path the stand-in's own ``/stats`` are read
too, and its peak/mean/percentile windows are restarted right before the load (``POST /stats/reset``), so its
figures cover the load alone, not the start-up and the migration before it.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from typing import Any

SAMPLE_INTERVAL_S = 0.15
_TIMEOUT_S = 5.0


def reset_proxy_stats(stats_url: str) -> bool:
    """Restart the stand-in's measurement windows; False when this stand-in cannot (its figures then span its life)."""
    for request in (
        urllib.request.Request(stats_url + "/reset", method="POST", data=b""),
        urllib.request.Request(stats_url + "?reset=1"),
    ):
        try:
            with urllib.request.urlopen(request, timeout=_TIMEOUT_S) as response:
                if response.status == 200:
                    return True
        except urllib.error.HTTPError:
            continue
    return False


def read_proxy_stats(stats_url: str) -> dict[str, Any]:
    with urllib.request.urlopen(stats_url, timeout=_TIMEOUT_S) as response:
        return json.loads(response.read())


class Sampler:
    """Samples DB and proxy connection counts in a background thread until stopped (a context manager).

    ``db_connections`` is a callable (MariaDB's ``threads_connected``); ``stats_url`` the stand-in's or None.
    """

    def __init__(self, db_connections: Any, stats_url: str | None, interval_s: float = SAMPLE_INTERVAL_S):
        self._db_connections = db_connections
        self._stats_url = stats_url
        self._interval = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sampler", daemon=True)
        self.samples: list[dict[str, Any]] = []
        self.errors = 0

    def _sample(self) -> dict[str, Any]:
        sample: dict[str, Any] = {"t": time.time(), "db_connections": self._db_connections()}
        if self._stats_url:
            stats = read_proxy_stats(self._stats_url)
            sample["proxy_clients"] = stats.get("client_connections")
            sample["proxy_backends"] = stats.get("backend_connections")
        return sample

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.samples.append(self._sample())
            except Exception:  # noqa: BLE001 - a missed sample must not end the experiment
                self.errors += 1
            self._stop.wait(self._interval)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(5)
