"""Starting the stand-in as a child process: its command line and the reader of its "ready" line.

Kept out of ``__main__`` so that programs that supervise the child (``ProxyProcess``, the data plane)
import a library module, never an entry point.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from .config import ProxyConfig
from .security import ProxyStartError

PortsReader = Callable[[subprocess.Popen, float], tuple[int, "int | None"]]


def build_command(config: ProxyConfig, python: str = sys.executable) -> tuple[list[str], PortsReader]:
    """Command line that runs ``config`` in a child process, and a function reading its ports.

    The config (with the accounts' passwords) goes through a private temp file that the child deletes after
    reading it. Start the command with ``stdout=subprocess.PIPE`` and the repository root as cwd,
    then call ``read_ports(process, timeout)`` -> (port, stats_port).
    """
    fields = config.to_json()
    fd, path = tempfile.mkstemp(prefix="rdsproxy-", suffix=".json")  # mode 0600
    with os.fdopen(fd, "w") as handle:
        json.dump(fields, handle)
    command = [python, "-m", "local.data_plane.rdsproxy", "--config-file", path]

    def read_ports(process: subprocess.Popen, timeout: float) -> tuple[int, int | None]:
        try:
            return read_ready_line(process, timeout)
        finally:
            Path(path).unlink(missing_ok=True)

    return command, read_ports


def read_ready_line(process: subprocess.Popen, timeout: float) -> tuple[int, int | None]:
    """(port, stats_port) from the child's first stdout line; fails if it exits or is silent for ``timeout`` s.

    A child that cannot start prints ``{"event": "error", "message": ...}`` instead: ProxyStartError with it.
    """
    deadline = time.monotonic() + timeout
    stream = process.stdout
    buffer = b""
    while b"\n" not in buffer:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"proxy did not report ready within {timeout} s")
        ready, _, _ = select.select([stream], [], [], remaining)
        if ready:
            chunk = os.read(stream.fileno(), 4096)
            if not chunk:
                raise RuntimeError(f"proxy exited before it was ready (exit code {process.wait(5)})")
            buffer += chunk
    message = json.loads(buffer.split(b"\n", 1)[0])
    if message.get("event") == "error":
        process.wait(5)
        raise ProxyStartError(f"proxy did not start: {message.get('message')}")
    return int(message["port"]), message.get("stats_port")
