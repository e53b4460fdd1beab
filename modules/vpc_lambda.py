"""A Lambda function in the VPC, built the one way both of the stack's functions are: an encrypted log group with
retention, an execution role with VPC access only, JSON logs, the environment encrypted with the stack key.

The caller adds what differs (its grants, its checkov reasons); the construct ids are the caller's, so moving code
here leaves every Terraform address as it was.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from constructs import Construct

from modules.bindings import aws
from modules.logs import log_group
from modules.policy import service_assume_role


@dataclass(frozen=True)
class VpcLambdaSpec:
    """What a function in the VPC needs besides its role and log group (validated by the caller's props)."""

    name: str
    handler: str
    runtime: str
    architecture: str
    filename: str
    source_code_hash: str
    memory_mb: int
    timeout_s: int
    kms_key_arn: str
    environment: dict[str, str]
    subnet_ids: list[str]
    security_group_id: str
    log_retention_days: int
    partition: str
    reserved_concurrency: int | None = None


@dataclass(frozen=True)
class VpcLambda:
    log_group: Any
    role: Any
    vpc_access: Any
    function: Any


def execution_role(scope: Construct, spec: VpcLambdaSpec) -> tuple[Any, Any, Any]:
    """``(log group, role, VPC access attachment)``: made before the function so grants can name the role."""
    group = log_group(
        scope,
        "log-group",
        name=f"/aws/lambda/{spec.name}",
        retention_days=spec.log_retention_days,
        kms_key_arn=spec.kms_key_arn,
    )
    role = aws("iam_role").IamRole(
        scope,
        "role",
        name=f"{spec.name}-exec",
        assume_role_policy=service_assume_role(scope, "trust", "lambda.amazonaws.com"),
    )
    vpc_access = aws("iam_role_policy_attachment").IamRolePolicyAttachment(
        scope,
        "vpc-access",
        role=role.name,
        policy_arn=f"arn:{spec.partition}:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole",
    )
    return group, role, vpc_access


def vpc_lambda(scope: Construct, spec: VpcLambdaSpec) -> VpcLambda:
    """The log group, the role and the function, which waits for both (its first logs and ENIs need them)."""
    group, role, vpc_access = execution_role(scope, spec)
    lambda_function = aws("lambda_function")
    function = lambda_function.LambdaFunction(
        scope,
        "function",
        function_name=spec.name,
        role=role.arn,
        runtime=spec.runtime,
        architectures=[spec.architecture],
        handler=spec.handler,
        filename=spec.filename,
        source_code_hash=spec.source_code_hash,
        memory_size=spec.memory_mb,
        timeout=spec.timeout_s,
        reserved_concurrent_executions=spec.reserved_concurrency,
        kms_key_arn=spec.kms_key_arn,
        environment=lambda_function.LambdaFunctionEnvironment(variables=spec.environment),
        vpc_config=lambda_function.LambdaFunctionVpcConfig(
            subnet_ids=spec.subnet_ids, security_group_ids=[spec.security_group_id]
        ),
        logging_config=lambda_function.LambdaFunctionLoggingConfig(log_format="JSON", log_group=group.name),
        tracing_config=lambda_function.LambdaFunctionTracingConfig(mode="PassThrough"),
        depends_on=[group, vpc_access],
    )
    return VpcLambda(log_group=group, role=role, vpc_access=vpc_access, function=function)
