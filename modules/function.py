"""The request function in the VPC: its zip, role, log group and environment (no password, ever)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cdktf import AssetType, TerraformAsset
from constructs import Construct

from handler import app_contract as contract
from modules.bindings import aws
from modules.context import AwsContext
from modules.database_options import DEFAULT_DB_NAME
from modules.db_users import DEFAULT_APP_USERNAME, DbUserName
from modules.field_types import DbPort, LogRetention, NamePrefix
from modules.function_options import FunctionOptions
from modules.logs import log_group
from modules.packaging import build_handler_zip
from modules.policy import service_assume_role
from modules.props import expect_props
from modules.suppressions import skip_checks

HANDLER_ENTRY = contract.REQUEST_HANDLER


class FunctionProps(FunctionOptions, LogRetention):
    name_prefix: NamePrefix
    """The function is ``<name_prefix>-api``; its role ``<name_prefix>-api-exec``. Required."""
    ctx: AwsContext
    """Partition of the AWS managed policy it attaches. Required."""
    code_dir: Path
    """Directory with the handler package (and ``requirements.txt`` pinning the driver). Required."""
    build_dir: Path
    """Where the deterministic zip is written. Required."""
    subnet_ids: list[str]
    """Subnets of the function's network interfaces. Required."""
    security_group_id: str
    """The function's security group (egress to the proxy only). Required."""
    kms_key_arn: str
    """Encrypts the environment and the log group. Required."""
    db_host: str
    """The proxy endpoint the handler connects to (never the DB itself). Required."""
    db_port: DbPort = contract.DEFAULT_PORT
    """The proxy's port. Default: 3306."""
    db_name: str = DEFAULT_DB_NAME
    """The database (schema) of the handler's tables. Default: app."""
    db_user: DbUserName = DEFAULT_APP_USERNAME
    """The DB user the handler logs in as: the application user (DML on its own tables only), never the master.
    Default: app_user."""

    def environment(self) -> dict[str, str]:
        """The handler's environment, named by its contract: IAM auth through the proxy, no password."""
        return {
            contract.DB_HOST: self.db_host,
            contract.DB_PORT: str(self.db_port),
            contract.DB_NAME: self.db_name,
            contract.DB_USER: self.db_user,
            contract.DB_TABLE: self.table_name,
            contract.DB_AUTH: contract.AUTH_IAM,
            contract.RESPONSE_LIMIT: str(self.response_limit),
        }


@dataclass(frozen=True)
class FunctionCode:
    """A deployment package staged by cdktf: the asset path and the hash Terraform compares (one zip, two functions)."""

    filename: str
    source_code_hash: str


class Function(Construct):
    """The request function: its deterministic zip (shared with the migrator), role, log group and environment."""

    def __init__(self, scope: Construct, id_: str, props: FunctionProps):
        super().__init__(scope, id_)
        expect_props(props, FunctionProps)
        name = f"{props.name_prefix}-api"
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

        # Deterministic zip (sorted entries, fixed mtimes): an unchanged handler never redeploys.
        package = build_handler_zip(props.code_dir, props.build_dir / "handler.zip")
        asset = TerraformAsset(self, "code", path=str(package.path), type=AssetType.FILE)
        self.code = FunctionCode(filename=asset.path, source_code_hash=package.sha256_base64)

        lambda_function = aws("lambda_function")
        self.function = lambda_function.LambdaFunction(
            self,
            "function",
            function_name=name,
            role=self.role.arn,
            runtime=props.runtime,
            architectures=[props.architecture],
            handler=HANDLER_ENTRY,
            filename=asset.path,
            source_code_hash=package.sha256_base64,
            memory_size=props.memory_mb,
            timeout=props.timeout_s,
            reserved_concurrent_executions=props.reserved_concurrency,
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
                "CKV_AWS_116": "synchronous API backend: a dead-letter queue only applies to async invocations",
                "CKV_AWS_272": "code signing needs a Signer profile outside this stack; the zip hash is pinned",
                "CKV_AWS_115": "reserved concurrency is a setting (lambda_reserved_concurrency); the proxy caps DB use",
            },
        )

    def serve_after(self, *resources) -> None:
        """Create or change the function only once ``resources`` are in place (the deploy's migration), so new code
        serves only on a schema migrated for it; on a failed migration the previous code keeps serving."""
        addresses = [f"{r.terraform_resource_type}.{r.friendly_unique_id}" for r in resources]
        self.function.depends_on = [*(self.function.depends_on or []), *addresses]

    @property
    def name(self) -> str:
        return self.function.function_name
