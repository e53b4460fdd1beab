"""A Lambda-like runtime: runs one function in a bounded pool of warm worker processes.

Why processes: on 2 cores with a pure-Python MySQL driver, threads would serialise on the GIL, and
real Lambda containers are separate processes that keep module state (one DB connection each)
between invocations. That module state is exactly what exhausts `max_connections` in the experiment,
so each "container" here is a process that imports the handler once and then serves invocations.

Containers are created on demand up to `max_concurrency` and reused LIFO when idle (as Lambda
does). Above the limit an invocation is throttled, not queued. Containers are forked from a small
"zygote" process that has the heavy, function-independent modules (the MySQL driver) preloaded,
so a cold start costs a fork plus the handler's own import rather than a fresh interpreter.
The zygote is our own and not multiprocessing's forkserver, because the forkserver re-runs the
caller's __main__ (pytest, a CLI) in every child and is one global per interpreter.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from types import MappingProxyType
from typing import Any

from local.processes import pid_alive

log = logging.getLogger(__name__)

# Bounds taken from Lambda's own limits.
MAX_TIMEOUT_S = 900.0
MAX_CONCURRENCY = 1000
MEMORY_RANGE_MB = (128, 10240)
INIT_TIMEOUT_S = 10.0  # Lambda's init phase limit.
_SHUTDOWN_GRACE_S = 2.0
_ZYGOTE_START_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class RuntimeConfig:
    """What the runtime needs to run one function.

    `handler` is Lambda's `module.function` string, resolved inside `code_dir` (the unpacked code).
    """

    handler: str
    code_dir: str
    environment: Mapping[str, str] = field(default_factory=dict)
    max_concurrency: int = 100
    timeout_s: float = 3.0
    memory_mb: int = 128
    function_name: str = "local-function"
    region: str = "us-east-1"
    preload_modules: tuple[str, ...] = ()
    log_path: str | None = None
    """Where containers write stdout/stderr (Lambda's CloudWatch log group); None inherits ours."""
    cpu_niceness: int = 5
    """Containers run at a lower CPU priority than the shared DB and proxy: on AWS they are on other hosts,
    so one laptop's 100 busy containers must not starve the single proxy/DB processes both paths share."""

    def __post_init__(self) -> None:
        module, _, func = self.handler.rpartition(".")
        if not module or not func:
            raise ValueError(f"handler={self.handler!r}: expected 'module.function'")
        if not os.path.isdir(self.code_dir):
            raise ValueError(f"code_dir={self.code_dir!r}: not a directory")
        if not 0 <= self.cpu_niceness <= 19:
            raise ValueError(f"cpu_niceness={self.cpu_niceness}: must be in 0..19")
        if not 1 <= self.max_concurrency <= MAX_CONCURRENCY:
            raise ValueError(f"max_concurrency={self.max_concurrency}: must be in 1..{MAX_CONCURRENCY}")
        if not 0 < self.timeout_s <= MAX_TIMEOUT_S:
            raise ValueError(f"timeout_s={self.timeout_s}: must be in (0, {MAX_TIMEOUT_S}]")
        low, high = MEMORY_RANGE_MB
        if not low <= self.memory_mb <= high:
            raise ValueError(f"memory_mb={self.memory_mb}: must be in {low}..{high}")
        bad = {k: v for k, v in self.environment.items() if not isinstance(k, str) or not isinstance(v, str)}
        if bad:
            raise ValueError(f"environment={bad!r}: keys and values must be strings")
        object.__setattr__(self, "environment", MappingProxyType(dict(self.environment)))
        object.__setattr__(self, "preload_modules", tuple(self.preload_modules))


class InvocationError(Exception):
    """An invocation that produced no function result; `payload` is Lambda's error document."""

    def __init__(self, payload: dict[str, Any]):
        super().__init__(payload.get("errorMessage", "invocation failed"))
        self.payload = payload

    @property
    def error_type(self) -> str:
        return str(self.payload.get("errorType", type(self).__name__))


class FunctionError(InvocationError):
    """The handler raised, or its init failed, or its result was not JSON (Lambda's 'Unhandled')."""


class FunctionTimeout(InvocationError):
    """The handler ran past the function timeout; the container was killed, as Lambda does."""


class ContainerCrashed(InvocationError):
    """The worker process died during the invocation (e.g. os._exit, segfault, OOM kill)."""


class Throttled(InvocationError):
    """All `max_concurrency` containers are busy (Lambda's 429 TooManyRequestsException)."""


@dataclass(frozen=True)
class RuntimeStats:
    containers_created: int
    cold_starts: int
    invocations: int
    errors: int
    throttles: int
    timeouts: int
    live_containers: int
    busy_containers: int
    peak_concurrency: int


class _LambdaContext:
    """The subset of Lambda's context object that handlers commonly use."""

    def __init__(self, name: str, memory_mb: int, region: str, request_id: str, deadline: float):
        self.function_name = name
        self.function_version = "$LATEST"
        self.memory_limit_in_mb = memory_mb
        self.invoked_function_arn = f"arn:aws:lambda:{region}:000000000000:function:{name}"
        self.aws_request_id = request_id
        self.log_group_name = f"/aws/lambda/{name}"
        self.log_stream_name = "local"
        self._deadline = deadline

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.time()) * 1000))


def _error_payload(exc: BaseException) -> dict[str, Any]:
    return {
        "errorMessage": str(exc),
        "errorType": type(exc).__name__,
        "stackTrace": traceback.format_exception(exc)[-5:],
    }


def _container_main(conn: Connection, config: RuntimeConfig, environment: dict[str, str]) -> None:
    """Body of one container process: init once, then serve invocations until the pipe closes."""
    if config.log_path:
        log_fd = os.open(config.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        os.close(log_fd)
    os.environ.update(environment)
    os.environ.update(
        AWS_LAMBDA_FUNCTION_NAME=config.function_name,
        AWS_LAMBDA_FUNCTION_MEMORY_SIZE=str(config.memory_mb),
        AWS_LAMBDA_FUNCTION_VERSION="$LATEST",
        AWS_REGION=config.region,
        AWS_DEFAULT_REGION=config.region,
        LAMBDA_TASK_ROOT=config.code_dir,
    )
    sys.path.insert(0, config.code_dir)
    module_name, _, func_name = config.handler.rpartition(".")
    started = time.perf_counter()
    try:
        func = getattr(importlib.import_module(module_name), func_name)
    except BaseException as exc:  # noqa: BLE001 - any init failure (incl. SystemExit) is reported to the parent
        conn.send_bytes(json.dumps({"init_error": _error_payload(exc)}).encode())
        return
    conn.send_bytes(json.dumps({"ready_ms": (time.perf_counter() - started) * 1000}).encode())
    while True:
        try:
            raw = conn.recv_bytes()
        except (EOFError, OSError):
            return
        request = json.loads(raw)
        context = _LambdaContext(
            config.function_name, config.memory_mb, config.region, request["id"], request["deadline"]
        )
        try:
            reply = {"result": func(request["event"], context)}
            data = json.dumps(reply).encode()
        except Exception as exc:  # noqa: BLE001 - the handler's (or JSON's) failure becomes Lambda's error document
            data = json.dumps({"error": _error_payload(exc)}).encode()
        conn.send_bytes(data)


class _Container:
    __slots__ = ("pid", "conn", "invocations")

    def __init__(self, pid: int, conn: Connection):
        self.pid = pid
        self.conn = conn
        self.invocations = 0

    def alive(self) -> bool:
        return pid_alive(self.pid)

    def kill(self) -> None:
        self.conn.close()
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _zygote_main() -> None:
    """The zygote: preload modules, then fork one container per request on the control socket.

    Requests arrive as one JSON line with one passed file descriptor (the container's end of its
    socketpair); the reply is the child's pid. Children are reaped automatically (SIGCHLD ignored),
    and the zygote exits when its control socket closes.
    """
    spec = json.loads(sys.argv[1])
    control = socket.socket(fileno=spec["fd"])
    for name in spec["preload"]:
        importlib.import_module(name)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    # Ctrl-C reaches the whole process group; the parent shuts containers down in order instead.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    control.sendall(b"ready\n")
    while True:
        try:
            message, fds, _flags, _addr = socket.recv_fds(control, 1 << 20, 1)
        except OSError:
            return
        if not message:
            return
        request = json.loads(message)
        pid = os.fork()
        if pid == 0:  # the container
            control.close()
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            code = 0
            try:
                config = RuntimeConfig(**{**request["config"], "environment": {}})
                os.nice(config.cpu_niceness)
                _container_main(Connection(fds[0]), config, request["environment"])
            except BaseException:  # noqa: BLE001 - a container must never return into the zygote loop
                traceback.print_exc()
                code = 1
            finally:
                os._exit(code)
        os.close(fds[0])
        control.sendall(f"{pid}\n".encode())


class _Zygote:
    """Parent side of the zygote: one per runtime, started lazily, serialised by a lock."""

    def __init__(self, preload: list[str]):
        self._lock = threading.Lock()
        ours, theirs = socket.socketpair()
        self._control = ours
        self._reader = ours.makefile("rb")
        spec = json.dumps({"preload": preload, "fd": theirs.fileno()})
        path = [p for p in sys.path if p]
        code = f"import sys; sys.path[:0] = {path!r}; from local.data_plane.runtime import _zygote_main; _zygote_main()"
        self.process = subprocess.Popen(
            [sys.executable, "-c", code, spec], pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL
        )
        theirs.close()
        ours.settimeout(_ZYGOTE_START_TIMEOUT_S)
        if self._reader.readline() != b"ready\n":
            self.close()
            raise RuntimeError("the runtime's zygote process failed to start (see stderr)")
        ours.settimeout(None)

    def fork(self, config: RuntimeConfig, environment: dict[str, str]) -> _Container:
        parent_end, child_end = socket.socketpair()
        fields = {name: getattr(config, name) for name in config.__dataclass_fields__ if name != "environment"}
        request = json.dumps({"config": fields, "environment": environment}).encode()
        try:
            with self._lock:
                socket.send_fds(self._control, [request], [child_end.fileno()])
                line = self._reader.readline()
        finally:
            child_end.close()
        if not line:
            parent_end.close()
            raise ContainerCrashed({"errorType": "Runtime.ExitError", "errorMessage": "the zygote process is gone"})
        return _Container(int(line), Connection(parent_end.detach()))

    def close(self) -> None:
        self._reader.close()
        self._control.close()  # EOF: the zygote exits
        try:
            self.process.wait(_SHUTDOWN_GRACE_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(_SHUTDOWN_GRACE_S)


class LambdaRuntime:
    """Thread-safe `invoke(event) -> result` over a pool of warm containers. Use as a context manager."""

    def __init__(self, config: RuntimeConfig):
        self.config = config
        self._preload = ["local.data_plane.runtime", *config.preload_modules]
        self._zygote: _Zygote | None = None
        self._zygote_lock = threading.Lock()
        self._lock = threading.Lock()
        self._idle: list[_Container] = []  # LIFO: the most recently used container is reused first
        self._all: set[_Container] = set()
        self._reserved = 0  # slots held by containers being created
        self._closed = False
        self._counts = dict(containers_created=0, cold_starts=0, invocations=0, errors=0, throttles=0, timeouts=0)
        self._peak = 0
        self._busy = 0
        self.init_durations_ms: list[float] = []

    # --- pool management -------------------------------------------------------------------
    def _acquire(self) -> tuple[_Container | None, bool]:
        """Return (idle container, False), or (None, True) with a slot reserved for a cold start."""
        with self._lock:
            if self._closed:
                raise RuntimeError("runtime is closed")
            if self._idle:
                container = self._idle.pop()
                self._note_busy(+1)
                return container, False
            if len(self._all) + self._reserved >= self.config.max_concurrency:
                self._counts["throttles"] += 1
                raise Throttled(
                    {
                        "errorType": "TooManyRequestsException",
                        "errorMessage": f"Rate Exceeded: all {self.config.max_concurrency} containers busy",
                    }
                )
            self._reserved += 1
            self._note_busy(+1)
            return None, True

    def _note_busy(self, delta: int) -> None:
        self._busy += delta
        self._peak = max(self._peak, self._busy)

    def _get_zygote(self) -> _Zygote:
        with self._zygote_lock:
            if self._zygote is None:
                self._zygote = _Zygote(self._preload)
            return self._zygote

    def _create(self) -> _Container:
        container = self._get_zygote().fork(self.config, dict(self.config.environment))
        parent_end = container.conn
        try:
            if not parent_end.poll(INIT_TIMEOUT_S):
                raise FunctionTimeout({"errorType": "Runtime.InitTimeout", "errorMessage": "init phase timed out"})
            message = json.loads(parent_end.recv_bytes())
        except (EOFError, OSError) as exc:
            container.kill()
            raise ContainerCrashed(
                {"errorType": "Runtime.ExitError", "errorMessage": f"container died in init: {exc!r}"}
            ) from exc
        except InvocationError:
            container.kill()
            raise
        if "init_error" in message:
            container.kill()
            raise FunctionError(message["init_error"])
        with self._lock:
            self.init_durations_ms.append(message["ready_ms"])
        return container

    def _release(self, container: _Container | None, healthy: bool, was_cold: bool) -> None:
        with self._lock:
            self._note_busy(-1)
            if was_cold:
                self._reserved -= 1
                if container is not None:
                    self._all.add(container)
            if healthy and container is not None and not self._closed:
                self._idle.append(container)
                return
            if container is not None:
                self._all.discard(container)
        if container is not None and (not healthy or self._closed):
            container.kill()

    # --- public API ------------------------------------------------------------------------
    def invoke(self, event: Mapping[str, Any], request_id: str | None = None) -> Any:
        """Run the handler on `event` in a container; return its JSON result or raise InvocationError."""
        container, cold = self._acquire()
        healthy = False
        try:
            if cold:
                with self._lock:
                    self._counts["cold_starts"] += 1
                container = self._create()
                with self._lock:
                    self._counts["containers_created"] += 1
            with self._lock:
                self._counts["invocations"] += 1
            result = self._run(container, event, request_id or str(uuid.uuid4()))
            healthy = True
            return result
        except FunctionError:
            healthy = container is not None and container.alive()
            with self._lock:
                self._counts["errors"] += 1
            raise
        except InvocationError as exc:
            with self._lock:
                self._counts["errors"] += 1
                if isinstance(exc, FunctionTimeout):
                    self._counts["timeouts"] += 1
            raise
        finally:
            self._release(container, healthy, cold)

    def _run(self, container: _Container, event: Mapping[str, Any], request_id: str) -> Any:
        started = time.time()
        deadline = started + self.config.timeout_s
        container.invocations += 1
        try:
            container.conn.send_bytes(json.dumps({"id": request_id, "deadline": deadline, "event": event}).encode())
            if not container.conn.poll(self.config.timeout_s):
                elapsed = time.time() - started
                self._log_timeout(started + elapsed, request_id, elapsed)
                raise FunctionTimeout(
                    {
                        "errorType": "Sandbox.Timedout",
                        "errorMessage": f"{request_id} Task timed out after {self.config.timeout_s:.2f} seconds",
                    }
                )
            reply = json.loads(container.conn.recv_bytes())
        except (EOFError, OSError) as exc:
            raise ContainerCrashed(
                {"errorType": "Runtime.ExitError", "errorMessage": f"container exited during invocation: {exc!r}"}
            ) from exc
        if "error" in reply:
            raise FunctionError(reply["error"])
        return reply["result"]

    def _log_timeout(self, now: float, request_id: str, elapsed: float) -> None:
        """Lambda's own line for a timed-out invocation, so a stalled DB shows up in the logs, not just as 502s.

        It goes to our logger (stderr unless logging is configured) and, like Lambda's CloudWatch stream, to
        the function's log file when there is one. The container is killed by the caller (`_release`).
        """
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}Z"
        line = f"{stamp} {request_id} Task timed out after {elapsed:.2f} seconds"
        log.warning(line)
        if self.config.log_path:
            try:
                with open(self.config.log_path, "a") as out:
                    out.write(line + "\n")
            except OSError as exc:
                log.warning("could not append to %s: %s", self.config.log_path, exc)

    def stats(self) -> RuntimeStats:
        with self._lock:
            return RuntimeStats(
                **self._counts,
                live_containers=len(self._all),
                busy_containers=self._busy,
                peak_concurrency=self._peak,
            )

    def close(self) -> None:
        """Stop all containers: idle ones now, busy ones when their invocation returns."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
            for container in idle:
                self._all.discard(container)
        for container in idle:
            container.conn.close()  # EOF lets the container exit on its own
        deadline = time.monotonic() + _SHUTDOWN_GRACE_S
        for container in idle:
            while container.alive() and time.monotonic() < deadline:
                time.sleep(0.01)
            container.kill()
        with self._zygote_lock:
            zygote, self._zygote = self._zygote, None
        if zygote is not None:
            zygote.close()

    def __enter__(self) -> LambdaRuntime:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
