"""The local DB gets the schema and the application user the deployed code needs, as the deploy's migrator gives them.

In the cloud the deploy invokes the migrator function once per change of the migration set
(``aws_lambda_invocation``), before the request function serves. The emulator cannot invoke functions, so locally:

- ``serve`` on the stack's persistent DB instance runs the deployed migrator function once, in the local runtime,
  with its own role's credentials and ``AWS_ENDPOINT_URL_SECRETS_MANAGER`` pointing at the emulator (where the
  application user's secret lives), before the request function serves; `run_deployed` does that;
- throw-away DBs (tests, the load experiment) run the same migrator code in this process against the DB as its
  master, with a fresh password for the application user (there is no secret to read), before any request;
  `provision` does that.

Stacks deployed before the migrator existed have no application user: their function logs in as the master.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from handler import app_contract as names
from local.data_plane.deployed import DeployedStack, FunctionSettings
from local.data_plane.runtime import InvocationError, LambdaRuntime, RuntimeConfig

LOCAL_APP_SECRET_ARN = "arn:aws:secretsmanager:us-east-1:000000000000:secret:local-app-user"
"""Stands in for ``APP_DB_SECRET_ARN`` when a throw-away DB's application password is handed over directly."""
MIGRATOR_EVENT = {"schema_version": names.SCHEMA_VERSION}
"""What the deploy sends the migrator: no secret, only the version this release needs."""


class MigrationFailed(RuntimeError):
    """The migrator raised (the cloud's deploy would fail the same way); the message names the function and why."""


@dataclass(frozen=True)
class DbUsers:
    """Who logs in as whom on one local DB: the master (schema, users) and the application user (requests)."""

    master: str
    master_password: str = field(repr=False)
    app: str | None = None
    """None: a stack without a migrator, whose function logs in as the master."""
    app_password: str = field(default="", repr=False)

    @property
    def request_user(self) -> tuple[str, str]:
        """The user and password the request function logs in with."""
        return (self.app, self.app_password) if self.app else (self.master, self.master_password)


def app_user_of(stack: DeployedStack) -> str | None:
    """The application user the migrator manages (``APP_DB_USER``), or None without a migrator."""
    if stack.migrator is None:
        return None
    return stack.migrator.environment.get(names.APP_DB_USER) or stack.function.environment.get(names.DB_USER)


def master_user_of(stack: DeployedStack, default: str) -> str:
    """The master user the migrator logs in as (its ``DB_USER``); ``default`` without a migrator."""
    if stack.migrator is None:
        return stack.function.environment.get(names.DB_USER, default)
    return stack.migrator.environment.get(names.DB_USER, default)


def throwaway_users(stack: DeployedStack, master: str, master_password: str) -> DbUsers:
    """A throw-away DB's users: its master, and the application user with a fresh random password."""
    app = app_user_of(stack)
    return DbUsers(master, master_password, app, secrets.token_urlsafe(18) if app else "")


def _direct_environment(migrator: FunctionSettings, host: str, port: int, master: str, password: str) -> dict[str, str]:
    environment = dict(migrator.environment)
    environment.pop(names.DB_SSL_CA, None)
    environment.update(
        {
            names.DB_HOST: host,
            names.DB_PORT: str(port),
            names.DB_USER: master,
            names.DB_AUTH: names.AUTH_PASSWORD,
            names.DB_PASSWORD: password,
        }
    )
    return environment


def provision(stack: DeployedStack, host: str, port: int, users: DbUsers) -> dict[str, Any] | None:
    """Migrate a throw-away DB and create its application user, in this process, with the migrator's own code.

    Returns the migrator's result (``{"schema_version", "applied", "app_user", ...}``); None without a migrator.
    """
    migrator = stack.migrator
    if migrator is None or users.app is None:
        return None
    from handler.app_db import Deadline
    from handler.app_settings import MigratorSettings
    from handler.migrator import AppCredentials, MigrationError, run

    environment = _direct_environment(migrator, host, port, users.master, users.master_password)
    environment[names.APP_DB_USER] = users.app
    environment[names.APP_DB_SECRET_ARN] = LOCAL_APP_SECRET_ARN
    settings = MigratorSettings.from_env(environment)
    credentials = AppCredentials(users.app, users.app_password)
    try:
        return run(settings, Deadline.none(), secret_reader=lambda _arn: credentials)
    except MigrationError as exc:
        raise MigrationFailed(f"migrating the local DB as {users.master} failed: {exc}") from exc


@dataclass(frozen=True)
class MigratorRun:
    """How the deployed migrator runs in the local runtime (`run_deployed`)."""

    code_dir: str
    environment: Mapping[str, str] = field(repr=False)
    """The deployed environment with the local differences (see `differences`)."""
    differences: Mapping[str, str]
    """What differs from the cloud, to print: variable -> how and why."""
    region: str
    address_overrides: tuple[str, ...] = ()
    container_environment: Callable[[], Mapping[str, str]] | None = None
    """Fresh credentials of the migrator's own role for its container."""
    log_path: str | None = None
    preload_modules: tuple[str, ...] = ()


def run_deployed(stack: DeployedStack, run: MigratorRun) -> dict[str, Any]:
    """Invoke the deployed migrator once, as the deploy would, and return its result; MigrationFailed if it raised."""
    migrator = stack.migrator
    if migrator is None:
        raise MigrationFailed(f"{stack.source}: the stack has no migrator function: run `python -m local deploy`")
    config = RuntimeConfig(
        handler=migrator.handler,
        code_dir=run.code_dir,
        environment=run.environment,
        max_concurrency=1,
        timeout_s=float(migrator.timeout_s),
        memory_mb=migrator.memory_mb,
        function_name=migrator.function_name,
        region=run.region,
        preload_modules=run.preload_modules,
        log_path=run.log_path,
        address_overrides=run.address_overrides,
    )
    with LambdaRuntime(config, container_environment=run.container_environment) as runtime:
        try:
            result = runtime.invoke(MIGRATOR_EVENT)
        except InvocationError as exc:
            raise MigrationFailed(
                f"the migrator {migrator.function_name} failed ({exc.error_type}): {exc}; the request function does "
                "not serve on a schema it was not migrated for (the cloud's deploy fails the same way)"
            ) from exc
    if not isinstance(result, dict):
        raise MigrationFailed(f"the migrator {migrator.function_name} returned {result!r}, not its JSON result")
    return result


def direct_run_environment(stack: DeployedStack, host: str, port: int, users: DbUsers) -> dict[str, str]:
    """The migrator's environment when it reaches the DB with the master's password (no IAM), locally."""
    assert stack.migrator is not None
    return _direct_environment(stack.migrator, host, port, users.master, users.master_password)
