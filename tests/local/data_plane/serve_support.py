"""Support for the serve-level tests (no tests here): `python -m local serve` run against a real emulator."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from local.common.ports import PORT_BASE_VARIABLE
from local.common.processes import pid_alive
from modules.project import REPO_ROOT
from tests.ports_support import free_block_base

START_TIMEOUT_S = 120.0


@dataclass
class Deployment:
    """A deployed-looking local stack: its state file, the emulator holding its secret, a local state dir."""

    state_file: Path
    local_state_dir: Path
    endpoint: str
    tmpdir: Path
    port_base: int = field(default_factory=free_block_base)
    """``LOCAL_PORT_BASE`` of every ``serve`` of this deployment: the same stable block across restarts."""

    @property
    def instance_dir(self) -> Path:
        return self.local_state_dir / "db-instances" / "sms-local-db"

    def children(self) -> dict[str, int]:
        record = json.loads((self.instance_dir / "children.json").read_text())
        return {name: entry["pid"] for name, entry in record["children"].items()}


@dataclass
class Serve:
    deployment: Deployment
    args: tuple[str, ...] = ()
    process: subprocess.Popen | None = None
    url: str = ""
    stdout: str = ""
    log_path: Path = field(default_factory=Path)
    out_path: Path = field(default_factory=Path)

    def start(self, wait: bool = True) -> Serve:
        d = self.deployment
        stem = d.tmpdir / f"serve-{time.monotonic_ns()}"
        self.log_path, self.out_path = stem.with_suffix(".log"), stem.with_suffix(".out")
        env = {**os.environ, "TMPDIR": str(d.tmpdir / "tmp"), "PYTHONUNBUFFERED": "1"}
        env[PORT_BASE_VARIABLE] = str(d.port_base)
        (d.tmpdir / "tmp").mkdir(exist_ok=True)
        command = [sys.executable, "-m", "local", "serve", "--state-file", str(d.state_file), "--password-auth"]
        command += ["--local-state-dir", str(d.local_state_dir), "--aws-endpoint", d.endpoint]
        command += ["--max-connections", "20", "--max-concurrency", "4", *self.args]
        # Files, not pipes: the function's log goes to serve's stdout, and an undrained pipe would block it.
        with self.log_path.open("wb") as log, self.out_path.open("wb") as out:
            self.process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=out, stderr=log, env=env)
        if wait:
            try:
                self.wait_serving()
            except BaseException:
                self.kill()  # never leave a serve (and its children) behind a failed test
                raise
        return self

    def wait_serving(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline and self.process.poll() is None:
            self.stdout = self.out_path.read_text(errors="replace")
            match = re.search(r"^serving (http://\S+?)/ ", self.stdout, re.MULTILINE)
            if match:
                self.url = match.group(1)
                return
            time.sleep(0.1)
        raise AssertionError(f"serve did not start:\n{self.stdout}\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def get(self, timeout: float = 15.0) -> tuple[int, dict]:
        try:
            with urllib.request.urlopen(self.url + "/", timeout=timeout) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, {}

    def wait_for_200(self, timeout_s: float = 30.0) -> dict:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                status, body = self.get(timeout=5)
            except OSError:
                status, body = 0, {}
            if status == 200:
                return body
            time.sleep(0.2)
        raise AssertionError(f"no 200 within {timeout_s} s:\n{self.log()}")

    def stop(self, timeout: float = 60.0) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(10)


def descendants(pid: int) -> set[int]:
    """Every live descendant of ``pid`` (from /proc's children lists)."""
    found: set[int] = set()
    pending = [pid]
    while pending:
        current = pending.pop()
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                children = (task / "children").read_text().split()
            except OSError:
                continue
            for child in map(int, children):
                if child not in found:
                    found.add(child)
                    pending.append(child)
    return found


def wait_gone(pids: set[int], timeout_s: float = 15.0) -> set[int]:
    """Wait (bounded) until none of ``pids`` runs; returns those still running."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        alive = {pid for pid in pids if pid_alive(pid)}
        if not alive:
            return set()
        time.sleep(0.1)
    return {pid for pid in pids if pid_alive(pid)}
