"""Loopback ports, child-process liveness and child lifetime, shared by the local launchers.

Children of a long-running parent (``serve``) must not outlive it: `die_with_parent` (a ``preexec_fn``) asks
Linux to SIGKILL the child when its parent goes, even after kill -9. Because PR_SET_PDEATHSIG fires when the
*thread* that forked the child ends, spawn supervised children only from threads that live as long as the
parent (the main thread, or a supervisor thread that runs until shutdown). `ChildRegistry` records child pids in
a file so that the next start can end whatever a crashed parent left behind, without ever signalling a process
that merely reuses a recorded pid.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import socket
import sys
import time
from pathlib import Path

LOOPBACK = "127.0.0.1"
_PR_SET_PDEATHSIG = 1


def free_port(host: str = LOOPBACK) -> int:
    """A port that is free right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def pid_alive(pid: int) -> bool:
    """True if ``pid`` runs and is not a zombie (a dead child nobody has reaped yet)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no procfs: trust kill(0)
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


# Resolved here, in the parent: a dlopen between fork and exec could deadlock on a lock another thread held.
_prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None


def die_with_parent() -> None:
    """``preexec_fn``: SIGKILL this child when the thread that forked it ends (Linux; a no-op elsewhere)."""
    if _prctl is None:
        return
    parent = os.getppid()
    _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if parent == 1 or os.getppid() != parent:  # the parent died between fork and prctl
        os._exit(1)


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (``/proc/<pid>/stat`` field 22); None if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[-1].split()[19])


class ChildRegistry:
    """A JSON file of this parent's children: ``{"parent": pid, "children": {name: {pid, start}}}``.

    A pid is only ever signalled when both the pid and its start time match the record, so a recycled pid is
    left alone.
    """

    def __init__(self, path: Path):
        self.path = Path(path)

    def _read(self) -> dict:
        try:
            record = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {"parent": None, "children": {}}
        return record if isinstance(record.get("children"), dict) else {"parent": None, "children": {}}

    def _write(self, record: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(self.path.name + ".tmp")
        temporary.write_text(json.dumps(record, indent=1, sort_keys=True))
        temporary.replace(self.path)

    def add(self, name: str, pid: int) -> None:
        record = self._read()
        record["parent"] = os.getpid()
        record["children"][name] = {"pid": pid, "start": start_time(pid)}
        self._write(record)

    def remove(self, name: str) -> None:
        record = self._read()
        if record["children"].pop(name, None) is not None:
            self._write(record)

    def recorded(self) -> dict[str, int]:
        """The recorded children that still run as the very process that was recorded."""
        alive = {}
        for name, entry in self._read()["children"].items():
            pid = entry.get("pid")
            if isinstance(pid, int) and pid_alive(pid) and start_time(pid) == entry.get("start"):
                alive[name] = pid
        return alive

    def end_leftovers(self, timeout_s: float = 10.0) -> dict[str, int]:
        """SIGKILL the recorded children a previous parent left running; returns ``{name: pid}`` of those ended.

        SIGKILL, not SIGTERM: a leftover may be stopped (SIGSTOP) and the durable DB survives it by design.
        """
        leftovers = self.recorded()
        for pid in leftovers.values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + timeout_s
        while any(pid_alive(pid) for pid in leftovers.values()) and time.monotonic() < deadline:
            time.sleep(0.02)
        self.path.unlink(missing_ok=True)
        return leftovers
