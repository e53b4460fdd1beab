"""CloudWatch log groups with retention and encryption, the one way every construct creates them."""

from __future__ import annotations

from constructs import Construct

from modules.bindings import aws
from modules.suppressions import skip_checks

ONE_YEAR_DAYS = 365


def log_group(scope: Construct, id_: str, *, name: str, retention_days: int, kms_key_arn: str):
    group = aws("cloudwatch_log_group").CloudwatchLogGroup(
        scope, id_, name=name, retention_in_days=retention_days, kms_key_id=kms_key_arn
    )
    if retention_days < ONE_YEAR_DAYS:
        skip_checks(group, {"CKV_AWS_338": f"retention shortened to {retention_days} days by log_retention_days"})
    return group
