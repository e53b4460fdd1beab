"""Who reaches the local DB as whom: the users, the stand-in's accounts, the function's DB variables, and ``serve``'s
run of the deployed migrator before the function serves.

- The DB's master: the RDS-managed secret's user (persistent instance) or a random password (throw-away DB).
- The application user: the migrator's ``APP_DB_USER``; its password is in the deployed secret
  (``APP_DB_SECRET_ARN``, read from the emulator) or, on a throw-away DB, a fresh random one.
- The stand-in's accounts, like the deployed proxy's ``auth`` blocks: one secret per user (persistent), or the
  two users' passwords directly (throw-away).
- The function's environment: the deployed one, with DB_HOST/DB_PORT/DB_AUTH/DB_PASSWORD pointing at the local
  stand-in or DB where the cloud's IAM path cannot be run (`local_environment`).

The stand-in logs in once with each of its accounts when it starts, and the application user does not exist until
the migrator has created it. So the migrator runs through a first stand-in that holds the master's account only
(as the cloud's migrator logs in as the master through RDS Proxy, with its own role's IAM token over TLS); the
stand-in that serves starts afterwards with every account.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from handler import app_contract as names
from local.data_plane import deployed, migration
from local.data_plane.deployed import DeployedStack
from local.data_plane.local_instance import OpenedInstance, PersistentDb, master_secret_arn
from local.data_plane.migration import DbUsers, MigratorRun
from local.data_plane.production_auth import ProductionAuth
from local.data_plane.secrets import read_db_secret

if TYPE_CHECKING:
    from local.data_plane.rdsproxy.accounts import Account


def local_environment(
    stack: DeployedStack, host: str, port: int, password: str, user: str | None = None
) -> tuple[dict[str, str], dict[str, str]]:
    """The function's deployed environment with the unavoidable local overrides; returns (env, overrides)."""
    env = dict(stack.function.environment)
    overrides = {
        names.DB_HOST: host,
        names.DB_PORT: str(port),
        names.DB_AUTH: names.AUTH_PASSWORD,
        names.DB_PASSWORD: "<local db password>",
    }
    env.update(overrides)
    env[names.DB_PASSWORD] = password
    if user is not None and env.get(names.DB_USER) != user:
        env[names.DB_USER] = overrides[names.DB_USER] = user
    if env.pop(names.DB_SSL_CA, None) is not None:
        overrides[names.DB_SSL_CA] = "<removed: no TLS locally>"
    missing = [name for name in stack.unresolved if name not in overrides]
    if missing:
        raise deployed.DeployedStateError(
            f"{stack.source}: environment variables {missing} are Terraform references that are only known after "
            "apply; run `python -m local deploy` and drop --settings-from-synth."
        )
    return env, overrides


SECRETS_ENDPOINT_VARIABLE = "AWS_ENDPOINT_URL_SECRETS_MANAGER"
EMULATOR_KEYS = {"AWS_ACCESS_KEY_ID": "local-emulator", "AWS_SECRET_ACCESS_KEY": "local-emulator"}
"""Keys the emulator accepts for the migrator's Secrets Manager call when no role credentials are issued."""
StartProxy = Callable[[Sequence["Account"], str], Any]
"""Starts a stand-in with these accounts (secrets read through the endpoint) on a free port; has ``port``, ``stop``."""


def persistent_users(stack: DeployedStack, instance: OpenedInstance, persistent: PersistentDb) -> DbUsers:
    """The master from its secret (already read by `open_instance`); the application user's from its secret."""
    app = migration.app_user_of(stack)
    password = ""
    if app is not None and stack.migrator is not None:
        arn = stack.migrator.environment.get(names.APP_DB_SECRET_ARN, "")
        user, password = read_db_secret(persistent.secrets_endpoint, arn)
        app = user  # the secret names the user, as RDS Proxy reads it
    return DbUsers(instance.username, instance.password, app, password)


def proxy_secret_arns(stack: DeployedStack, persistent: PersistentDb) -> tuple[str, ...]:
    instance = persistent.instance
    return stack.proxy.secret_arns or (instance.proxy_secret_arn or instance.secret_arn,)


def proxy_accounts(stack: DeployedStack, persistent: PersistentDb | None, users: DbUsers) -> list[Account]:
    from local.data_plane.rdsproxy.accounts import SecretAccount, StaticAccount

    if persistent is not None:
        arns = proxy_secret_arns(stack, persistent)
        master_secret_arn(persistent, (users.master, users.master_password), arns)  # a clear error, before starting
        return [SecretAccount(arn) for arn in arns]
    accounts: list[Account] = [StaticAccount(users.master, users.master_password)]
    if users.app is not None:
        accounts.append(StaticAccount(users.app, users.app_password))
    return accounts


@dataclass(frozen=True)
class MigratorContext:
    """What running the deployed migrator locally needs from the data plane."""

    stack: DeployedStack
    persistent: PersistentDb
    users: DbUsers
    code_dir: str
    db_host: str
    db_port: int
    via_proxy: bool
    auth: ProductionAuth | None
    log_path: str | None


def run_migrator(context: MigratorContext, start_proxy: StartProxy) -> tuple[dict[str, Any], dict[str, str]]:
    """Run the deployed migrator once (through a master-only stand-in on the proxy path); (result, differences)."""
    from local.data_plane.rdsproxy.accounts import SecretAccount

    stack, persistent = context.stack, context.persistent
    migrator = stack.migrator
    assert migrator is not None
    endpoint = persistent.secrets_endpoint
    differences = {
        "migrator": f"{migrator.function_name} run once by serve in the local runtime before the request function "
        "serves (the cloud's deploy invokes it with aws_lambda_invocation; the emulator cannot invoke functions)",
        f"{SECRETS_ENDPOINT_VARIABLE} (migrator)": f"{endpoint} (the emulator, where the application user's secret is)",
    }
    if not context.via_proxy:
        environment = migration.direct_run_environment(stack, context.db_host, context.db_port, context.users)
        return _run(context, environment, differences, endpoint), differences
    master = (context.users.master, context.users.master_password)
    first = start_proxy(
        [SecretAccount(master_secret_arn(persistent, master, proxy_secret_arns(stack, persistent)))], endpoint
    )
    try:
        if context.auth is not None:
            environment = dict(migrator.environment)
            environment[names.DB_SSL_CA] = str(context.auth.authenticator.ca_bundle_path)
            overrides = (context.auth.address_override(first.port).encode(),)
            credentials = context.auth.container_environment(names.MIGRATOR_HANDLER, migrator.function_name)
            return _run(context, environment, differences, endpoint, overrides, credentials), differences
        environment = migration.direct_run_environment(stack, "127.0.0.1", first.port, context.users)
        return _run(context, environment, differences, endpoint), differences
    finally:
        first.stop()


def _run(
    context: MigratorContext,
    environment: dict[str, str],
    differences: dict[str, str],
    secrets_endpoint: str,
    address_overrides: tuple[str, ...] = (),
    credentials: Callable[[], Any] | None = None,
) -> dict[str, Any]:
    environment = {**environment, SECRETS_ENDPOINT_VARIABLE: secrets_endpoint}
    if credentials is None:
        environment.update(EMULATOR_KEYS)
        differences["AWS credentials (migrator)"] = "the emulator's dummy keys (no role credentials in password mode)"
    region = context.auth.region if context.auth is not None else context.stack.proxy.region or "us-east-1"
    run = MigratorRun(
        code_dir=context.code_dir,
        environment=environment,
        differences=differences,
        region=region,
        address_overrides=address_overrides,
        container_environment=credentials,
        log_path=context.log_path,
    )
    return migration.run_deployed(context.stack, run)
