"""Keeps the data plane's children alive: notices a dead DB or proxy, logs it, reaps it and starts it again.

One thread polls the children every `interval_s`. Polling (``Popen.poll``) also reaps an exited child, so
nothing stays a zombie. Restarts run in this thread, which lives until `stop`, because a child started with
PR_SET_PDEATHSIG (`local.common.processes.die_with_parent`) is killed when the *thread* that started it ends.

Restarting the DB is safe here: the persistent instance runs with innodb_flush_log_at_trx_commit=1, so InnoDB
crash recovery brings back every committed row; the old server is reaped before the new one starts (two
servers never share the datadir), and the instance lock keeps other ``serve`` processes away. The proxy holds
no state worth keeping: a new one on the same port picks up the clients' reconnects.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

RESTART_BACKOFF_S = (0.0, 0.5, 1.0, 2.0, 5.0)


def stderr_log(line: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {line}", file=sys.stderr, flush=True)


@dataclass
class Child:
    """One supervised child: how to tell it runs, describe its exit, and start it again (returns the new pid)."""

    name: str
    alive: Callable[[], bool]
    exit_status: Callable[[], str]
    restart: Callable[[], int | None]
    failures: int = 0
    next_attempt: float = 0.0
    restarts: int = 0


class Supervisor:
    def __init__(self, log: Callable[[str], None] = stderr_log, interval_s: float = 0.25):
        if not 0.01 <= interval_s <= 60:
            raise ValueError(f"interval_s={interval_s}: must be in 0.01..60")
        self.log = log
        self.interval_s = interval_s
        self._children: list[Child] = []
        self._cycle = threading.Lock()
        self._paused = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def watch(self, child: Child) -> None:
        with self._cycle:
            self._children.append(child)

    def restarts(self, name: str) -> int:
        return sum(c.restarts for c in self._children if c.name == name)

    def start(self) -> Supervisor:
        self._thread = threading.Thread(target=self._run, name="data-plane-supervisor", daemon=True)
        self._thread.start()
        return self

    def pause(self) -> None:
        """Stop restarting (before an orderly shutdown); waits for a restart in progress. The thread stays."""
        with self._cycle:
            self._paused = True

    def stop(self) -> None:
        """End the thread. Children it restarted get SIGKILL from the kernel: stop them first (see `pause`)."""
        self.pause()
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=30)

    def check_once(self) -> None:
        with self._cycle:
            if self._paused:
                return
            for child in self._children:
                self._check(child)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.check_once()

    def _check(self, child: Child) -> None:
        if child.alive() or time.monotonic() < child.next_attempt:
            return
        if child.failures == 0:
            self.log(f"[supervisor] {child.name} died ({child.exit_status()}); restarting it")
        started = time.monotonic()
        try:
            pid = child.restart()
        except Exception as exc:  # noqa: BLE001 - keep supervising; say why and retry with backoff
            child.failures += 1
            delay = RESTART_BACKOFF_S[min(child.failures, len(RESTART_BACKOFF_S) - 1)]
            child.next_attempt = time.monotonic() + delay
            self.log(f"[supervisor] {child.name} could not be restarted ({exc}); next try in {delay:.1f} s")
            return
        child.failures = 0
        child.restarts += 1
        self.log(f"[supervisor] {child.name} restarted (pid {pid}) in {time.monotonic() - started:.1f} s")
