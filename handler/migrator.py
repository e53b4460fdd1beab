"""The migrator: the deploy's function that brings the schema to ``SCHEMA_VERSION`` and the application user to its
exact grants. Handler ``handler.migrator.lambda_handler``, in the same zip as the request function.

It connects as the master user (``DB_USER``; in the cloud with an IAM token over TLS through RDS Proxy, the same
connect code as the request path), takes the schema's advisory lock, applies the missing migrations, creates or
updates the application user (``APP_DB_USER``) with the password from ``APP_DB_SECRET_ARN`` and exactly the grants
``app_users`` lists, and releases the lock. Run twice, it changes nothing; run twenty times at once, each migration
is applied once. The deploy invokes it once per change of the migration set, with an event that carries no secret
(``{"schema_version": 4}``), and fails when it raises. It returns, e.g.,
``{"schema_version": 4, "applied": [4], "app_user": "app_user", "revoked": []}``.

``python -m handler.migrator`` runs the same thing once with the environment's variables (e.g. ahead of a deploy
whose migration rewrites a large table), printing that JSON.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from mysql.connector import errors as mysql_errors

from handler import app_contract as contract
from handler.app_db import DatabaseUnavailable, Deadline, close_quietly, connect
from handler.app_iam import password_provider_for
from handler.app_logging import get_logger
from handler.app_names import TableNames
from handler.app_schema import apply_migrations, current_version, migration_lock
from handler.app_settings import ConfigError, MigratorSettings
from handler.app_users import PasswordStatementError, sync_app_user

__all__ = ["AppCredentials", "MigrationError", "lambda_handler", "read_app_secret", "run"]


class MigrationError(RuntimeError):
    """The migration or the user update failed; the deploy's invocation fails with this message."""


@dataclass(frozen=True)
class AppCredentials:
    """The application user's credentials as its secret holds them."""

    username: str
    password: str = field(repr=False)


SecretReader = Callable[[str], AppCredentials]


def read_app_secret(secret_arn: str) -> AppCredentials:
    """Read ``{"username", "password"}`` from Secrets Manager (``AWS_ENDPOINT_URL_SECRETS_MANAGER`` or
    ``AWS_ENDPOINT_URL`` point boto3 at another endpoint, e.g. the local emulator)."""
    import boto3  # the Lambda runtime ships it; only the migrator needs it at all
    from botocore.exceptions import BotoCoreError, ClientError

    region = secret_arn.split(":")[3]
    variable = f"{contract.APP_DB_SECRET_ARN}={secret_arn}"
    try:
        value = boto3.client("secretsmanager", region_name=region).get_secret_value(SecretId=secret_arn)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "unknown")
        raise MigrationError(f"reading the secret {variable} failed: {code}") from None
    except BotoCoreError as exc:
        raise MigrationError(f"reading the secret {variable} failed: {type(exc).__name__}") from None
    return parse_app_secret(value.get("SecretString"), variable)


def parse_app_secret(text: Any, variable: str) -> AppCredentials:
    """The secret's JSON, checked; errors name the secret and the key, never a value."""
    try:
        document = json.loads(text) if isinstance(text, str) else None
    except ValueError:
        document = None
    if not isinstance(document, dict):
        raise MigrationError(f"the secret {variable} is not a JSON object with username and password")
    username, password = document.get("username"), document.get("password")
    if not isinstance(username, str) or not username:
        raise MigrationError(f"the secret {variable} has no username")
    if not isinstance(password, str) or not password:
        raise MigrationError(f"the secret {variable} has no password")
    return AppCredentials(username, password)


def run(
    settings: MigratorSettings,
    deadline: Deadline,
    secret_reader: SecretReader = read_app_secret,
    password_provider: Callable[[], str] | None = None,
) -> dict[str, Any]:
    """Migrate and sync the application user once; raises ``MigrationError`` naming what failed."""
    credentials = secret_reader(settings.app_secret_arn)
    if credentials.username != settings.app_user:
        raise MigrationError(
            f"the secret {contract.APP_DB_SECRET_ARN}={settings.app_secret_arn} is for user "
            f"{credentials.username!r}, but {contract.APP_DB_USER}={settings.app_user!r}"
        )
    master = settings.connection
    names = TableNames(master.database, master.table)
    try:
        connection = connect(master, password_provider or password_provider_for(master), deadline)
    except DatabaseUnavailable as exc:
        raise MigrationError(f"connecting as {master.user} to {master.host}:{master.port} failed: {exc}") from exc
    try:
        with migration_lock(connection, names, deadline) as cursor:
            applied = apply_migrations(connection, cursor, names, deadline)
            revoked = sync_app_user(cursor, names, settings.app_user, credentials.password)
            version = current_version(cursor, names)
    except (DatabaseUnavailable, PasswordStatementError, ValueError) as exc:  # ValueError: unreadable SHOW GRANTS
        raise MigrationError(f"migrating {names.database}.{names.table} failed: {exc}") from exc
    except mysql_errors.Error as exc:
        reason = f"MySQL error {exc.errno}: {exc.msg}"
        raise MigrationError(f"migrating {names.database}.{names.table} failed: {reason}") from exc
    finally:
        close_quietly(connection)  # also ends the advisory lock's pinned proxy session
    return {"schema_version": version, "applied": applied, "app_user": settings.app_user, "revoked": revoked}


def check_event(event: Any, settings: MigratorSettings) -> None:
    """The deploy's input: optional ``schema_version`` (not newer than this code's) and ``app_user`` (ours)."""
    if event is None:
        return
    if not isinstance(event, Mapping):
        raise MigrationError(f"event must be a JSON object, got {type(event).__name__}")
    wanted = event.get("schema_version")
    if wanted is not None and (isinstance(wanted, bool) or not isinstance(wanted, int) or wanted < 1):
        raise MigrationError(f"event schema_version={wanted!r}: allowed an integer from 1 to {contract.SCHEMA_VERSION}")
    if wanted is not None and wanted > contract.SCHEMA_VERSION:
        raise MigrationError(
            f"event schema_version={wanted} is newer than this code's {contract.SCHEMA_VERSION}: "
            "deploy the code that has that migration"
        )
    user = event.get("app_user")
    if user is not None and user != settings.app_user:
        raise MigrationError(f"event app_user={user!r} differs from {contract.APP_DB_USER}={settings.app_user!r}")


def lambda_handler(event: Any, context: Any) -> dict[str, Any]:
    """Lambda entry point: migrate, sync the user, return the JSON result; raise on any failure."""
    settings = MigratorSettings.from_env(os.environ)  # ConfigError names the variable
    logger = get_logger(settings.connection.log_level)
    check_event(event, settings)
    result = run(settings, Deadline.from_context(context, settings.connection.deadline_margin_ms))
    logger.info("migrated", extra=result)
    return result


def main() -> int:
    """``python -m handler.migrator``: the same, once, with this environment and no deadline."""
    try:
        settings = MigratorSettings.from_env(os.environ)
        result = run(settings, Deadline.none())
    except (ConfigError, MigrationError) as exc:
        print(f"migrator: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
