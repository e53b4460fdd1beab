"""``ServerlessMysqlApi``: the whole architecture as one construct to put into any ``TerraformStack``.

API Gateway (HTTP API) -> Lambda in a VPC -> RDS Proxy (TLS and IAM required) -> RDS MySQL, with a KMS key for
everything it stores, an application DB user whose password no file holds, a migrator the deploy runs, alarms and a
dashboard. The enclosing stack brings the AWS provider (and its region) and the backend; ``ServerlessMysqlStack`` is
one such stack.

    class MyStack(TerraformStack):
        def __init__(self, scope, id_):
            super().__init__(scope, id_)
            AwsProvider(self, "aws", region="ap-northeast-1")
            app = ServerlessMysqlApi(self, "app", ServerlessMysqlApiProps(name_prefix="shop"))
            TerraformOutput(self, "url", value=app.api_url)
"""

from __future__ import annotations

from constructs import Construct

from modules.api import HttpApi, HttpApiProps
from modules.app_props import ServerlessMysqlApiProps
from modules.app_user import AppUserSecret, AppUserSecretProps
from modules.context import AwsContext
from modules.database import Database, DatabaseProps
from modules.encryption import StackKey, StackKeyProps
from modules.endpoints import SecretsManagerEndpoint, SecretsManagerEndpointProps
from modules.engine import warn_extended_support
from modules.function import Function, FunctionProps
from modules.migrator import Migrator, MigratorProps
from modules.monitoring import Monitoring, MonitoringProps, dashboard_url
from modules.network import Network, NetworkProps
from modules.props import expect_props
from modules.proxy import DatabaseProxy, ProxyProps

__all__ = ["ServerlessMysqlApi", "ServerlessMysqlApiProps"]


class ServerlessMysqlApi(Construct):
    """The architecture; its parts are attributes (``network``, ``database``, ``app_secret``, ``proxy``, ``function``,
    ``migrator``, ``api``, ``monitoring``, ``key``) for outputs, grants and further wiring."""

    def __init__(self, scope: Construct, id_: str, props: ServerlessMysqlApiProps | None = None):
        super().__init__(scope, id_)
        props = ServerlessMysqlApiProps() if props is None else props
        expect_props(props, ServerlessMysqlApiProps)
        self.props = p = props
        warn_extended_support(p.database.engine)
        shared = {"name_prefix": p.name_prefix}
        logged = {**shared, "log_retention_days": p.log_retention_days}

        self.ctx = ctx = AwsContext.lookup(self, p.region)
        self.key = StackKey(self, "key", StackKeyProps(**shared, ctx=ctx))
        key_arn = self.key.arn
        self.network = network = Network(
            self,
            "network",
            NetworkProps(**logged, ctx=ctx, kms_key_arn=key_arn, vpc=p.network, db_port=p.database.port),
        )
        self.database = database = Database(
            self,
            "database",
            DatabaseProps(
                **{
                    **dict(p.database),
                    "deletion_protection": p.deletion_protection,
                    "final_snapshot": p.final_snapshot,
                },
                **logged,
                subnet_ids=network.db_subnet_ids,
                security_group_id=network.db_sg.id,
                kms_key_arn=key_arn,
            ),
        )
        self.app_secret = app_secret = AppUserSecret(
            self,
            "app-user",
            AppUserSecretProps(
                **{**dict(p.app_user), "recovery_window_days": p.recovery_window_days}, **shared, kms_key_arn=key_arn
            ),
        )
        self.proxy = proxy = DatabaseProxy(
            self,
            "proxy",
            ProxyProps(
                **dict(p.proxy),
                **logged,
                ctx=ctx,
                subnet_ids=network.db_subnet_ids,
                security_group_id=network.proxy_sg.id,
                secret_arn=database.secret_arn,
                app_secret_arns=(app_secret.arn,),
                kms_key_arn=key_arn,
                db_instance_identifier=database.instance.identifier,
                engine_version=p.database.engine_version,
            ),
        )
        self.function = function = Function(
            self,
            "function",
            FunctionProps(
                **dict(p.function),
                **logged,
                ctx=ctx,
                code_dir=p.code_dir,
                build_dir=p.build_dir,
                subnet_ids=network.lambda_subnet_ids,
                security_group_id=network.lambda_sg.id,
                kms_key_arn=key_arn,
                db_host=proxy.endpoint,
                db_port=p.database.port,
                db_name=p.database.db_name,
                db_user=p.app_user.username,
            ),
        )
        # The function switches users only once its grant exists (and, on the cloud, once the migration ran).
        function.serve_after(proxy.grant_connect(function.role, p.app_user.username))
        self.migrator = self._migrator(ctx)
        self.api = api = HttpApi(
            self,
            "api",
            HttpApiProps(
                **dict(p.api),
                **logged,
                function=function.function,
                kms_key_arn=key_arn,
                lambda_timeout_s=p.function.timeout_s,
            ),
        )
        self.monitoring = Monitoring(
            self,
            "monitoring",
            MonitoringProps(
                **dict(p.alarms),
                **shared,
                region=p.region,
                kms_key_arn=key_arn,
                db_instance_class=p.database.instance_class,
                lambda_timeout_s=p.function.timeout_s,
                resources={
                    "db_instance_identifier": database.instance.identifier,
                    "proxy_name": proxy.proxy.name,
                    "function_name": function.name,
                    "api_id": api.api.id,
                },
            ),
        )

    def _migrator(self, ctx: AwsContext) -> Migrator:
        """The migrator, its private path to Secrets Manager, and (when invoked by the deploy) its run before the new
        code serves."""
        p, network = self.props, self.network
        endpoint = SecretsManagerEndpoint(
            self,
            "secretsmanager-endpoint",
            SecretsManagerEndpointProps(
                name_prefix=p.name_prefix,
                ctx=ctx,
                vpc_id=network.vpc_id,
                subnet_ids=network.lambda_subnet_ids,
                client_security_group=network.migrator_sg,
                readable_secret_arns=(self.app_secret.arn,),
            ),
        )
        migrator = Migrator(
            self,
            "migrator",
            MigratorProps(
                name_prefix=p.name_prefix,
                ctx=ctx,
                code=self.function.code,
                proxy=self.proxy,
                subnet_ids=network.lambda_subnet_ids,
                security_group_id=network.migrator_sg.id,
                kms_key_arn=self.key.arn,
                master_username=p.database.username,
                app_username=p.app_user.username,
                app_secret_arn=self.app_secret.arn,
                app_secret_version=self.app_secret.password_version,
                db_port=p.database.port,
                db_name=p.database.db_name,
                table_name=p.function.table_name,
                runtime=p.function.runtime,
                architecture=p.function.architecture,
                log_retention_days=p.log_retention_days,
                invoke_on_deploy=p.invoke_migrator_on_deploy,
                depends_on=(*endpoint.dependables, *network.migrator_rules),
            ),
        )
        if migrator.invocation is not None:
            self.function.serve_after(migrator.invocation)
        return migrator

    # ---- what users wire further or output
    @property
    def api_url(self) -> str:
        """Invoke URL of the ``$default`` stage."""
        return self.api.url

    @property
    def dashboard_url(self) -> str:
        return dashboard_url(self.props.region, self.monitoring.dashboard_name)

    @property
    def log_groups(self) -> dict[str, str]:
        """Names of every log group the deployment writes, by source (retention and KMS key set by it)."""
        groups = {
            "proxy": self.proxy.log_group.name,
            "function": self.function.log_group.name,
            "migrator": self.migrator.log_group.name,
            "api_access": self.api.access_logs.name,
        }
        if self.network.flow_log_group is not None:  # an existing VPC's flow logs are its owner's
            groups["vpc_flow"] = self.network.flow_log_group.name
        return {**groups, **{f"db_{kind}": group.name for kind, group in self.database.log_groups.items()}}
