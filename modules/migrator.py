"""The schema migrator: the handler's zip with its own entry point, run by the deploy, never by requests.

It logs in as the master user (the only function allowed to), applies the migrations and creates or updates the
application user with exactly its grants, setting the password it reads from that user's secret. On the cloud
target the deploy invokes it once per change of the migration set (``aws_lambda_invocation`` with ``triggers``),
after the proxy can reach the DB and before the request function changes, so new code serves only on a schema
migrated for it. Its input carries no secret.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Self

from constructs import Construct
from pydantic import model_validator

from handler import app_contract as contract
from modules.bindings import aws
from modules.context import AwsContext
from modules.database_options import DEFAULT_DB_NAME
from modules.db_users import DbUserName
from modules.field_types import DbPort, LambdaMemoryMb, LambdaTimeoutS, LogRetention, NamePrefix
from modules.function import FunctionCode
from modules.function_options import FunctionOptions, LambdaArchitecture, LambdaRuntime
from modules.logs import log_group
from modules.policy import policy_document, service_assume_role
from modules.props import expect_props
from modules.proxy import DatabaseProxy
from modules.suppressions import skip_checks

#: What re-runs the migrator: a new schema version, another application user, a new password.
MIGRATION_TRIGGERS = ("schema_version", "app_user", "app_secret_version")
_FUNCTION_DEFAULTS = FunctionOptions()


class MigratorProps(LogRetention):
    name_prefix: NamePrefix
    """The function is ``<name_prefix>-migrator``; its role ``<name_prefix>-migrator-exec``. Required."""
    ctx: AwsContext
    """Partition of the AWS managed policy, region of the Secrets Manager condition. Required."""
    code: FunctionCode
    """The request function's package: both entry points ship in one zip. Required."""
    proxy: DatabaseProxy
    """The proxy to connect through; the migrator is granted ``rds-db:connect`` as the master on it. Required."""
    subnet_ids: list[str]
    """Subnets of its network interfaces. Required."""
    security_group_id: str
    """Egress to the proxy's port and to the Secrets Manager endpoint only. Required."""
    kms_key_arn: str
    """Encrypts the environment and the log group; decrypts the application user's secret via Secrets Manager.
    Required."""
    master_username: DbUserName
    """The DB user it logs in as (IAM token through the proxy). Required."""
    app_username: DbUserName
    """The application user it creates and grants, different from the master. Required."""
    app_secret_arn: str
    """The application user's secret, the only one the role may read. Required."""
    app_secret_version: str
    """The secret's ``secret_string_wo_version`` (a reference): a new password re-runs the migrator. Required."""
    db_port: DbPort = contract.DEFAULT_PORT
    """The proxy's port. Default: 3306."""
    db_name: str = DEFAULT_DB_NAME
    """The database (schema) it migrates. Default: app."""
    table_name: str = contract.DEFAULT_TABLE
    """The handler's table, named as the request function names it. Default: access_times."""
    runtime: LambdaRuntime = _FUNCTION_DEFAULTS.runtime
    """Lambda's Python runtime, as the request function's. Default: python3.12."""
    architecture: LambdaArchitecture = _FUNCTION_DEFAULTS.architecture
    """As the request function's. Default: arm64."""
    memory_mb: LambdaMemoryMb = 256
    """Memory, and with it the CPU share. Default: 256."""
    timeout_s: LambdaTimeoutS = 300
    """Long enough for a migration that rebuilds a large table. Default: 300."""
    invoke_on_deploy: bool = True
    """Run it from the deploy (``aws_lambda_invocation``). False where functions cannot be invoked (the local
    emulator); then whoever runs the stack runs the migrator. Default: True."""
    depends_on: Sequence[Any] = ()
    """What the migration needs in place before it runs besides the proxy (e.g. the Secrets Manager endpoint).
    Default: none."""

    @model_validator(mode="after")
    def _two_users(self) -> Self:
        if self.app_username.lower() == self.master_username.lower():
            self.refuse("app_username", f"a user other than the master {{master_username}} ({self.master_username})")
        return self

    def environment(self) -> dict[str, str]:
        """The migrator's environment (the handler contract's names): master over IAM, the app user's secret ARN."""
        return {
            contract.DB_HOST: self.proxy.endpoint,
            contract.DB_PORT: str(self.db_port),
            contract.DB_NAME: self.db_name,
            contract.DB_USER: self.master_username,
            contract.DB_TABLE: self.table_name,
            contract.DB_AUTH: contract.AUTH_IAM,
            contract.APP_DB_USER: self.app_username,
            contract.APP_DB_SECRET_ARN: self.app_secret_arn,
        }


class Migrator(Construct):
    """The migrator function, its role (connect as the master, read the app user's secret) and its log group; on the
    cloud target also its run by the deploy."""

    def __init__(self, scope: Construct, id_: str, props: MigratorProps):
        super().__init__(scope, id_)
        expect_props(props, MigratorProps)
        name = f"{props.name_prefix}-migrator"
        self.log_group = log_group(
            self,
            "log-group",
            name=f"/aws/lambda/{name}",
            retention_days=props.log_retention_days,
            kms_key_arn=props.kms_key_arn,
        )
        self.role = aws("iam_role").IamRole(
            self,
            "role",
            name=f"{name}-exec",
            assume_role_policy=service_assume_role(self, "trust", "lambda.amazonaws.com"),
        )
        vpc_access = aws("iam_role_policy_attachment").IamRolePolicyAttachment(
            self,
            "vpc-access",
            role=self.role.name,
            policy_arn=f"arn:{props.ctx.partition}:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole",
        )
        read_secret = aws("iam_role_policy").IamRolePolicy(
            self,
            "read-app-secret",
            name="read-app-user-secret",
            role=self.role.id,
            policy=policy_document(
                self,
                "read-app-secret-permissions",
                [
                    {
                        "sid": "ReadTheAppUserSecretOnly",
                        "actions": ["secretsmanager:GetSecretValue"],
                        "resources": [props.app_secret_arn],
                    },
                    {
                        "sid": "DecryptOnlyThroughSecretsManager",
                        "actions": ["kms:Decrypt"],
                        "resources": [props.kms_key_arn],
                        "condition": [
                            {
                                "test": "StringEquals",
                                "variable": "kms:ViaService",
                                "values": [f"secretsmanager.{props.ctx.region}.amazonaws.com"],
                            }
                        ],
                    },
                ],
            ),
        )
        self.connect_grant = props.proxy.grant_connect(self.role, props.master_username)

        lambda_function = aws("lambda_function")
        self.function = lambda_function.LambdaFunction(
            self,
            "function",
            function_name=name,
            role=self.role.arn,
            runtime=props.runtime,
            architectures=[props.architecture],
            handler=contract.MIGRATOR_HANDLER,
            filename=props.code.filename,
            source_code_hash=props.code.source_code_hash,
            memory_size=props.memory_mb,
            timeout=props.timeout_s,
            kms_key_arn=props.kms_key_arn,
            environment=lambda_function.LambdaFunctionEnvironment(variables=props.environment()),
            vpc_config=lambda_function.LambdaFunctionVpcConfig(
                subnet_ids=props.subnet_ids, security_group_ids=[props.security_group_id]
            ),
            logging_config=lambda_function.LambdaFunctionLoggingConfig(
                log_format="JSON", log_group=self.log_group.name
            ),
            tracing_config=lambda_function.LambdaFunctionTracingConfig(mode="PassThrough"),
            depends_on=[self.log_group, vpc_access],
        )
        skip_checks(
            self.function,
            {
                "CKV_AWS_116": "invoked synchronously by the deploy, which fails on an error: no dead-letter queue",
                "CKV_AWS_272": "code signing needs a Signer profile outside this stack; the zip hash is pinned",
                "CKV_AWS_115": "runs once per deploy; concurrent runs serialize on a DB lock, so no reservation",
            },
        )

        self.invocation = None
        if props.invoke_on_deploy:
            # Replaced (so invoked again) whenever a trigger changes; the request function waits for it.
            self.invocation = aws("lambda_invocation").LambdaInvocation(
                self,
                "migrate",
                function_name=self.function.function_name,
                input=json.dumps({"schema_version": contract.SCHEMA_VERSION}),
                triggers=dict(
                    zip(
                        MIGRATION_TRIGGERS,
                        (str(contract.SCHEMA_VERSION), props.app_username, props.app_secret_version),
                        strict=True,
                    )
                ),
                depends_on=[
                    read_secret,
                    self.connect_grant,
                    props.proxy.target,
                    props.proxy.read_secrets_policy,
                    *props.depends_on,
                ],
            )

    @property
    def name(self) -> str:
        return self.function.function_name
