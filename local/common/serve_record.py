"""Where a running ``serve`` can be reached: written at start, removed at stop, read by other commands.

``python -m local sql`` and ``python -m local env`` need the addresses ``serve`` listens on without importing the
data plane; this file is that contract. It holds no secret (no password, no token, no key).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from local.common.processes import pid_alive

RECORD_DIR_NAME = "serve"


@dataclass(frozen=True)
class ServeRecord:
    """The addresses of one stack's running data plane."""

    stack: str
    pid: int
    """The ``serve`` process; a record whose pid is gone is stale and ignored."""
    http_url: str
    """The local HTTP API (the ``$default`` stage's invoke URL)."""
    proxy_host: str
    """Loopback address the RDS Proxy stand-in listens on (127.0.0.1; "" on the direct path)."""
    proxy_port: int
    """The stand-in's local client port (0 on the direct path)."""
    stats_url: str
    """The stand-in's ``GET /stats`` URL ("" on the direct path)."""
    endpoint: str
    """The deployed proxy endpoint name clients sign tokens for and verify TLS against ("" when not deployed)."""
    endpoint_port: int
    """The deployed proxy port (the function's ``DB_PORT``): what IAM tokens are signed for."""
    ca_file: str
    """The local CA that issued the stand-in's certificate ("" in password mode)."""
    db_port: int
    """The local DB instance's port (MariaDB)."""
    region: str
    """The stack's region (token signing)."""


def record_path(local_dir: Path, stack: str) -> Path:
    return local_dir / RECORD_DIR_NAME / f"{stack}.json"


def write_record(local_dir: Path, record: ServeRecord) -> Path:
    """Write atomically, readable by this OS user only."""
    path = record_path(local_dir, record.stack)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    partial = path.with_suffix(".partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(asdict(record), handle, indent=2, sort_keys=True)
    partial.replace(path)
    return path


def read_record(local_dir: Path, stack: str) -> ServeRecord | None:
    """The running ``serve``'s record; None when there is none or its process is gone."""
    try:
        raw = json.loads(record_path(local_dir, stack).read_text(encoding="utf-8"))
        record = ServeRecord(**raw)
    except (OSError, ValueError, TypeError):
        return None
    return record if pid_alive(record.pid) else None


def remove_record(local_dir: Path, stack: str, pid: int | None = None) -> None:
    """Remove the record (only if it is ``pid``'s, when given)."""
    path = record_path(local_dir, stack)
    if pid is not None:
        try:
            if json.loads(path.read_text(encoding="utf-8")).get("pid") != pid:
                return
        except (OSError, ValueError):
            return
    path.unlink(missing_ok=True)
