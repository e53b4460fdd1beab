"""A Lambda-like runtime: runs one function in a bounded pool of warm worker processes.

Why processes: on 2 cores with a pure-Python MySQL driver, threads would serialise on the GIL, and
real Lambda containers are separate processes that keep module state (one DB connection each)
between invocations. That module state is exactly what exhausts `max_connections` in the experiment,
so each "container" here is a process that imports the handler once and then serves invocations.

Containers are created on demand up to `max_concurrency`, reused LIFO when idle and retired at
`max_container_age_s` (as Lambda does). Above the limit an invocation is throttled, not queued.
Containers are forked from a small "zygote" process that has the heavy, function-independent
modules (the MySQL driver, boto3) preloaded, so a cold start costs a fork plus the handler's own
import rather than a fresh interpreter.
The zygote is our own and not multiprocessing's forkserver, because the forkserver re-runs the
caller's __main__ (pytest, a CLI) in every child and is one global per interpreter. The zygote and
the containers are in `runtime_worker`; this module is the parent side.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from local.data_plane.auth.resolver_shim import AddressOverride
from local.data_plane.cold_starts import DEFAULT_CONCURRENT_COLD_STARTS, DEFAULT_TURN_S, ColdStartTurns
from local.data_plane.runtime_outcomes import (
    ContainerCrashed,
    FunctionError,
    FunctionTimeout,
    InvocationError,
    RuntimeStats,
    Throttled,
)
from local.data_plane.runtime_worker import (
    RESOLVER_SHIM_MODULE,
    ContainerProcess,
    ContainerSpec,
    Zygote,
    ZygoteGone,
)
from modules.validation import SettingsError

log = logging.getLogger(__name__)

# Bounds taken from Lambda's own limits.
MAX_TIMEOUT_S = 900.0
MAX_CONCURRENCY = 1000
MEMORY_RANGE_MB = (128, 10240)
INIT_TIMEOUT_S = 10.0  # Lambda's init phase limit.
_SHUTDOWN_GRACE_S = 2.0
DEFAULT_REGION = "us-east-1"
DEFAULT_MAX_CONTAINER_AGE_S = 11.5 * 3600
"""A bit under the 12 h the execution role's credentials last (`auth.credentials.IssuerSettings.lifetime_s`)."""
MAX_CONTAINER_AGE_S = 12 * 3600.0
_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d{1,2}$")
_PRELOAD = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*(:[A-Za-z_]\w*)?$")


@dataclass(frozen=True)
class RuntimeConfig:
    """What the runtime needs to run one function.

    `handler` is Lambda's `module.function` string, resolved inside `code_dir` (the unpacked code, Lambda's
    /var/task): containers import only from there and from the interpreter's libraries, never from the project.
    """

    handler: str
    code_dir: str
    environment: Mapping[str, str] = field(default_factory=dict)
    max_concurrency: int = 100
    timeout_s: float = 3.0
    memory_mb: int = 128
    function_name: str = "local-function"
    region: str | None = None
    """The function's region, set as AWS_REGION/AWS_DEFAULT_REGION in containers (Lambda sets them itself);
    None: the environment's AWS_REGION, else us-east-1."""
    preload_modules: tuple[str, ...] = ()
    """Imported once in the zygote; `module:function` also calls the function there (`runtime_worker.WARM_BOTO3`)."""
    log_path: str | None = None
    """Where containers write stdout/stderr (Lambda's CloudWatch log group); None inherits ours."""
    cpu_niceness: int = 5
    """Containers run at a lower CPU priority than the shared DB and proxy: on AWS they are on other hosts,
    so one laptop's 100 busy containers must not starve the single proxy/DB processes both paths share."""
    address_overrides: tuple[str, ...] = ()
    """Encoded `resolver_shim.AddressOverride`s (`host:port=ip:port`) installed in each container before the
    handler is imported: the deployed endpoint names reach local listeners, TLS still sees those names."""
    max_container_age_s: float = DEFAULT_MAX_CONTAINER_AGE_S
    """Containers are retired at this age (on their next use), as Lambda recycles execution environments
    before the role credentials they were given expire."""
    max_concurrent_cold_starts: int = DEFAULT_CONCURRENT_COLD_STARTS
    """Cold starts (init, then the start of the first invocation, which opens the DB connection) that run at once;
    the others wait their turn, each for its own new container (one request per container, as on Lambda); see
    `cold_starts`. Default: 2 x CPU cores."""
    cold_start_turn_s: float = DEFAULT_TURN_S
    """Longest a first invocation keeps its cold start's turn. Default: 0.5 s."""

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
        for entry in self.preload_modules:
            if not isinstance(entry, str) or not _PRELOAD.match(entry):
                raise SettingsError("preload_modules", entry, "dotted module names, optionally :function")
        if self.region is not None and not (isinstance(self.region, str) and _REGION.match(self.region)):
            raise SettingsError("region", self.region, "an AWS region name such as ap-northeast-1, or None")
        if isinstance(self.address_overrides, str):
            raise SettingsError("address_overrides", self.address_overrides, "a list of host:port=ip:port")
        overrides = tuple(AddressOverride.decode(text).encode() for text in self.address_overrides)
        object.__setattr__(self, "address_overrides", overrides)
        age = self.max_container_age_s
        if isinstance(age, bool) or not isinstance(age, (int, float)) or not 0 < age <= MAX_CONTAINER_AGE_S:
            raise SettingsError("max_container_age_s", age, f"seconds in (0, {MAX_CONTAINER_AGE_S:.0f}]")
        cold = self.max_concurrent_cold_starts
        if isinstance(cold, bool) or not isinstance(cold, int) or not 1 <= cold <= MAX_CONCURRENCY:
            raise SettingsError("max_concurrent_cold_starts", cold, f"an integer from 1 to {MAX_CONCURRENCY}")
        turn = self.cold_start_turn_s
        if isinstance(turn, bool) or not isinstance(turn, (int, float)) or not 0.01 <= turn <= INIT_TIMEOUT_S:
            raise SettingsError("cold_start_turn_s", turn, f"seconds from 0.01 to {INIT_TIMEOUT_S:g}")

    @property
    def effective_region(self) -> str:
        return self.region or self.environment.get("AWS_REGION", DEFAULT_REGION)

    def container_spec(self, environment: Mapping[str, str]) -> ContainerSpec:
        """What one container runs: these settings with `environment` (the function's plus its own)."""
        shared = {name: getattr(self, name) for name in ContainerSpec.__dataclass_fields__}
        return ContainerSpec(**{**shared, "region": self.effective_region, "environment": dict(environment)})


class LambdaRuntime:
    """Thread-safe `invoke(event) -> result` over a pool of warm containers. Use as a context manager."""

    def __init__(
        self, config: RuntimeConfig, container_environment: Callable[[], Mapping[str, str]] | None = None
    ) -> None:
        """`container_environment` gives each new container its own variables on top of the function's, as
        Lambda gives each execution environment the execution role's temporary credentials."""
        self.config = config
        self._container_environment = container_environment
        shim = [RESOLVER_SHIM_MODULE] if config.address_overrides else []
        self._preload = list(dict.fromkeys([*config.preload_modules, *shim]))
        self._zygote: Zygote | None = None
        self._zygote_lock = threading.Lock()
        self._lock = threading.Lock()
        self._idle: list[ContainerProcess] = []  # LIFO: the most recently used container is reused first
        self._all: set[ContainerProcess] = set()
        self._reserved = 0  # slots held by containers being created
        self._closed = False
        self._counts = dict(
            containers_created=0, cold_starts=0, invocations=0, errors=0, throttles=0, timeouts=0, retired=0
        )
        self._peak = 0
        self._busy = 0
        self.init_durations_ms: list[float] = []
        self._cold_starts = ColdStartTurns(config.max_concurrent_cold_starts, config.cold_start_turn_s)
        self._first_invocation_at: float | None = None
        self._last_cold_start_done_at: float | None = None

    # --- pool management -------------------------------------------------------------------
    def _acquire(self) -> tuple[ContainerProcess | None, bool]:
        """Return (idle container, False), or (None, True) with a slot reserved for a cold start.

        Idle containers past `max_container_age_s` are retired on the way, so their slots go to new ones.
        """
        retired: list[ContainerProcess] = []
        try:
            with self._lock:
                if self._closed:
                    raise RuntimeError("runtime is closed")
                while self._idle:
                    container = self._idle.pop()
                    if container.age_s() < self.config.max_container_age_s:
                        self._note_busy(+1)
                        return container, False
                    retired.append(container)
                    self._all.discard(container)
                    self._counts["retired"] += 1
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
        finally:
            for container in retired:
                container.kill()

    def _note_busy(self, delta: int) -> None:
        self._busy += delta
        self._peak = max(self._peak, self._busy)

    def prepare(self) -> LambdaRuntime:
        """Start the zygote now: the runtime's own set-up (Lambda has none), not the first request's cold start."""
        self._get_zygote()
        return self

    def _get_zygote(self) -> Zygote:
        with self._zygote_lock:
            if self._zygote is None:
                self._zygote = Zygote(self._preload)
            return self._zygote

    def _new_environment(self) -> dict[str, str]:
        """The function's variables plus this container's own (never logged: they hold credentials)."""
        environment = dict(self.config.environment)
        if self._container_environment is not None:
            own = dict(self._container_environment())
            bad = sorted(repr(k) for k, v in own.items() if not isinstance(k, str) or not isinstance(v, str))
            if bad:
                raise SettingsError("container_environment", bad, "string values for these variables")
            environment.update(own)
        return environment

    def _create(self) -> ContainerProcess:
        try:
            container = self._get_zygote().fork(self.config.container_spec(self._new_environment()))
        except ZygoteGone as exc:
            raise ContainerCrashed({"errorType": "Runtime.ExitError", "errorMessage": str(exc)}) from exc
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

    def _release(self, container: ContainerProcess | None, healthy: bool, was_cold: bool) -> None:
        with self._lock:
            self._note_busy(-1)
            if was_cold:
                self._reserved -= 1
                if container is not None:
                    self._all.add(container)
            if healthy and container is not None and not self._closed:
                if container.age_s() < self.config.max_container_age_s:
                    self._idle.append(container)
                    return
                self._counts["retired"] += 1
            if container is not None:
                self._all.discard(container)
        if container is not None:  # failed, retired, or the runtime is closing
            container.kill()

    # --- public API ------------------------------------------------------------------------
    def invoke(
        self, event: Mapping[str, Any], request_id: str | None = None, on_start: Callable[[], None] | None = None
    ) -> Any:
        """Run the handler on `event` in a container; return its JSON result or raise InvocationError.

        A cold start (no idle container) waits for its turn (`cold_starts`); a warm one never waits. `on_start` is
        called when the turn comes: the caller's clock (API Gateway's integration timeout) starts there, as on AWS a
        cold start never waits for another's.
        """
        with self._lock:
            if self._first_invocation_at is None:
                self._first_invocation_at = time.time()
        container, cold = self._acquire()
        healthy = False
        try:
            with self._cold_starts.turn() if cold else contextlib.nullcontext() as turn:
                if on_start is not None:
                    on_start()
                if cold:
                    with self._lock:
                        self._counts["cold_starts"] += 1
                    container = self._create()
                    with self._lock:
                        self._counts["containers_created"] += 1
                with self._lock:
                    self._counts["invocations"] += 1
                if turn is not None:
                    turn.invocation_started()
                try:
                    result = self._run(container, event, request_id or str(uuid.uuid4()))
                finally:
                    if cold:
                        with self._lock:
                            self._last_cold_start_done_at = time.time()
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

    def _run(self, container: ContainerProcess, event: Mapping[str, Any], request_id: str) -> Any:
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
                first_invocation_at=self._first_invocation_at,
                last_cold_start_done_at=self._last_cold_start_done_at,
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
