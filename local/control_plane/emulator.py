"""Start and stop the local AWS emulator (moto server on 127.0.0.1) by pid.

The emulator runs `local.control_plane.moto_server` (moto plus this project's compatibility fixes, see
`local/control_plane/EMULATOR.md`) in its own session, so `python -m local up` can return while the server keeps
running for later `deploy`/`diff`/`destroy` commands. A small JSON file in the state directory records
its pid and port; `stop()` ends exactly that process (SIGTERM, then SIGKILL), never anything by name.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from local.common.emulator_record import (
    READINESS_PATH,
    SERVER_MODULE,
    STATE_FILE_NAME,
    answers,
    endpoint_of,
    http_ok,
    is_our_server,
    recorded_server,
    write_record,
)
from local.common.local_target import emulator_state_dir
from local.common.processes import LOOPBACK, free_port, pid_alive
from modules.project import REPO_ROOT

DEFAULT_STATE_DIR = emulator_state_dir()
LOG_FILE_NAME = "moto.log"


class EmulatorError(RuntimeError):
    """The emulator could not be started, reached or stopped; the message says how to fix it."""


@dataclass(frozen=True)
class EmulatorConfig:
    """Where and how to run the emulator. ``port=0`` picks a free port at start."""

    port: int = 0
    state_dir: Path = DEFAULT_STATE_DIR
    start_timeout_s: float = 30.0
    stop_timeout_s: float = 10.0
    python: str = sys.executable
    host: str = field(default=LOOPBACK, init=False)
    """Fixed: the emulator accepts any credentials, so it must never listen beyond loopback."""

    def __post_init__(self) -> None:
        if isinstance(self.port, bool) or not isinstance(self.port, int) or not 0 <= self.port <= 65535:
            raise ValueError(f"invalid EmulatorConfig.port={self.port!r}: allowed 0 (pick a free port) to 65535")
        for name in ("start_timeout_s", "stop_timeout_s"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0 < value <= 600:
                raise ValueError(f"invalid EmulatorConfig.{name}={value!r}: allowed more than 0 up to 600 seconds")
        object.__setattr__(self, "state_dir", Path(self.state_dir))

    @property
    def state_file(self) -> Path:
        return self.state_dir / STATE_FILE_NAME

    @property
    def log_file(self) -> Path:
        return self.state_dir / LOG_FILE_NAME


def port_is_free(port: int, host: str = LOOPBACK) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


class Emulator:
    """One moto server process: ``start()`` (idempotent), ``stop()``, ``endpoint``, ``is_running()``.

    Usable as a context manager; on exit it stops the server only if this object started it, so
    entering on an already running emulator (e.g. one started by ``python -m local up``) leaves it up.
    """

    def __init__(self, config: EmulatorConfig | None = None):
        self.config = config or EmulatorConfig()
        self._process: subprocess.Popen[bytes] | None = None
        self._pid: int | None = None
        self._port: int | None = None
        self._started_here = False
        self._adopt_recorded()

    # ---- public API
    @property
    def endpoint(self) -> str:
        if self._port is None:
            raise EmulatorError("the emulator is not running: start it with `python -m local up`")
        return endpoint_of(self._port)

    @property
    def port(self) -> int | None:
        return self._port

    @property
    def pid(self) -> int | None:
        return self._pid

    def is_running(self) -> bool:
        """The recorded process is alive, is our server, and answers HTTP."""
        if self._pid is None or self._port is None:
            self._adopt_recorded()
        if self._pid is None or self._port is None:
            return False
        return answers(self._pid, self._port)

    def start(self) -> Emulator:
        """Start the server, or reuse the one recorded in the state directory if it still answers."""
        if self.is_running():
            return self
        if self._pid is not None:
            self.stop()  # recorded and alive, but not answering: replace it
        self._forget()
        port = self.config.port
        if port and not port_is_free(port, self.config.host):
            raise EmulatorError(
                f"port {port} on {self.config.host} is already in use by another program, so the emulator "
                f"cannot listen there. Stop that program, or choose another port (`python -m local up "
                f"--port 0` picks a free one; LOCAL_AWS_ENDPOINT=http://127.0.0.1:<port> sets it)."
            )
        attempts = 1 if port else 3  # a picked free port can be taken in between: pick again
        for attempt in range(attempts):
            try:
                self._spawn(port or free_port(self.config.host))
                return self
            except _PortTaken:
                if attempt == attempts - 1:
                    raise EmulatorError(
                        f"could not bind a free port on {self.config.host} after {attempts} "
                        f"attempts; see {self.config.log_file}"
                    ) from None
        return self  # pragma: no cover (loop always returns or raises)

    def stop(self) -> bool:
        """Stop the recorded server by pid (SIGTERM, then SIGKILL). True if a process was stopped."""
        if self._pid is None:
            self._adopt_recorded()
        pid = self._pid
        stopped = False
        if pid is not None and pid_alive(pid) and is_our_server(pid):
            self._signal(pid, signal.SIGTERM)
            if not self._wait_exit(pid, self.config.stop_timeout_s):
                self._signal(pid, signal.SIGKILL)
                if not self._wait_exit(pid, 5.0):
                    raise EmulatorError(f"emulator pid {pid} did not exit after SIGKILL; check `ps -p {pid}`")
            stopped = True
        self._forget()
        return stopped

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.config.log_file.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._started_here:
            self.stop()

    # ---- internals
    def _spawn(self, port: int) -> None:
        cfg = self.config
        cfg.state_dir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
        env["MOTO_IAM_LOAD_MANAGED_POLICIES"] = "true"
        env["PYTHONUNBUFFERED"] = "1"
        env.pop("MOTO_PORT", None)  # the port comes from --port only
        command = [cfg.python, "-m", SERVER_MODULE, "--host", cfg.host, "--port", str(port)]
        with cfg.log_file.open("ab") as log:
            log.write(f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} starting: {' '.join(command)}\n".encode())
            log.flush()
            # Own session: Ctrl-C in the terminal that ran `up` does not reach the server.
            self._process = subprocess.Popen(
                command,
                cwd=REPO_ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._pid, self._port = self._process.pid, port
        self._wait_ready()
        self._started_here = True
        self._record()

    def _wait_ready(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + self.config.start_timeout_s
        url = self.endpoint + READINESS_PATH
        while time.monotonic() < deadline:
            code = self._process.poll()
            if code is not None:
                tail = self.log_tail()
                self._forget()
                if "Address already in use" in tail:
                    raise _PortTaken()
                raise EmulatorError(
                    f"the emulator exited at start (code {code}); last lines of {self.config.log_file}:\n{tail}"
                )
            if http_ok(url, timeout_s=1.0):
                return
            time.sleep(0.1)
        pid = self._pid
        self.stop()
        raise EmulatorError(
            f"the emulator (pid {pid}) did not answer on {url} within "
            f"{self.config.start_timeout_s:.0f} s and was stopped; last lines of "
            f"{self.config.log_file}:\n{self.log_tail()}"
        )

    def _wait_exit(self, pid: int, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process is not None and self._process.pid == pid:
                if self._process.poll() is not None:
                    return True
            elif not pid_alive(pid):
                return True
            time.sleep(0.05)
        return False

    @staticmethod
    def _signal(pid: int, signum: int) -> None:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass

    def _record(self) -> None:
        assert self._pid is not None and self._port is not None
        write_record(self.config.state_dir, self._pid, self._port, self.config.log_file)

    def _adopt_recorded(self) -> None:
        """Load pid/port from the state file if that process is still our server."""
        recorded = recorded_server(self.config.state_dir)
        if recorded is not None:
            self._pid, self._port = recorded

    def _forget(self) -> None:
        if self._process is not None:
            self._process.poll()  # reap it if it has exited
            self._process = None
        self._pid = self._port = None
        self._started_here = False
        try:
            self.config.state_file.unlink()
        except FileNotFoundError:
            pass


class _PortTaken(Exception):
    """Internal: the server lost the race for a picked free port."""
