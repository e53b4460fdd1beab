"""The local data plane: HTTP API -> Lambda-like runtime -> (RDS Proxy stand-in) -> MariaDB.

Everything the function and the proxy are configured with comes from the deployed stack
(`local.data_plane.deployed`); only what cannot be the same on one machine differs, and every difference is
listed in `overrides` so callers can print it. Through the proxy of a deployed stack whose proxy requires IAM auth,
the function runs the cloud's path (`production_auth`): an IAM token over verified TLS, the endpoint name resolved
to the local stand-in and ``DB_SSL_CA`` pointing at the local CA are the only differences. Otherwise (``--direct``,
password mode, or settings from synth, which know no ``prx-`` id yet): DB_HOST/DB_PORT point at the local proxy or
MariaDB and DB_AUTH=password with the application user's password (`db_access`).

Before the function serves, the DB gets the schema and the application user as the deploy's migrator gives them
(`migration`, `db_access`); the function logs in as the application user, the migrator as the master.
With `DataPlaneConfig.persistent_db` the DB is the stack's persistent local DB instance
(`local.data_plane.local_instance`); without it, a throw-away server (tests, the load experiment).
A `Supervisor` restarts a DB or proxy child that dies; both die with this process (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from handler import app_contract as names
from local.common.ports import LocalPorts, require_free
from local.data_plane import db_access, migration, plane_report
from local.data_plane.deployed import DeployedStack, ThrottleSettings
from local.data_plane.http_api import HttpApi, HttpApiConfig
from local.data_plane.local_instance import OpenedInstance, PersistentDb, open_instance
from local.data_plane.mariadb import MariaDBConfig, MariaDBServer
from local.data_plane.migration import DbUsers
from local.data_plane.production_auth import ProductionAuth
from local.data_plane.runtime import LambdaRuntime, RuntimeConfig
from local.data_plane.runtime_worker import WARM_BOTO3
from local.data_plane.supervisor import Child, Supervisor, stderr_log
from local.data_plane.task_root import unpacked_handler
from modules.project import HANDLER_DIR_NAME, REPO_ROOT

if TYPE_CHECKING:
    from local.data_plane.rdsproxy.accounts import Account
    from local.data_plane.rdsproxy.config import ProxyConfig

HANDLER_DIR = REPO_ROOT / HANDLER_DIR_NAME
"""The ``handler`` package's source; the runtime imports it from the deployment zip built from it (``task_root``)."""
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
    "mysql.connector.plugins.mysql_clear_password",
    "boto3",
    WARM_BOTO3,  # one RDS client built in the zygote: a cold start that signs a token costs ~15 ms, not ~100
    # The driver's platform string, cached by the driver itself (lru_cache): computed once here, not by running
    # `lsb_release -a` in every container (a subprocess per cold start that Lambda's image does not have).
    "mysql.connector.utils:get_platform",
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
    ports: LocalPorts | None = None
    """Fixed loopback ports (``serve``: `local.common.ports.stack_ports`); None: free ones (tests, the experiment)."""
    throttling: ThrottleSettings | None = None
    """The HTTP API's token bucket; None: the deployed ``$default`` stage's limits (the account quota if unset)."""
    handler_dir: str = str(HANDLER_DIR)
    function_log: str | None = None
    """File for the function's stdout/stderr (its CloudWatch log group); None prints them to ours."""
    persistent_db: PersistentDb | None = None
    """The deployed instance's persistent local DB; None: a throw-away DB of this data plane's own."""
    supervise: bool = True
    """Restart a DB or proxy child that dies (and log it)."""
    production_auth: bool = True
    """Through the proxy: IAM token + verified TLS as deployed; False: password mode (for comparisons)."""
    local_state_dir: str | None = None
    """Where the local CA and credential issuer keep their files; None: the project's `.local/`."""

    def __post_init__(self) -> None:
        if not 10 <= self.db_max_connections <= 100_000:
            raise ValueError(f"db_max_connections={self.db_max_connections}: must be in 10..100000")
        if self.max_concurrency is not None and not 1 <= self.max_concurrency <= 1000:
            raise ValueError(f"max_concurrency={self.max_concurrency}: must be in 1..1000")


def proxy_config(
    stack: DeployedStack,
    db: MariaDBServer,
    db_max_connections: int,
    accounts: Sequence[Account],
    secrets_endpoint: str = "",
    **client_auth: object,
) -> ProxyConfig:
    """The RDS Proxy stand-in's settings: the deployed pool settings in front of the local DB.

    ``accounts``: one per DB user clients may log in as, like the deployed proxy's ``auth`` blocks: a
    ``SecretAccount`` per secret ARN (read through ``secrets_endpoint``, the emulator, when the stand-in starts), or
    a ``StaticAccount`` for a throw-away DB. ``client_auth``: the client side (``require_tls``, ``iam_state_file``,
    ``ca_dir``, ``issuer_key_path``, as ``ProductionAuth.proxy_fields()`` gives them).
    """
    from local.data_plane.rdsproxy.config import ProxyConfig  # the proxy package is optional for the direct path

    pool = stack.pool
    return ProxyConfig(
        backend_host=db.host,
        backend_port=db.port,
        accounts=tuple(accounts),
        db_max_connections=db_max_connections,
        max_connections_percent=pool.max_connections_percent,
        max_idle_connections_percent=pool.max_idle_connections_percent,
        connection_borrow_timeout=float(pool.connection_borrow_timeout),
        idle_client_timeout=float(pool.idle_client_timeout),
        init_query=pool.init_query or "",
        session_pinning_filters=frozenset(pool.session_pinning_filters),
        stats_port=0,
        secrets_endpoint=secrets_endpoint,
        **client_auth,
    )


class LocalDataPlane:
    """Starts and stops the whole local path in order; use as a context manager."""

    def __init__(
        self, stack: DeployedStack, config: DataPlaneConfig | None = None, log: Callable[[str], None] = stderr_log
    ):
        self.stack = stack
        self.config = config or DataPlaneConfig()
        self.log = log
        self.db: MariaDBServer | None = None
        self.proxy: Any = None  # local.data_plane.proxy_child.SupervisedProxy on the proxy path
        self.runtime: LambdaRuntime | None = None
        self.api: HttpApi | None = None
        self.supervisor: Supervisor | None = None
        self.instance: OpenedInstance | None = None
        self.overrides: dict[str, str] = {}
        self.auth: ProductionAuth | None = None
        self.users = DbUsers("", "")
        """The DB's master and application users (set at start)."""
        self.migration: dict[str, Any] | None = None
        """The migrator's result at start (None: the stack has no migrator)."""
        self._task_root: str | None = None

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

    @property
    def throttling(self) -> ThrottleSettings:
        return self.config.throttling or self.stack.throttling

    def start(self) -> LocalDataPlane:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        persistent = self.config.persistent_db
        if persistent is not None:
            self.instance = open_instance(persistent, self.log)  # ends what a killed serve left on our ports
            for note in self.instance.notes:
                self.log(f"[db] {note}")
            db_config = self.instance.mariadb_config(persistent.instance, self.config.db_max_connections)
        else:
            db_config = MariaDBConfig(
                max_connections=self.config.db_max_connections,
                database=self.stack.function.environment.get(names.DB_NAME, "app"),
                app_user=migration.master_user_of(self.stack, "app"),
                die_with_parent=True,
            )
        ports = self.config.ports
        if ports is not None:
            used = ("http", "db", "db_extra") + (("proxy", "proxy_stats") if self.config.via_proxy else ())
            require_free(ports, used)
            db_config = dataclasses.replace(db_config, port=ports.db, extra_port=ports.db_extra)
        self.db = MariaDBServer(db_config).start()
        self._record("mariadb", self.db.pid)
        if self.config.via_proxy and self.config.production_auth:
            state_dir = self.config.local_state_dir
            self.auth = ProductionAuth.for_stack(self.stack, Path(state_dir) if state_dir else None)
        migrator_differences = self._migrate(persistent)
        host, port = self.db.host, self.db.port
        if self.config.via_proxy:
            secrets_endpoint = persistent.secrets_endpoint if persistent is not None else ""
            accounts = db_access.proxy_accounts(self.stack, persistent, self.users)
            listen = (ports.proxy, ports.proxy_stats) if ports is not None else (0, 0)
            self.proxy = self._start_proxy(accounts, secrets_endpoint, *listen)
            self._record("rdsproxy", self.proxy.pid)
            port = self.proxy.port
        if self.auth is not None:
            environment, self.overrides = self.auth.function_environment()
            self.overrides.update(self.auth.host_difference(port))
        else:
            user, password = self.users.request_user
            environment, self.overrides = db_access.local_environment(self.stack, host, port, password, user)
        self.overrides.update(migrator_differences)
        self._start_function(environment)
        if self.config.supervise:
            self._supervise()

    def _migrate(self, persistent: PersistentDb | None) -> dict[str, str]:
        """Give the DB the schema and the application user, as the deploy's migrator does; the differences to print.

        Throw-away DB: the migrator's code in this process. Persistent instance: the deployed migrator function,
        once, in the local runtime (`db_access`).
        """
        db = self.db
        assert db is not None
        if persistent is None:
            self.users = migration.throwaway_users(self.stack, db.app_user, db.app_password)
            self.migration = migration.provision(self.stack, db.host, db.port, self.users)
            return {}
        assert self.instance is not None
        self.users = db_access.persistent_users(self.stack, self.instance, persistent)
        if self.stack.migrator is None:
            return {}
        context = db_access.MigratorContext(
            stack=self.stack,
            persistent=persistent,
            users=self.users,
            code_dir=self._code_dir(),
            db_host=db.host,
            db_port=db.port,
            via_proxy=self.config.via_proxy,
            auth=self.auth,
            log_path=self.config.function_log,
        )
        self.migration, differences = db_access.run_migrator(
            context, lambda accounts, endpoint: self._start_proxy(accounts, endpoint, 0, 0, supervised=False)
        )
        self.log(f"[migrator] {json.dumps(self.migration, sort_keys=True)}")
        return differences

    def _start_proxy(
        self, accounts: Sequence[Account], secrets_endpoint: str, port: int, stats_port: int, supervised: bool = True
    ) -> Any:
        """A stand-in in front of the DB with these accounts; supervised ones die with this process."""
        from local.data_plane.proxy_child import SupervisedProxy
        from local.data_plane.rdsproxy import ProxyProcess

        assert self.db is not None
        client_auth = self.auth.proxy_fields() if self.auth is not None else {}
        config = proxy_config(
            self.stack, self.db, self.config.db_max_connections, accounts, secrets_endpoint, **client_auth
        )
        config = dataclasses.replace(config, listen_port=port, stats_port=stats_port)
        process = SupervisedProxy(config) if supervised else ProxyProcess(config)
        return process.start(timeout=_PROXY_START_TIMEOUT_S)

    def _code_dir(self) -> str:
        """Where the runtime imports the handler from (Lambda's /var/task): the deployment zip, unpacked once."""
        if self._task_root is None:
            self._task_root = str(unpacked_handler(Path(self.config.handler_dir)))
        return self._task_root

    def _start_function(self, environment: dict[str, str]) -> None:
        function = self.stack.function
        auth, proxy_port = self.auth, self.proxy.port if self.proxy is not None else 0
        self.runtime = LambdaRuntime(
            RuntimeConfig(
                handler=function.handler,
                code_dir=self._code_dir(),
                environment=environment,
                max_concurrency=self.max_concurrency,
                timeout_s=float(function.timeout_s),
                memory_mb=function.memory_mb,
                function_name=function.function_name,
                region=auth.region if auth is not None else environment.get("AWS_REGION", "us-east-1"),
                preload_modules=_DRIVER_MODULES,
                log_path=self.config.function_log,
                address_overrides=(auth.address_override(proxy_port).encode(),) if auth is not None else (),
            ),
            container_environment=auth.container_environment() if auth is not None else None,
        ).prepare()
        throttling = self.throttling
        http = HttpApiConfig(
            port=self.config.ports.http if self.config.ports is not None else 0,
            route_keys=self.stack.route_keys,
            throttling_rate_limit=throttling.rate_limit,
            throttling_burst_limit=throttling.burst_limit,
        )
        self.api = HttpApi(self.runtime.invoke, http)
        self.api.start()

    def _record(self, name: str, pid: int | None) -> None:
        if self.instance is not None and pid is not None:
            self.instance.children.add(name, pid)

    def _supervise(self) -> None:
        self.supervisor = Supervisor(self.log)
        db = self.db
        assert db is not None

        def restart_db() -> int | None:
            db.restart()
            self._record("mariadb", db.pid)
            return db.pid

        self.supervisor.watch(
            Child("MariaDB", lambda: db.running, lambda: _exit_text(db.pid, db.returncode), restart_db)
        )
        if self.proxy is not None:
            self.supervisor.watch(
                Child(
                    "RDS Proxy stand-in",
                    lambda: self.proxy.running,
                    lambda: _exit_text(self.proxy.pid, self.proxy.returncode),
                    self._restart_proxy,
                )
            )
        self.supervisor.start()

    def _restart_proxy(self) -> int | None:
        from local.data_plane.proxy_child import SupervisedProxy

        old = self.proxy
        old.stop(timeout=1)  # reaps it and closes its pipe
        config = dataclasses.replace(old.config, listen_port=old.port, stats_port=old.stats_port or 0)
        self.proxy = SupervisedProxy(config).start(timeout=_PROXY_START_TIMEOUT_S)
        self._record("rdsproxy", self.proxy.pid)
        return self.proxy.pid

    def stop(self) -> None:
        """Stop front to back so no request reaches a component that is already gone."""
        if self.supervisor is not None:
            self.supervisor.pause()  # no restarts while shutting down; its thread must outlive its children
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
        if self.supervisor is not None:
            self.supervisor.stop()
            self.supervisor = None
        if self.instance is not None:
            self.instance.children.path.unlink(missing_ok=True)
            self.instance.release()
            self.instance = None

    def describe(self) -> str:
        """What runs where, with every difference from the cloud (``serve`` and the experiment print it)."""
        return plane_report.describe(self)

    def __enter__(self) -> LocalDataPlane:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _exit_text(pid: int | None, code: int | None) -> str:
    if code is None:
        return f"pid {pid}"
    return f"pid {pid}, killed by signal {-code}" if code < 0 else f"pid {pid}, exit status {code}"
