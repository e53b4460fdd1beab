"""The worker side of the Lambda-like runtime: the zygote process and the containers it forks.

`runtime.py` (the parent side) validates the function's settings and turns them into one `ContainerSpec` per
container; this module carries that spec over the zygote's control socket and runs it. It imports nothing from
the parent side, so the zygote interpreter loads only this module and what it is asked to preload.

A container applies its environment (the function's variables, its own role credentials and Lambda's own
variables) and the resolver shim (the deployed endpoint names mapped to local listeners) before the handler
module is imported, so the handler's import-time code sees the same world as on AWS. Then it narrows what can be
imported to what Lambda offers: the code directory (the unpacked zip, Lambda's ``/var/task``) and the
interpreter's own libraries. The project that runs the runtime (``modules/``, ``local/``) is neither on the path
nor in ``sys.modules`` any more, so a function that imports it fails here as it would on AWS.
"""

from __future__ import annotations

import functools
import importlib
import json
import os
import signal
import site
import socket
import subprocess
import sys
import sysconfig
import threading
import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from local.common.processes import pid_alive

_SHUTDOWN_GRACE_S = 2.0
_ZYGOTE_START_TIMEOUT_S = 30.0
RESOLVER_SHIM_MODULE = "local.data_plane.auth.resolver_shim"
WARM_BOTO3 = f"{__name__}:warm_boto3"
"""A preload entry: boto3's RDS client model parsed once in the zygote (see `warm_boto3`)."""


@dataclass(frozen=True)
class ContainerSpec:
    """Everything one container needs; already validated by the parent (`RuntimeConfig`), sent as JSON.

    `environment` holds the function's variables merged with this container's own (e.g. its role credentials):
    it is never logged or included in `repr`.
    """

    handler: str
    code_dir: str
    function_name: str
    memory_mb: int
    region: str
    environment: Mapping[str, str] = field(default_factory=dict, repr=False)
    address_overrides: tuple[str, ...] = ()
    log_path: str | None = None
    cpu_niceness: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "address_overrides", tuple(self.address_overrides))

    def to_json(self) -> str:
        fields = {name: getattr(self, name) for name in self.__dataclass_fields__}
        return json.dumps({**fields, "environment": dict(self.environment)})

    @classmethod
    def from_json(cls, text: str | bytes) -> ContainerSpec:
        return cls(**json.loads(text))


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


def _prepare_container(spec: ContainerSpec) -> None:
    """Log stream, environment (as Lambda sets it) and name resolution, before any handler code runs."""
    if spec.log_path:
        log_fd = os.open(spec.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        os.close(log_fd)
    os.environ.update(spec.environment)
    os.environ.update(
        AWS_LAMBDA_FUNCTION_NAME=spec.function_name,
        AWS_LAMBDA_FUNCTION_MEMORY_SIZE=str(spec.memory_mb),
        AWS_LAMBDA_FUNCTION_VERSION="$LATEST",
        AWS_REGION=spec.region,
        AWS_DEFAULT_REGION=spec.region,
        LAMBDA_TASK_ROOT=spec.code_dir,
    )
    if spec.address_overrides:
        shim = importlib.import_module(RESOLVER_SHIM_MODULE)
        shim.install(map(shim.AddressOverride.decode, spec.address_overrides))
    isolate_imports(spec.code_dir)


@functools.cache
def interpreter_paths() -> tuple[str, ...]:
    """Where the interpreter's own modules live: the standard library and site-packages (Lambda's runtime has
    its libraries, boto3 among them, on the path too)."""
    names = ("stdlib", "platstdlib", "purelib", "platlib")
    paths = [sysconfig.get_paths()[name] for name in names] + site.getsitepackages()
    version = f"{sys.version_info.major}{sys.version_info.minor}"
    paths.append(os.path.join(sys.base_prefix, "lib", f"python{version}.zip"))  # the standard library's zip
    return tuple(sorted({os.path.realpath(path) for path in paths}))


@functools.cache
def _in_interpreter(path: str) -> bool:
    """Cached per path: the zygote classifies what it loaded once (``classify_loaded_modules``), and every container
    it forks inherits the answers, so isolating a container costs dictionary lookups, not ~1,000 realpath calls."""
    return _under(os.path.realpath(path), interpreter_paths())


def _under(real: str, roots: tuple[str, ...]) -> bool:
    return any(real == root or real.startswith(root + os.sep) for root in roots)


def _locations(module: Any) -> list[str]:
    origin = getattr(module, "__file__", None)
    return [origin] if origin else list(getattr(module, "__path__", []) or [])


def classify_loaded_modules() -> None:
    """Fill ``_in_interpreter``'s cache for the modules and path entries loaded so far (run in the zygote)."""
    for entry in sys.path:
        if entry:
            _in_interpreter(entry)
    for module in list(sys.modules.values()):
        for location in _locations(module):
            _in_interpreter(location)


def isolate_imports(code_dir: str) -> None:
    """Leave importable only ``code_dir`` and the interpreter's libraries; forget modules loaded from elsewhere.

    Modules forgotten here keep working for the code that already holds them (this worker, the resolver shim):
    only new imports of them fail. Libraries the zygote preloaded from site-packages (the MySQL driver, boto3)
    stay loaded: the driver is the same pinned version as the zip's copy, boto3 the one Lambda's runtime ships.
    """
    sys.path[:] = [code_dir, *(entry for entry in sys.path if entry and _in_interpreter(entry))]
    code_root = (os.path.realpath(code_dir),)
    for name, module in list(sys.modules.items()):
        locations = _locations(module)
        if name == "__main__" or not locations:
            continue
        if not all(_in_interpreter(place) or _under(os.path.realpath(place), code_root) for place in locations):
            del sys.modules[name]
    importlib.invalidate_caches()


def container_main(conn: Connection, spec: ContainerSpec) -> None:
    """Body of one container process: init once, then serve invocations until the pipe closes."""
    started = time.perf_counter()
    try:
        _prepare_container(spec)
        module_name, _, func_name = spec.handler.rpartition(".")
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
        context = _LambdaContext(spec.function_name, spec.memory_mb, spec.region, request["id"], request["deadline"])
        try:
            reply = {"result": func(request["event"], context)}
            data = json.dumps(reply).encode()
        except Exception as exc:  # noqa: BLE001 - the handler's (or JSON's) failure becomes Lambda's error document
            data = json.dumps({"error": _error_payload(exc)}).encode()
        conn.send_bytes(data)


def preload(entry: str) -> None:
    """Import `module`, or import `module:function` and call the function (a warm-up run once in the zygote)."""
    module_name, _, function_name = entry.partition(":")
    module = importlib.import_module(module_name)
    if function_name:
        getattr(module, function_name)()


def warm_boto3() -> None:
    """Parse boto3's RDS client model once in the zygote, so each container's first ``boto3.client("rds")``
    costs ~7 ms instead of ~80 ms (100 cold starts at once on 2 cores: seconds).

    The throwaway client gets explicit dummy keys, so the default session caches only models, the client class
    and the shared config file (read once, here): credentials and region are still resolved in each container,
    from its own environment. A failed warm-up is only reported: containers then build everything themselves.
    """
    import boto3  # only zygotes asked to warm boto3 pay for importing it

    try:
        boto3.setup_default_session()
        boto3.client("rds", region_name="us-east-1", aws_access_key_id="warm-up", aws_secret_access_key="warm-up")
    except Exception as exc:  # noqa: BLE001 - an optimisation must not stop the runtime (e.g. a bad AWS_PROFILE)
        boto3.DEFAULT_SESSION = None
        print(f"runtime: boto3 warm-up skipped: {exc!r}", file=sys.stderr)


def zygote_main() -> None:
    """The zygote: preload modules, then fork one container per request on the control socket.

    Requests arrive as one JSON `ContainerSpec` with one passed file descriptor (the container's end of its
    socketpair); the reply is the child's pid. Children are reaped automatically (SIGCHLD ignored),
    and the zygote exits when its control socket closes.
    """
    settings = json.loads(sys.argv[1])
    control = socket.socket(fileno=settings["fd"])
    for entry in settings["preload"]:
        preload(entry)
    classify_loaded_modules()
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
        pid = os.fork()
        if pid == 0:  # the container
            control.close()
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            code = 0
            try:
                spec = ContainerSpec.from_json(message)
                os.nice(spec.cpu_niceness)
                container_main(Connection(fds[0]), spec)
            except BaseException:  # noqa: BLE001 - a container must never return into the zygote loop
                traceback.print_exc()
                code = 1
            finally:
                os._exit(code)
        os.close(fds[0])
        control.sendall(f"{pid}\n".encode())


class ContainerProcess:
    """The parent's handle on one container: its pid, its pipe and its age."""

    __slots__ = ("pid", "conn", "invocations", "started")

    def __init__(self, pid: int, conn: Connection):
        self.pid = pid
        self.conn = conn
        self.invocations = 0
        self.started = time.monotonic()

    def age_s(self) -> float:
        return time.monotonic() - self.started

    def alive(self) -> bool:
        return pid_alive(self.pid)

    def kill(self) -> None:
        self.conn.close()
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


class ZygoteGone(ConnectionError):
    """The zygote process exited, so no container can be forked."""


class Zygote:
    """Parent side of the zygote: one per runtime, started lazily, serialised by a lock."""

    def __init__(self, preload: list[str]):
        self._lock = threading.Lock()
        ours, theirs = socket.socketpair()
        self._control = ours
        self._reader = ours.makefile("rb")
        settings = json.dumps({"preload": preload, "fd": theirs.fileno()})
        path = [p for p in sys.path if p]
        code = f"import sys; sys.path[:0] = {path!r}; from {__name__} import zygote_main; zygote_main()"
        self.process = subprocess.Popen(
            [sys.executable, "-c", code, settings], pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL
        )
        theirs.close()
        ours.settimeout(_ZYGOTE_START_TIMEOUT_S)
        if self._reader.readline() != b"ready\n":
            self.close()
            raise RuntimeError("the runtime's zygote process failed to start (see stderr)")
        ours.settimeout(None)

    def fork(self, spec: ContainerSpec) -> ContainerProcess:
        """Start one container for `spec` (its init runs next; the caller waits for its first message)."""
        parent_end, child_end = socket.socketpair()
        request = spec.to_json().encode()
        try:
            with self._lock:
                socket.send_fds(self._control, [request], [child_end.fileno()])
                line = self._reader.readline()
        except OSError as exc:
            parent_end.close()
            raise ZygoteGone(f"the zygote process is gone: {exc!r}") from exc
        finally:
            child_end.close()
        if not line:
            parent_end.close()
            raise ZygoteGone("the zygote process is gone")
        return ContainerProcess(int(line), Connection(parent_end.detach()))

    def close(self) -> None:
        self._reader.close()
        self._control.close()  # EOF: the zygote exits
        try:
            self.process.wait(_SHUTDOWN_GRACE_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(_SHUTDOWN_GRACE_S)
