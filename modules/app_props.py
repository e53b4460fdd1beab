"""``ServerlessMysqlApiProps``: every option of the whole architecture, grouped by the construct it configures.

Pure data (no cdktf), so ``StackSettings`` derives its fields from these groups and local tooling reads them without
the provider bindings. Checks that span groups live here; each group checks its own fields.
"""

from __future__ import annotations

from pathlib import Path
from typing import Self

from pydantic import model_validator

from modules.alarms import AlarmOptions
from modules.database_options import DEFAULT_RECOVERY_WINDOW_DAYS, AppUserOptions, DatabaseOptions
from modules.field_types import ONE_YEAR_DAYS, LogRetentionDays, NamePrefix, Region
from modules.function_options import ApiOptions, FunctionOptions
from modules.network_options import ExistingVpc, NewVpc
from modules.project import BUILD_DIR_NAME, HANDLER_DIR_NAME, REPO_ROOT
from modules.props import Props, is_unresolved
from modules.proxy_options import ProxyOptions


class ServerlessMysqlApiProps(Props):
    """API Gateway (HTTP API) -> Lambda in a VPC -> RDS Proxy -> RDS MySQL, with alarms: every option has a default,
    so ``ServerlessMysqlApiProps()`` is a complete, secure deployment."""

    name_prefix: NamePrefix = "sms"
    """Prefix of every resource name (two deployments in one account need different prefixes). Default: sms."""
    region: Region = "ap-northeast-1"
    """The provider's region, which the policies and the dashboard name (Tokyo, where the reference experiment
    ran). Default: ap-northeast-1."""
    network: NewVpc | ExistingVpc = NewVpc()
    """A new private-only VPC, or subnets of an existing one. Default: NewVpc(), a new VPC."""
    database: DatabaseOptions = DatabaseOptions()
    """RDS for MySQL. Default: DatabaseOptions(), MySQL 8.4 on db.t4g.micro."""
    app_user: AppUserOptions = AppUserOptions()
    """The request path's DB user. Default: AppUserOptions(), app_user."""
    proxy: ProxyOptions = ProxyOptions()
    """RDS Proxy's pool. Default: ProxyOptions(), capped at 70 % of max_connections."""
    function: FunctionOptions = FunctionOptions()
    """The request function. Default: FunctionOptions(), python3.12 on arm64 with 256 MB."""
    api: ApiOptions = ApiOptions()
    """The HTTP API. Default: ApiOptions(), ANY / throttled at 200 burst and 100 requests per second."""
    alarms: AlarmOptions = AlarmOptions()
    """Alarms and their thresholds. Default: AlarmOptions()."""
    log_retention_days: LogRetentionDays = ONE_YEAR_DAYS
    """Days CloudWatch keeps every log group of the deployment. Default: 365."""
    throwaway: bool = False
    """A disposable deployment: deletion protection off, no final snapshot and secrets deleted at once, unless set
    explicitly. Default: False."""
    invoke_migrator_on_deploy: bool = True
    """Run the schema migrator from the deploy (``aws_lambda_invocation``), before the new code serves. False where
    functions cannot be invoked (the local emulator): then whoever runs the deployment runs it. Default: True."""
    code_dir: Path = REPO_ROOT / HANDLER_DIR_NAME
    """The handler package shipped in the functions' zip. Default: this repository's handler/."""
    build_dir: Path = REPO_ROOT / BUILD_DIR_NAME
    """Where the deterministic zip is written. Default: this repository's build/."""

    @model_validator(mode="after")
    def _groups_agree(self) -> Self:
        if isinstance(self.network, NewVpc) and not is_unresolved(self.region):
            for zone in self.network.availability_zones:
                if not zone.startswith(self.region):
                    self.refuse("network.availability_zones", f"zones of region {self.region}", zone)
        master = self.database.username
        if self.app_user.username.lower() == master.lower():
            self.refuse("app_user.username", f"a name other than the master user {{database.username}} ({master})")
        allocated = self.database.allocated_storage_gb
        if self.alarms.db_free_storage_gb > allocated:
            self.refuse("alarms.db_free_storage_gb", f"an integer from 1 to {allocated}")
        if self.db_max_connections is None:
            self.refuse(
                "alarms.db_max_connections",
                "an integer from 1 to 100000 (required: the memory of "
                f"{self.database.instance_class} is not known to the stack)",
            )
        return self

    @property
    def db_max_connections(self) -> int | None:
        """The DB's max_connections: ``alarms.db_max_connections``, else RDS's default for the instance class."""
        return self.alarms.max_connections(self.database.instance_class)

    @property
    def deletion_protection(self) -> bool:
        chosen = self.database.deletion_protection
        return (not self.throwaway) if chosen is None else chosen

    @property
    def final_snapshot(self) -> bool:
        chosen = self.database.final_snapshot
        return (not self.throwaway) if chosen is None else chosen

    @property
    def recovery_window_days(self) -> int:
        """Days the app user's deleted secret stays recoverable: as set, else 0 when throwaway, else 30."""
        chosen = self.app_user.recovery_window_days
        if chosen is not None:
            return chosen
        return 0 if self.throwaway else DEFAULT_RECOVERY_WINDOW_DAYS
