"""The database's options and the application user's: what the ``Database`` and ``AppUserSecret`` constructs and
the settings share. Pure data (no cdktf)."""

from __future__ import annotations

from typing import Annotated, Self

from pydantic import model_validator

from handler import app_contract as contract
from modules.db_users import DEFAULT_APP_USERNAME, DEFAULT_MASTER_USERNAME, DbUserName
from modules.engine import (
    DEFAULT_ENGINE_VERSION,
    DEFAULT_INSTANCE_CLASS,
    ENGINE_VERSION_ALLOWED,
    INSTANCE_CLASS_ALLOWED,
    INSTANCE_CLASS_PATTERN,
    VERSION_PATTERN,
    EngineVersion,
    check_instance_class,
)
from modules.field_types import DbPort
from modules.props import Props, between, matching, satisfying
from modules.validation import SettingsError

#: Secrets Manager allows 0 (delete at once) or a recovery window of 7-30 days.
RECOVERY_WINDOW_DAYS = (7, 30)
DEFAULT_RECOVERY_WINDOW_DAYS = 30
DEFAULT_DB_NAME = "app"


class DatabaseOptions(Props):
    """RDS for MySQL: engine, size, names, port, backups and protection."""

    engine_version: Annotated[str, matching(VERSION_PATTERN, ENGINE_VERSION_ALLOWED)] = DEFAULT_ENGINE_VERSION
    """MySQL 8.4 (the LTS on RDS) or a minor of it. 8.0 only when set explicitly: its standard support ended on
    2026-07-31, so it runs on paid RDS Extended Support and synth warns. Default: 8.4."""
    instance_class: Annotated[str, matching(INSTANCE_CLASS_PATTERN, INSTANCE_CLASS_ALLOWED)] = DEFAULT_INSTANCE_CLASS
    """The DB instance class: Graviton by default. MySQL 8.4 needs a current generation (no db.t1/t2/m1-m4/r3/r4),
    and micro sizes exist only for burstable db.t* classes. Default: db.t4g.micro."""
    allocated_storage_gb: Annotated[int, between(20, 65536)] = 20
    """gp3 storage allocated at creation. Default: 20."""
    max_allocated_storage_gb: Annotated[int, between(20, 65536)] = 100
    """Ceiling of storage autoscaling, at least the allocated storage (equal: no autoscaling). Default: 100."""
    db_name: Annotated[
        str, matching(r"[A-Za-z][A-Za-z0-9_]{0,63}", "1-64 letters, digits or underscores, starting with a letter")
    ] = DEFAULT_DB_NAME
    """The database (schema) the handler uses. Default: app."""
    username: DbUserName = DEFAULT_MASTER_USERNAME
    """The master user, for administration and the deploy's migrator only. RDS generates its password into a Secrets
    Manager secret, so no password exists in code, plan or state. Default: app_admin."""
    port: DbPort = contract.DEFAULT_PORT
    """The port of the DB and the proxy, the only one the security groups open. Default: 3306."""
    backup_retention_days: Annotated[int, between(1, 35)] = 7
    """Days of automated backups (always on). Default: 7."""
    multi_az: bool = False
    """A standby in a second availability zone. Default: False."""
    deletion_protection: bool | None = None
    """RDS deletion protection. Default: None, on unless the deployment is throwaway."""
    final_snapshot: bool | None = None
    """A final snapshot when the instance is destroyed. Default: None, taken unless the deployment is throwaway."""

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        try:
            check_instance_class(self.instance_class, self.engine)
        except SettingsError as refused:
            self.refuse("instance_class", refused.allowed)
        if self.max_allocated_storage_gb < self.allocated_storage_gb:
            self.refuse("max_allocated_storage_gb", f"an integer from {self.allocated_storage_gb} to 65536")
        return self

    @property
    def engine(self) -> EngineVersion:
        return EngineVersion(self.engine_version)


def _recovery_window(days: int) -> bool:
    low, high = RECOVERY_WINDOW_DAYS
    return days == 0 or low <= days <= high


RecoveryWindowDays = Annotated[
    int,
    satisfying(
        f"0 or an integer from {RECOVERY_WINDOW_DAYS[0]} to {RECOVERY_WINDOW_DAYS[1]}", _recovery_window, integer=True
    ),
]


class AppUserOptions(Props):
    """The application DB user: the request path logs in as it, with DML on the handler's own tables only."""

    username: DbUserName = DEFAULT_APP_USERNAME
    """The request path's DB user: SELECT, INSERT, UPDATE on the handler's own tables, SELECT on its schema table,
    EXECUTE on its procedure; no DDL, no GRANT, nothing on other schemas. Different from the master user. Its
    password is generated at deploy into a Secrets Manager secret and kept in no code, plan or state.
    Default: app_user."""
    password_version: Annotated[int, between(1, 1_000_000)] = 1
    """Raise it to generate and store a new password on the next deploy; the deploy's migrator sets it on the DB
    user. Default: 1."""
    recovery_window_days: RecoveryWindowDays | None = None
    """Days a deleted secret stays recoverable; 0 deletes it at once, so the deployment can be re-created under the
    same name. Default: None, 30 (the AWS default), or 0 when the deployment is throwaway."""
