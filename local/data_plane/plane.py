"""The local data plane: HTTP API -> Lambda-like runtime -> (RDS Proxy stand-in) -> private MariaDB.

Everything the function and the proxy are configured with comes from the deployed stack
(`local.data_plane.deployed`); only what cannot be the same on one machine is overridden, and every override
is listed in `overrides` so callers can print it:
  - DB_HOST/DB_PORT point at the local proxy or MariaDB instead of the cloud endpoints,
  - DB_AUTH=password with the local DB user's password (no IAM or TLS locally; DB_SSL_CA is dropped).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from local.data_plane import deployed
from modules.project import HANDLER_DIR_NAME, REPO_ROOT
from local.data_plane.deployed import DeployedStack
from local.data_plane.http_api import HttpApi, HttpApiConfig
from local.data_plane.mariadb import MariaDBConfig, MariaDBServer
from local.data_plane.runtime import LambdaRuntime, RuntimeConfig

HANDLER_DIR = REPO_ROOT / HANDLER_DIR_NAME
DEFAULT_DB_MAX_CONNECTIONS = 65  # a db.t2.micro, the reference experiment's DB
DEFAULT_LOCAL_CONCURRENCY = 100  # Lambda's account pool is 1000; 100 processes is what one machine affords
_PROXY_START_TIMEOUT_S = 20.0
# Imported once in the runtime's zygote, not in each of up to 100 containers: they are the MySQL
# driver's (incl. what its first connect imports lazily), not the function's, so cold starts still
# import the handler itself. Saves ~40 ms CPU per container, seconds when 100 start at once on 2 cores.
_DRIVER_MODULES = (
    "mysql.connector",
    "mysql.connector.plugins.mysql_native_password",
    "mysql.connector.plugins.caching_sha2_password",
    "encodings.idna",
    "json",
    "dataclasses",
)


@dataclass(frozen=True)
class DataPlaneConfig:
    """Local-only knobs; everything else comes from the deployed stack."""

    via_proxy: bool = True
    db_max_connections: int = DEFAULT_DB_MAX_CONNECTIONS
    max_concurrency: int | None = None
    """None: the function's reserved concurrency if deployed with one, else DEFAULT_LOCAL_CONCURRENCY."""
    http_port: int = 0
    handler_dir: str = str(HANDLER_DIR)
    function_log: str | None = None
    """File for the function's stdout/stderr (its CloudWatch log group); None prints them to ours."""

    def __post_init__(self) -> None:
        if not 10 <= self.db_max_connections <= 100_000:
            raise ValueError(f"db_max_connections={self.db_max_connections}: must be in 10..100000")
        if self.max_concurrency is not None and not 1 <= self.max_concurrency <= 1000:
            raise ValueError(f"max_concurrency={self.max_concurrency}: must be in 1..1000")
        if not 0 <= self.http_port <= 65535:
            raise ValueError(f"http_port={self.http_port}: must be in 0..65535 (0 picks a free port)")


def local_environment(stack: DeployedStack, host: str, port: int, password: str) -> tuple[dict[str, str], dict[str, str]]:
    """The function's deployed environment with the unavoidable local overrides; returns (env, overrides)."""
    env = dict(stack.function.environment)
    overrides = {"DB_HOST": host, "DB_PORT": str(port), "DB_AUTH": "password", "DB_PASSWORD": "<local db password>"}
    env.update(DB_HOST=host, DB_PORT=str(port), DB_AUTH="password", DB_PASSWORD=password)
    if env.pop("DB_SSL_CA", None) is not None:
        overrides["DB_SSL_CA"] = "<removed: no TLS locally>"
    missing = [name for name in stack.unresolved if name not in overrides]
    if missing:
        raise deployed.DeployedStateError(
            f"{stack.source}: environment variables {missing} are Terraform references that are only known after "
            "apply; run `python -m local deploy` and drop --settings-from-synth."
        )
    return env, overrides


def proxy_config(stack: DeployedStack, db: MariaDBServer, db_max_connections: int, client_user: str,
                 client_password: str):
    """The RDS Proxy stand-in's settings: the deployed pool settings in front of the local DB."""
    from local.data_plane.rdsproxy.config import ProxyConfig  # the proxy package is optional for the direct path

    pool = stack.pool
    return ProxyConfig(
        backend_host=db.host,
        backend_port=db.port,
        backend_user=db.app_user,
        backend_password=db.app_password,
        client_user=client_user,
        client_password=client_password,
        db_max_connections=db_max_connections,
        max_connections_percent=pool.max_connections_percent,
        max_idle_connections_percent=pool.max_idle_connections_percent,
        connection_borrow_timeout=float(pool.connection_borrow_timeout),
        idle_client_timeout=float(pool.idle_client_timeout),
        init_query=pool.init_query or "",
        session_pinning_filters=frozenset(pool.session_pinning_filters),
        stats_port=0,
    )


class LocalDataPlane:
    """Starts and stops the whole local path in order; use as a context manager."""

    def __init__(self, stack: DeployedStack, config: DataPlaneConfig | None = None):
        self.stack = stack
        self.config = config or DataPlaneConfig()
        self.db: MariaDBServer | None = None
        self.proxy: Any = None  # local.data_plane.rdsproxy.ProxyProcess on the proxy path
        self.runtime: LambdaRuntime | None = None
        self.api: HttpApi | None = None
        self.overrides: dict[str, str] = {}

    @property
    def url(self) -> str:
        assert self.api is not None, "not started"
        return self.api.url

    @property
    def max_concurrency(self) -> int:
        if self.config.max_concurrency is not None:
            return self.config.max_concurrency
        return self.stack.function.reserved_concurrency or DEFAULT_LOCAL_CONCURRENCY

    @property
    def pool_cap(self) -> int:
        return self.stack.pool.pool_cap(self.config.db_max_connections)

    def start(self) -> "LocalDataPlane":
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        env = self.stack.function.environment
        self.db = MariaDBServer(
            MariaDBConfig(
                max_connections=self.config.db_max_connections,
                database=env.get("DB_NAME", "app"),
                app_user=env.get("DB_USER", "app"),
            )
        ).start()
        host, port = self.db.host, self.db.port
        if self.config.via_proxy:
            from local.data_plane.rdsproxy import ProxyProcess

            self.proxy = ProxyProcess(proxy_config(
                self.stack, self.db, self.config.db_max_connections, self.db.app_user, self.db.app_password
            )).start(timeout=_PROXY_START_TIMEOUT_S)
            port = self.proxy.port
        environment, self.overrides = local_environment(self.stack, host, port, self.db.app_password)
        function = self.stack.function
        self.runtime = LambdaRuntime(
            RuntimeConfig(
                handler=function.handler,
                code_dir=self.config.handler_dir,
                environment=environment,
                max_concurrency=self.max_concurrency,
                timeout_s=float(function.timeout_s),
                memory_mb=function.memory_mb,
                function_name=function.function_name,
                region=environment.get("AWS_REGION", "us-east-1"),
                preload_modules=_DRIVER_MODULES,
                log_path=self.config.function_log,
            )
        )
        self.api = HttpApi(self.runtime.invoke, HttpApiConfig(port=self.config.http_port, route_keys=self.stack.route_keys))
        self.api.start()

    def stop(self) -> None:
        """Stop front to back so no request reaches a component that is already gone."""
        for name in ("api", "runtime"):
            component = getattr(self, name)
            setattr(self, name, None)
            if component is not None:
                component.close()
        if self.proxy is not None:
            self.proxy.stop()
            self.proxy = None
        if self.db is not None:
            self.db.stop()
            self.db = None

    def describe(self) -> str:
        lines = [
            f"settings from: {self.stack.source}",
            f"function: {self.stack.function.function_name} ({self.stack.function.handler}), "
            f"timeout {self.stack.function.timeout_s}s, up to {self.max_concurrency} containers",
            f"database: MariaDB 127.0.0.1:{self.db.port if self.db else '?'} max_connections={self.config.db_max_connections}",
        ]
        if self.proxy is not None:
            pool = self.stack.pool
            lines.append(
                f"proxy: 127.0.0.1:{self.proxy.port} pool cap {self.pool_cap} "
                f"({pool.max_connections_percent}% of {self.config.db_max_connections}), "
                f"borrow timeout {pool.connection_borrow_timeout}s, idle client timeout {pool.idle_client_timeout}s"
            )
        else:
            lines.append("proxy: none (handler connects directly to the DB)")
        lines.append("local overrides of the deployed environment: "
                     + ", ".join(f"{k}={v}" for k, v in sorted(self.overrides.items())))
        return "\n".join(lines)

    def __enter__(self) -> "LocalDataPlane":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def add_settings_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stack", default=deployed.DEFAULT_STACK, help="CDKTF stack name (default: local)")
    parser.add_argument("--settings-from-synth", action="store_true",
                        help="read settings from cdktf.out/stacks/<stack>/cdk.tf.json instead of the deployed state")
    parser.add_argument("--max-connections", type=int, default=DEFAULT_DB_MAX_CONNECTIONS,
                        help="the local DB's max_connections (default 65, like a db.t2.micro)")
    parser.add_argument("--max-concurrency", type=int, default=None,
                        help=f"most containers (default: reserved concurrency, else {DEFAULT_LOCAL_CONCURRENCY})")


def configure_serve(parser: argparse.ArgumentParser) -> None:
    """Options of `python -m local serve`."""
    add_settings_arguments(parser)
    parser.add_argument("--http-port", type=int, default=0, help="HTTP port (default: a free one)")
    parser.add_argument("--direct", action="store_true", help="connect the handler directly to the DB (no proxy)")


def run_serve(args: argparse.Namespace) -> int:
    """`python -m local serve`: run the app locally until Ctrl-C or SIGTERM."""
    try:
        stack = deployed.load(args.stack, settings_from_synth=args.settings_from_synth)
    except deployed.DeployedStateError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    config = DataPlaneConfig(via_proxy=not args.direct, db_max_connections=args.max_connections,
                             max_concurrency=args.max_concurrency, http_port=args.http_port)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with LocalDataPlane(stack, config) as plane:
        print(plane.describe())
        print(f"serving {plane.url}/  (Ctrl-C stops everything)", flush=True)
        try:
            while not stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
        print("stopping...", flush=True)
    return 0
