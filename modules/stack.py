"""One deployment environment as a CDKTF stack: the provider and backend of its target, the architecture, outputs.

The same ``ServerlessMysqlApi`` serves every environment; only the provider (endpoints, credentials) and backend
differ between the ``local`` emulator target and real AWS, plus one thing the emulator cannot do: invoke a function,
so the local target deploys the migrator without running it (the local data plane runs it).
"""

from __future__ import annotations

import os

from cdktf import LocalBackend, S3Backend, TerraformOutput, TerraformStack
from constructs import Construct

from modules.bindings import aws
from modules.environments import Environment
from modules.local_target import LOCAL_ACCESS_KEY_ID, LOCAL_MAX_ATTEMPTS, LOCAL_SECRET_ACCESS_KEY, LOCAL_SERVICES
from modules.project import stack_dir
from modules.serverless_mysql_api import ServerlessMysqlApi

# Construct id "Default" is left out of Terraform addresses (cdktf's rule, as in AWS CDK): the resources keep the
# addresses they had before the architecture became one construct, so deployed stacks see no change.
ARCHITECTURE_ID = "Default"


class ServerlessMysqlStack(TerraformStack):
    def __init__(self, scope: Construct, environment: Environment):
        super().__init__(scope, environment.name)
        self._provider(environment)
        self._backend(environment)
        props = environment.settings.api_props(invoke_migrator_on_deploy=environment.target != "local")
        self.app = app = ServerlessMysqlApi(self, ARCHITECTURE_ID, props)
        proxy, function, database, app_secret = app.proxy, app.function, app.database, app.app_secret
        for name, value, description in (
            ("api_url", app.api_url, "Invoke URL of the HTTP API ($default stage)"),
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
            ("migrator_name", app.migrator.name, "Lambda function that migrates the schema and manages the app user"),
            ("log_groups", app.log_groups, "CloudWatch log groups by source (retention and KMS set by the stack)"),
            ("dashboard_name", app.monitoring.dashboard.dashboard_name, "CloudWatch dashboard of the stack"),
            ("dashboard_url", app.dashboard_url, "CloudWatch console link"),
            ("alarm_topic_arn", app.monitoring.topic_arn, "SNS topic every alarm notifies (subscribe on-call here)"),
        ):
            TerraformOutput(self, name, value=value, description=description)

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
                access_key=LOCAL_ACCESS_KEY_ID,
                secret_key=LOCAL_SECRET_ACCESS_KEY,
                skip_credentials_validation=True,
                skip_metadata_api_check="true",
                skip_requesting_account_id=False,
                max_retries=LOCAL_MAX_ATTEMPTS,
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
