"""Waiting in tests: poll for a condition (never a fixed sleep), and a SIGSTOP that returns once it took effect."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def wait_until(check: Callable[[], Any], timeout: float = 5.0, interval: float = 0.02) -> Any:
    """Poll ``check`` until it returns something true; that value (the last one if it never does)."""
    deadline = time.monotonic() + timeout
    value = check()
    while not value and time.monotonic() < deadline:
        time.sleep(interval)
        value = check()
    return value


def thread_states(pid: int) -> list[str]:
    """The scheduler state (``R``, ``S``, ``T``, ...) of each of the process's threads, from ``/proc``."""
    states = []
    for stat in Path(f"/proc/{pid}/task").glob("*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue  # the thread ended meanwhile
        states.append(text[text.rindex(")") + 2])  # the field after the command name, which may hold spaces
    return states


def stop_process(pid: int, timeout_s: float = 10.0) -> None:
    """SIGSTOP ``pid`` and wait until every thread of it is stopped (state ``T``), so what is sent next is unread.

    The signal is delivered asynchronously: without the wait, a busy machine may still run the process for a
    while after ``kill`` returned.
    """
    os.kill(pid, signal.SIGSTOP)
    deadline = time.monotonic() + timeout_s
    while True:
        states = thread_states(pid)
        if states and all(state == "T" for state in states):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"process {pid} not stopped {timeout_s} s after SIGSTOP: thread states {states}")
        time.sleep(0.005)
