"""The Lambda function in the VPC: its zip, role, log group and environment (no password, ever)."""

from __future__ import annotations

from pathlib import Path

from cdktf import AssetType, TerraformAsset
from constructs import Construct

from modules.bindings import aws
from modules.context import AwsContext
from modules.logs import log_group
from modules.packaging import build_handler_zip
from modules.policy import service_assume_role
from modules.settings import StackSettings
from modules.suppressions import skip_checks

REPO_ROOT = Path(__file__).resolve().parent.parent
HANDLER_DIR = REPO_ROOT / "handler"
BUILD_DIR = REPO_ROOT / "build"
HANDLER_ENTRY = "app.lambda_handler"


class Function(Construct):
    def __init__(self, scope: Construct, id_: str, *, settings: StackSettings, ctx: AwsContext,
                 subnet_ids: list[str], security_group_id: str, kms_key_arn: str, db_host: str):
        super().__init__(scope, id_)
        name = f"{settings.name_prefix}-api"
        self.log_group = log_group(self, "log-group", name=f"/aws/lambda/{name}",
                                   retention_days=settings.log_retention_days, kms_key_arn=kms_key_arn)
        self.role = aws("iam_role").IamRole(
            self, "role", name=f"{name}-exec",
            assume_role_policy=service_assume_role(self, "trust", "lambda.amazonaws.com"))
        vpc_access = aws("iam_role_policy_attachment").IamRolePolicyAttachment(
            self, "vpc-access", role=self.role.name,
            policy_arn=f"arn:{ctx.partition}:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole")

        # Deterministic zip (sorted entries, fixed mtimes): an unchanged handler never redeploys.
        package = build_handler_zip(HANDLER_DIR, BUILD_DIR / "handler.zip")
        asset = TerraformAsset(self, "code", path=str(package.path), type=AssetType.FILE)

        lambda_function = aws("lambda_function")
        self.function = lambda_function.LambdaFunction(
            self, "function", function_name=name, role=self.role.arn,
            runtime=settings.lambda_runtime, architectures=[settings.lambda_architecture],
            handler=HANDLER_ENTRY, filename=asset.path, source_code_hash=package.sha256_base64,
            memory_size=settings.lambda_memory_mb, timeout=settings.lambda_timeout_s,
            reserved_concurrent_executions=settings.lambda_reserved_concurrency,
            kms_key_arn=kms_key_arn,
            environment=lambda_function.LambdaFunctionEnvironment(variables={
                "DB_HOST": db_host,
                "DB_PORT": str(settings.db_port),
                "DB_NAME": settings.db_name,
                "DB_USER": settings.db_username,
                "DB_TABLE": settings.table_name,
                "DB_AUTH": "iam",
                "RESPONSE_LIMIT": str(settings.response_limit),
            }),
            vpc_config=lambda_function.LambdaFunctionVpcConfig(
                subnet_ids=subnet_ids, security_group_ids=[security_group_id]),
            logging_config=lambda_function.LambdaFunctionLoggingConfig(
                log_format="JSON", log_group=self.log_group.name),
            tracing_config=lambda_function.LambdaFunctionTracingConfig(mode="PassThrough"),
            depends_on=[self.log_group, vpc_access],
        )
        skip_checks(self.function, {
            "CKV_AWS_116": "synchronous API backend: a dead-letter queue only applies to async invocations",
            "CKV_AWS_272": "code signing needs a Signer profile outside this stack; the zip hash is pinned",
            "CKV_AWS_115": "reserved concurrency is a setting (lambda_reserved_concurrency); the proxy caps DB use",
        })

    @property
    def name(self) -> str:
        return self.function.function_name
