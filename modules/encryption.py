"""One customer-managed KMS key for the stack's data at rest: DB storage, the DB secret, logs, Lambda env, alarms."""

from __future__ import annotations

import json
from typing import Annotated

from constructs import Construct

from modules.bindings import aws
from modules.context import AwsContext
from modules.field_types import NamePrefix
from modules.props import Props, between, expect_props


def key_policy(ctx: AwsContext) -> str:
    """AWS's default key policy (the account administers the key through IAM), plus CloudWatch Logs for our groups
    and CloudWatch alarms publishing to the encrypted alarm topic (only on behalf of this account).

    A key policy is a resource policy: ``Resource: "*"`` means this key. It is kept inline rather than as an
    ``aws_iam_policy_document`` because identity-policy checks would misread that wildcard.
    """
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "AccountAdministersThroughIam",
                    "Effect": "Allow",
                    "Principal": {"AWS": ctx.arn("iam", "root", region=False)},
                    "Action": "kms:*",
                    "Resource": "*",
                },
                {
                    "Sid": "CloudWatchLogsUsesForThisAccountsGroups",
                    "Effect": "Allow",
                    "Principal": {"Service": f"logs.{ctx.region}.amazonaws.com"},
                    "Action": [
                        "kms:Encrypt*",
                        "kms:Decrypt*",
                        "kms:ReEncrypt*",
                        "kms:GenerateDataKey*",
                        "kms:Describe*",
                    ],
                    "Resource": "*",
                    "Condition": {"ArnLike": {"kms:EncryptionContext:aws:logs:arn": ctx.arn("logs", "log-group:*")}},
                },
                # CloudWatch publishes alarm notifications to an SNS topic encrypted with this key:
                # https://docs.aws.amazon.com/sns/latest/dg/sns-key-management.html#compatibility-with-aws-services
                {
                    "Sid": "CloudWatchAlarmsPublishToTheEncryptedTopic",
                    "Effect": "Allow",
                    "Principal": {"Service": "cloudwatch.amazonaws.com"},
                    "Action": ["kms:Decrypt", "kms:GenerateDataKey*"],
                    "Resource": "*",
                    "Condition": {"StringEquals": {"aws:SourceAccount": ctx.account_id}},
                },
            ],
        },
        sort_keys=True,
    )


class StackKeyProps(Props):
    name_prefix: NamePrefix
    """Alias ``alias/<name_prefix>`` and the key's description. Required."""
    ctx: AwsContext
    """Account and region the key policy is scoped to. Required."""
    deletion_window_days: Annotated[int, between(7, 30)] = 30
    """Days a deleted key stays recoverable (the AWS maximum). Default: 30."""


class StackKey(Construct):
    """A rotating CMK for everything the stack stores."""

    def __init__(self, scope: Construct, id_: str, props: StackKeyProps):
        super().__init__(scope, id_)
        expect_props(props, StackKeyProps)
        self.key = aws("kms_key").KmsKey(
            self,
            "key",
            description=f"{props.name_prefix}: DB storage, DB secret, logs, Lambda environment, alarms",
            enable_key_rotation=True,
            deletion_window_in_days=props.deletion_window_days,
            policy=key_policy(props.ctx),
        )
        aws("kms_alias").KmsAlias(self, "alias", name=f"alias/{props.name_prefix}", target_key_id=self.key.key_id)

    @property
    def arn(self) -> str:
        return self.key.arn
