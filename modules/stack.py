"""The whole architecture as one CDKTF stack: API -> Lambda (VPC) -> RDS Proxy -> RDS MySQL.

The same constructs serve every environment; only the provider (endpoints, credentials) and backend differ
between the ``local`` emulator target and real AWS.
"""

from __future__ import annotations

import os
from pathlib import Path

from cdktf import LocalBackend, S3Backend, TerraformOutput, TerraformStack
from constructs import Construct

from modules.api import HttpApi
from modules.bindings import aws
from modules.context import AwsContext
from modules.database import Database
from modules.encryption import StackKey
from modules.environments import Environment
from modules.function import Function
from modules.network import Network
from modules.proxy import DatabaseProxy

STACKS_DIR = Path(__file__).resolve().parent.parent / "cdktf.out" / "stacks"

# Services the stack calls; the local target points each one at the emulator.
LOCAL_SERVICES = ("apigatewayv2", "ec2", "iam", "kms", "lambda_", "logs", "rds", "secretsmanager", "sts")


class ServerlessMysqlStack(TerraformStack):
    def __init__(self, scope: Construct, environment: Environment):
        super().__init__(scope, environment.name)
        settings = environment.settings
        self._provider(environment)
        self._backend(environment)

        ctx = AwsContext.lookup(self, settings.region)
        key = StackKey(self, "key", name_prefix=settings.name_prefix, ctx=ctx)
        network = Network(self, "network", settings=settings, ctx=ctx, kms_key_arn=key.arn)
        database = Database(self, "database", settings=settings, subnet_ids=network.db_subnet_ids,
                            security_group_id=network.db_sg.id, kms_key_arn=key.arn)
        proxy = DatabaseProxy(self, "proxy", settings=settings, ctx=ctx, subnet_ids=network.db_subnet_ids,
                              security_group_id=network.proxy_sg.id, secret_arn=database.secret_arn,
                              kms_key_arn=key.arn, db_instance_identifier=database.instance.identifier)
        function = Function(self, "function", settings=settings, ctx=ctx, subnet_ids=network.lambda_subnet_ids,
                            security_group_id=network.lambda_sg.id, kms_key_arn=key.arn, db_host=proxy.endpoint)
        proxy.grant_connect(function.role, settings.db_username)
        api = HttpApi(self, "api", settings=settings, function=function.function, kms_key_arn=key.arn)

        for name, value, description in (
            ("api_url", api.url, "Invoke URL of the HTTP API ($default stage)"),
            ("proxy_endpoint", proxy.endpoint, "RDS Proxy endpoint the Lambda connects to"),
            ("db_endpoint", database.instance.address, "DB instance address (reachable only from the proxy)"),
            ("secret_arn", database.secret_arn, "Secrets Manager secret with the DB credentials (RDS-managed)"),
            ("function_name", function.name, "Lambda function name"),
        ):
            TerraformOutput(self, name, value=value, description=description)

    def _provider(self, environment: Environment) -> None:
        settings = environment.settings
        bindings = aws("provider")
        common = {"region": settings.region,
                  "default_tags": [bindings.AwsProviderDefaultTags(tags={
                      "Project": "serverless-mysql-stack", "Environment": environment.name, "ManagedBy": "cdktf",
                      **settings.tags})]}
        provider = bindings.AwsProvider
        if environment.target == "local":
            # Dummy credentials that real AWS rejects, so a misrouted call can never touch an account.
            provider(self, "aws", access_key="test", secret_key="test",
                     skip_credentials_validation=True, skip_metadata_api_check="true",
                     skip_requesting_account_id=False, max_retries=1,
                     endpoints=[bindings.AwsProviderEndpoints(
                         **{service: environment.local_endpoint for service in LOCAL_SERVICES})],
                     **common)
        else:
            # Credentials come from the environment (profile, SSO, OIDC in CI), never from code.
            provider(self, "aws", allowed_account_ids=list(environment.allowed_account_ids) or None, **common)

    def _backend(self, environment: Environment) -> None:
        if environment.backend is None:
            # Relative to the stack's working directory (cdktf.out/stacks/<name>), so the synthesized
            # JSON is the same in every checkout.
            LocalBackend(self, path=os.path.relpath(environment.state_file, STACKS_DIR / environment.name))
            return
        b = environment.backend
        S3Backend(self, bucket=b.bucket, key=b.key, region=b.region, encrypt=b.encrypt, kms_key_id=b.kms_key_id)
        # S3-native state locking (Terraform >= 1.10); cdktf 0.21's S3Backend predates the argument.
        self.add_override("terraform.backend.s3.use_lockfile", b.use_lockfile)
