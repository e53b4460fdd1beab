"""Account, partition and region of the deployment, resolved by Terraform, for building ARNs."""

from __future__ import annotations

from dataclasses import dataclass

from constructs import Construct

from modules.bindings import aws


@dataclass(frozen=True)
class AwsContext:
    account_id: str
    partition: str
    region: str

    @classmethod
    def lookup(cls, scope: Construct, region: str) -> AwsContext:
        identity = aws("data_aws_caller_identity").DataAwsCallerIdentity(scope, "caller")
        partition = aws("data_aws_partition").DataAwsPartition(scope, "partition")
        return cls(account_id=identity.account_id, partition=partition.partition, region=region)

    def arn(self, service: str, resource: str, *, region: bool = True, account: bool = True) -> str:
        return (
            f"arn:{self.partition}:{service}:{self.region if region else ''}:"
            f"{self.account_id if account else ''}:{resource}"
        )
