"""The whole architecture as one CDKTF stack: API -> Lambda (VPC) -> RDS Proxy -> RDS MySQL, plus alarms.

The same constructs serve every environment; only the provider (endpoints, credentials) and backend differ
between the ``local`` emulator target and real AWS, plus one thing the emulator cannot do: invoke a function,
so the local target deploys the migrator without running it (the local data plane runs it). This module maps
the flat ``StackSettings`` onto each construct's typed props.
"""

from __future__ import annotations

import os

from cdktf import LocalBackend, S3Backend, TerraformOutput, TerraformStack
from constructs import Construct

from modules.alarms import AlarmThresholds, MonitoredResources
from modules.api import STAGE_NAME, HttpApi, HttpApiProps
from modules.app_user import AppUserSecret, AppUserSecretProps
from modules.bindings import aws
from modules.context import AwsContext
from modules.database import Database, DatabaseProps
from modules.encryption import StackKey, StackKeyProps
from modules.endpoints import SecretsManagerEndpoint, SecretsManagerEndpointProps
from modules.engine import warn_extended_support
from modules.environments import Environment
from modules.function import Function, FunctionProps
from modules.migrator import Migrator, MigratorProps
from modules.monitoring import Monitoring, MonitoringProps, dashboard_url
from modules.network import Network, NetworkProps
from modules.project import BUILD_DIR_NAME, HANDLER_DIR_NAME, REPO_ROOT, stack_dir
from modules.proxy import DEFAULT_TARGET_GROUP, DatabaseProxy, ProxyProps
from modules.settings import StackSettings

# Services the stack calls; the local target points each one at the emulator.
LOCAL_SERVICES = (
    "apigatewayv2",
    "cloudwatch",
    "ec2",
    "iam",
    "kms",
    "lambda_",
    "logs",
    "rds",
    "secretsmanager",
    "sns",
    "sts",
)


class ServerlessMysqlStack(TerraformStack):
    def __init__(self, scope: Construct, environment: Environment):
        super().__init__(scope, environment.name)
        s = environment.settings
        warn_extended_support(s.engine)
        self._provider(environment)
        self._backend(environment)

        ctx = AwsContext.lookup(self, s.region)
        key = StackKey(self, "key", StackKeyProps(name_prefix=s.name_prefix, ctx=ctx))
        network = Network(
            self,
            "network",
            NetworkProps(
                name_prefix=s.name_prefix,
                ctx=ctx,
                kms_key_arn=key.arn,
                vpc_cidr=s.vpc_cidr,
                availability_zones=s.availability_zones,
                lambda_subnet_cidrs=s.lambda_subnet_cidrs,
                db_subnet_cidrs=s.db_subnet_cidrs,
                db_port=s.db_port,
                log_retention_days=s.log_retention_days,
            ),
        )
        database = Database(
            self,
            "database",
            DatabaseProps(
                name_prefix=s.name_prefix,
                subnet_ids=network.db_subnet_ids,
                security_group_id=network.db_sg.id,
                kms_key_arn=key.arn,
                engine_version=s.engine,
                instance_class=s.db_instance_class,
                allocated_storage_gb=s.db_allocated_storage_gb,
                max_allocated_storage_gb=s.db_max_allocated_storage_gb,
                db_name=s.db_name,
                username=s.db_username,
                port=s.db_port,
                backup_retention_days=s.db_backup_retention_days,
                multi_az=s.db_multi_az,
                deletion_protection=s.effective_deletion_protection,
                final_snapshot=s.effective_final_snapshot,
                log_retention_days=s.log_retention_days,
            ),
        )
        app_secret = AppUserSecret(
            self,
            "app-user",
            AppUserSecretProps(
                name_prefix=s.name_prefix,
                username=s.db_app_username,
                kms_key_arn=key.arn,
                recovery_window_days=0 if s.throwaway else AppUserSecretProps.recovery_window_days,
            ),
        )
        proxy = DatabaseProxy(
            self,
            "proxy",
            ProxyProps(
                name_prefix=s.name_prefix,
                ctx=ctx,
                subnet_ids=network.db_subnet_ids,
                security_group_id=network.proxy_sg.id,
                secret_arn=database.secret_arn,
                app_secret_arns=(app_secret.arn,),
                kms_key_arn=key.arn,
                db_instance_identifier=database.instance.identifier,
                pool=s.pool_rules,
                engine_version=s.engine,
                debug_logging=s.proxy_debug_logging,
                log_retention_days=s.log_retention_days,
            ),
        )
        function = Function(
            self,
            "function",
            FunctionProps(
                name_prefix=s.name_prefix,
                ctx=ctx,
                code_dir=REPO_ROOT / HANDLER_DIR_NAME,
                build_dir=REPO_ROOT / BUILD_DIR_NAME,
                subnet_ids=network.lambda_subnet_ids,
                security_group_id=network.lambda_sg.id,
                kms_key_arn=key.arn,
                db_host=proxy.endpoint,
                db_port=s.db_port,
                db_name=s.db_name,
                db_user=s.db_app_username,
                table_name=s.table_name,
                response_limit=s.response_limit,
                runtime=s.lambda_runtime,
                architecture=s.lambda_architecture,
                memory_mb=s.lambda_memory_mb,
                timeout_s=s.lambda_timeout_s,
                reserved_concurrency=s.lambda_reserved_concurrency,
                log_retention_days=s.log_retention_days,
            ),
        )
        # The function switches users only once its grant exists (and, on the cloud, once the migration ran).
        function.serve_after(proxy.grant_connect(function.role, s.db_app_username))
        migrator = self._migrator(environment, ctx, key, network, proxy, app_secret, function)
        api = HttpApi(
            self,
            "api",
            HttpApiProps(
                name_prefix=s.name_prefix,
                function=function.function,
                kms_key_arn=key.arn,
                lambda_timeout_s=s.lambda_timeout_s,
                log_retention_days=s.log_retention_days,
                throttling_burst_limit=s.api_throttling_burst_limit,
                throttling_rate_limit=s.api_throttling_rate_limit,
            ),
        )
        monitoring = Monitoring(
            self,
            "monitoring",
            MonitoringProps(
                name_prefix=s.name_prefix,
                region=s.region,
                kms_key_arn=key.arn,
                thresholds=alarm_thresholds(s),
                resources=MonitoredResources(
                    db_instance_identifier=database.instance.identifier,
                    proxy_name=proxy.proxy.name,
                    function_name=function.name,
                    api_id=api.api.id,
                    stage=STAGE_NAME,
                    proxy_target_group=DEFAULT_TARGET_GROUP,
                ),
                email_addresses=s.alarm_email_addresses,
                extra_topic_arns=(s.alarm_topic_arn,) if s.alarm_topic_arn else (),
            ),
        )

        log_groups = {
            "proxy": proxy.log_group.name,
            "function": function.log_group.name,
            "migrator": migrator.log_group.name,
            "api_access": api.access_logs.name,
            "vpc_flow": network.flow_log_group.name,
            **{f"db_{kind}": group.name for kind, group in database.log_groups.items()},
        }
        for name, value, description in (
            ("api_url", api.url, "Invoke URL of the HTTP API ($default stage)"),
            ("proxy_endpoint", proxy.endpoint, "RDS Proxy endpoint the Lambda connects to"),
            ("proxy_arn", proxy.arn, "RDS Proxy ARN"),
            ("proxy_resource_id", proxy.resource_id, "RDS Proxy prx- id (rds-db:connect ARNs, proxy log streams)"),
            ("proxy_target_group", proxy.target_group.name, "RDS Proxy target group holding the pool settings"),
            ("proxy_role_arn", proxy.role.arn, "Role RDS Proxy assumes to read the DB secret"),
            ("function_role_arn", function.role.arn, "Lambda execution role (VPC access, rds-db:connect)"),
            ("db_endpoint", database.instance.address, "DB instance address (reachable only from the proxy)"),
            ("secret_arn", database.secret_arn, "Secrets Manager secret with the DB credentials (RDS-managed)"),
            ("app_secret_arn", app_secret.arn, "Secrets Manager secret of the application DB user (stack-generated)"),
            ("function_name", function.name, "Lambda function name"),
            ("migrator_name", migrator.name, "Lambda function that migrates the schema and manages the app user"),
            ("log_groups", log_groups, "CloudWatch log groups by source (retention and KMS set by the stack)"),
            ("dashboard_name", monitoring.dashboard.dashboard_name, "CloudWatch dashboard of the stack"),
            ("dashboard_url", dashboard_url(s.region, monitoring.dashboard_name), "CloudWatch console link"),
            ("alarm_topic_arn", monitoring.topic_arn, "SNS topic every alarm notifies (subscribe on-call here)"),
        ):
            TerraformOutput(self, name, value=value, description=description)

    def _migrator(self, environment, ctx, key, network, proxy, app_secret, function) -> Migrator:
        """The migrator, its private path to Secrets Manager, and (cloud target) its run before the new code serves."""
        s = environment.settings
        endpoint = SecretsManagerEndpoint(
            self,
            "secretsmanager-endpoint",
            SecretsManagerEndpointProps(
                name_prefix=s.name_prefix,
                ctx=ctx,
                vpc_id=network.vpc.id,
                subnet_ids=network.lambda_subnet_ids,
                client_security_group=network.migrator_sg,
                readable_secret_arns=(app_secret.arn,),
            ),
        )
        migrator = Migrator(
            self,
            "migrator",
            MigratorProps(
                name_prefix=s.name_prefix,
                ctx=ctx,
                code=function.code,
                proxy=proxy,
                subnet_ids=network.lambda_subnet_ids,
                security_group_id=network.migrator_sg.id,
                kms_key_arn=key.arn,
                master_username=s.db_username,
                app_username=s.db_app_username,
                app_secret_arn=app_secret.arn,
                app_secret_version=app_secret.password_version,
                db_port=s.db_port,
                db_name=s.db_name,
                table_name=s.table_name,
                runtime=s.lambda_runtime,
                architecture=s.lambda_architecture,
                log_retention_days=s.log_retention_days,
                invoke_on_deploy=environment.target != "local",
                depends_on=(*endpoint.dependables, *network.migrator_rules),
            ),
        )
        if migrator.invocation is not None:
            function.serve_after(migrator.invocation)
        return migrator

    def _provider(self, environment: Environment) -> None:
        settings = environment.settings
        bindings = aws("provider")
        common = {
            "region": settings.region,
            "default_tags": [
                bindings.AwsProviderDefaultTags(
                    tags={
                        "Project": "serverless-mysql-stack",
                        "Environment": environment.name,
                        "ManagedBy": "cdktf",
                        **settings.tags,
                    }
                )
            ],
        }
        provider = bindings.AwsProvider
        if environment.target == "local":
            # Dummy credentials that real AWS rejects, so a misrouted call can never touch an account.
            provider(
                self,
                "aws",
                access_key="test",
                secret_key="test",
                skip_credentials_validation=True,
                skip_metadata_api_check="true",
                skip_requesting_account_id=False,
                max_retries=1,
                endpoints=[
                    bindings.AwsProviderEndpoints(**{service: environment.local_endpoint for service in LOCAL_SERVICES})
                ],
                **common,
            )
        else:
            # Credentials come from the environment (profile, SSO, OIDC in CI), never from code.
            provider(self, "aws", allowed_account_ids=list(environment.allowed_account_ids) or None, **common)

    def _backend(self, environment: Environment) -> None:
        if environment.backend is None:
            # Relative to the stack's working directory (cdktf.out/stacks/<name>), so the synthesized
            # JSON is the same in every checkout.
            LocalBackend(self, path=os.path.relpath(environment.state_file, stack_dir(environment.name)))
            return
        b = environment.backend
        S3Backend(self, bucket=b.bucket, key=b.key, region=b.region, encrypt=b.encrypt, kms_key_id=b.kms_key_id)
        # S3-native state locking (Terraform >= 1.10); cdktf 0.21's S3Backend predates the argument.
        self.add_override("terraform.backend.s3.use_lockfile", b.use_lockfile)


def alarm_thresholds(s: StackSettings) -> AlarmThresholds:
    return AlarmThresholds(
        db_max_connections=s.max_connections,
        db_connections_percent=s.alarm_db_connections_percent,
        db_cpu_percent=s.alarm_db_cpu_percent,
        db_free_storage_gb=s.alarm_db_free_storage_gb,
        proxy_client_connections=s.alarm_proxy_client_connections,
        proxy_borrow_latency_ms=s.alarm_proxy_borrow_latency_ms,
        lambda_timeout_s=s.lambda_timeout_s,
        lambda_duration_percent=s.alarm_lambda_duration_percent,
        lambda_errors=s.alarm_lambda_errors,
        api_5xx=s.alarm_api_5xx,
        period_s=s.alarm_period_s,
        evaluation_periods=s.alarm_evaluation_periods,
    )
