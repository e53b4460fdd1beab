"""The running emulator's record (pid and port in its state directory): written by the control plane when it starts
the emulator, read by it and by ``serve`` (which needs the emulator that holds the deployed secrets)."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path

from local.common.processes import LOOPBACK, pid_alive

SERVER_MODULE = "local.control_plane.moto_server"
STATE_FILE_NAME = "emulator.json"
# moto's static dashboard page: answers as soon as the server routes requests, whatever the backends
# hold (data.json would serialize every backend and fails once a Lambda function exists: no Docker).
READINESS_PATH = "/moto-api/"


def endpoint_of(port: int) -> str:
    return f"http://{LOOPBACK}:{port}"


def is_our_server(pid: int) -> bool:
    """Guard against pid reuse: the process must be running the emulator's launcher module."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return pid_alive(pid)
    return SERVER_MODULE.encode() in cmdline


def http_ok(url: str, timeout_s: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return 200 <= response.status < 500
    except (urllib.error.URLError, OSError):
        return False


def write_record(state_dir: Path, pid: int, port: int, log_file: Path) -> None:
    data = {
        "pid": pid,
        "port": port,
        "endpoint": endpoint_of(port),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "log": str(log_file),
    }
    state_file = state_dir / STATE_FILE_NAME
    tmp = state_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(state_file)


def recorded_server(state_dir: Path) -> tuple[int, int] | None:
    """``(pid, port)`` from the record, if that process is still the emulator."""
    try:
        data = json.loads((state_dir / STATE_FILE_NAME).read_text())
        pid, port = int(data["pid"]), int(data["port"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return (pid, port) if pid_alive(pid) and is_our_server(pid) else None


def answers(pid: int, port: int) -> bool:
    """The process is alive, is the emulator, and answers HTTP."""
    return pid_alive(pid) and is_our_server(pid) and http_ok(endpoint_of(port) + READINESS_PATH)


def running_endpoint(state_dir: Path) -> str | None:
    """The recorded emulator's endpoint if it is running and answers, else None."""
    recorded = recorded_server(state_dir)
    return endpoint_of(recorded[1]) if recorded is not None and answers(*recorded) else None
