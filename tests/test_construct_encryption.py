"""StackKey in isolation: rotating key whose policy admits Logs and CloudWatch alarms for this account only."""

from __future__ import annotations

import json

from modules.encryption import StackKey, StackKeyProps
from tests.synth_support import only, synth_construct


def test_key_rotates_has_an_alias_and_scoped_service_statements():
    stack = synth_construct(lambda st, ctx: StackKey(st, "key", StackKeyProps(name_prefix="t", ctx=ctx)))
    key = only(stack, "aws_kms_key")
    assert key["enable_key_rotation"] is True and key["deletion_window_in_days"] == 30
    assert only(stack, "aws_kms_alias")["name"] == "alias/t"
    statements = {s["Sid"]: s for s in json.loads(key["policy"])["Statement"]}
    assert set(statements) == {
        "AccountAdministersThroughIam",
        "CloudWatchLogsUsesForThisAccountsGroups",
        "CloudWatchAlarmsPublishToTheEncryptedTopic",
    }
    alarms = statements["CloudWatchAlarmsPublishToTheEncryptedTopic"]
    assert alarms["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    assert alarms["Action"] == ["kms:Decrypt", "kms:GenerateDataKey*"]
    assert alarms["Condition"]["StringEquals"]["aws:SourceAccount"] == "${data.aws_caller_identity.caller.account_id}"
    logs = statements["CloudWatchLogsUsesForThisAccountsGroups"]
    assert logs["Principal"] == {"Service": "logs.ap-northeast-1.amazonaws.com"}
