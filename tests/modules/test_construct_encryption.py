"""StackKey in isolation: rotating key whose policy admits Logs and CloudWatch alarms for this account only."""

from __future__ import annotations

import json

import pytest

from modules.encryption import StackKey, StackKeyProps
from modules.validation import PropError
from tests.modules.construct_support import Template
from tests.modules.synth_support import sample_context


@pytest.fixture(scope="module")
def key() -> Template:
    return Template.of(lambda stack, ctx: StackKey(stack, "key", StackKeyProps(name_prefix="t", ctx=ctx)))


def test_key_rotates_has_an_alias_and_scoped_service_statements(key):
    key_id = key.ref("aws_kms_key", {"enable_key_rotation": True, "deletion_window_in_days": 30}, "key_id")
    key.has_resource_properties("aws_kms_alias", {"name": "alias/t", "target_key_id": key_id})
    statements = {
        s["Sid"]: s for s in json.loads(key.has_resource_properties("aws_kms_key", {})["policy"])["Statement"]
    }
    assert set(statements) == {
        "AccountAdministersThroughIam",
        "CloudWatchLogsUsesForThisAccountsGroups",
        "CloudWatchAlarmsPublishToTheEncryptedTopic",
    }
    alarms = statements["CloudWatchAlarmsPublishToTheEncryptedTopic"]
    assert alarms["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    assert alarms["Action"] == ["kms:Decrypt", "kms:GenerateDataKey*"]
    assert alarms["Condition"] == {
        "StringEquals": {"aws:SourceAccount": "${data.aws_caller_identity.caller.account_id}"}
    }
    logs = statements["CloudWatchLogsUsesForThisAccountsGroups"]
    assert logs["Principal"] == {"Service": "logs.ap-northeast-1.amazonaws.com"}


@pytest.mark.parametrize("days", [6, 31])
def test_a_deletion_window_outside_aws_range_is_refused(days):
    expected = rf"invalid prop StackKeyProps\.deletion_window_days={days}: allowed an integer from 7 to 30"
    with pytest.raises(PropError, match=expected):
        StackKeyProps(name_prefix="t", ctx=sample_context(), deletion_window_days=days)
