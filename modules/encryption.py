"""One customer-managed KMS key for the stack's data at rest: DB storage, the DB secret, logs, Lambda env."""

from __future__ import annotations

import json

from constructs import Construct

from modules.bindings import aws
from modules.context import AwsContext


def key_policy(ctx: AwsContext) -> str:
    """AWS's default key policy (the account administers the key through IAM), plus CloudWatch Logs for our groups.

    A key policy is a resource policy: ``Resource: "*"`` means this key. It is kept inline rather than as an
    ``aws_iam_policy_document`` because identity-policy checks would misread that wildcard.
    """
    return json.dumps({"Version": "2012-10-17", "Statement": [
        {"Sid": "AccountAdministersThroughIam", "Effect": "Allow",
         "Principal": {"AWS": ctx.arn("iam", "root", region=False)}, "Action": "kms:*", "Resource": "*"},
        {"Sid": "CloudWatchLogsUsesForThisAccountsGroups", "Effect": "Allow",
         "Principal": {"Service": f"logs.{ctx.region}.amazonaws.com"},
         "Action": ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"],
         "Resource": "*",
         "Condition": {"ArnLike": {"kms:EncryptionContext:aws:logs:arn": ctx.arn("logs", "log-group:*")}}},
    ]}, sort_keys=True)


class StackKey(Construct):
    """A rotating CMK for everything the stack stores."""

    def __init__(self, scope: Construct, id_: str, *, name_prefix: str, ctx: AwsContext):
        super().__init__(scope, id_)
        self.key = aws("kms_key").KmsKey(
            self, "key", description=f"{name_prefix}: DB storage, DB secret, logs, Lambda environment",
            enable_key_rotation=True, deletion_window_in_days=30, policy=key_policy(ctx))
        aws("kms_alias").KmsAlias(self, "alias", name=f"alias/{name_prefix}", target_key_id=self.key.key_id)

    @property
    def arn(self) -> str:
        return self.key.arn
