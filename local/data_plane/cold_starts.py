"""Turns for cold starts: a few at a time on this machine's cores, each held only into the start of its first call.

On AWS every cold start has its own host. Here up to 100 containers share the machine's cores, and the CPU-heavy
part of a cold start (the import, then the first connection: IAM token, TLS set-up) is early. A turn is taken before
the container is created and given back when its first invocation returns or `turn_s` into it, whichever comes
first: the first cold starts finish early and serve warm requests while the others start, and a first invocation
that waits on the DB (a pool borrow, a slow query) holds back no one.
"""

from __future__ import annotations

import os
import threading

DEFAULT_CONCURRENT_COLD_STARTS = 2 * (os.cpu_count() or 1)
"""Cold starts that run at once: what the machine's cores can run."""
DEFAULT_TURN_S = 0.5
"""Longest a cold start's first invocation holds its turn (its CPU-heavy start takes ~0.15 s on a quiet machine)."""


class ColdStartTurns:
    def __init__(self, at_once: int, turn_s: float):
        self._slots = threading.BoundedSemaphore(at_once)
        self.turn_s = turn_s

    def turn(self) -> Turn:
        return Turn(self._slots, self.turn_s)


class Turn:
    """One cold start's turn, a context manager: taken on entry, given back on exit or `turn_s` after
    `invocation_started`, whichever comes first (given back once)."""

    def __init__(self, slots: threading.BoundedSemaphore, turn_s: float):
        self._slots = slots
        self._turn_s = turn_s
        self._lock = threading.Lock()
        self._held = False
        self._timer: threading.Timer | None = None

    def __enter__(self) -> Turn:
        self._slots.acquire()
        self._held = True
        return self

    def invocation_started(self) -> None:
        self._timer = threading.Timer(self._turn_s, self._give_back)
        self._timer.daemon = True
        self._timer.start()

    def _give_back(self) -> None:
        with self._lock:
            held, self._held = self._held, False
        if held:
            self._slots.release()

    def __exit__(self, *exc_info: object) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._give_back()
