"""StackKey in isolation: a rotating customer-managed key whose policy CloudWatch may use for this account only."""

from __future__ import annotations

import json

import pytest

from modules.encryption import StackKey, StackKeyProps
from modules.validation import PropError
from tests.construct_support import Template
from tests.synth_support import sample_context


@pytest.fixture(scope="module")
def key() -> Template:
    return Template.of(lambda stack, ctx: StackKey(stack, "key", StackKeyProps(name_prefix="t", ctx=ctx)))


def test_the_key_rotates_and_has_an_alias(key):
    key_id = key.ref("aws_kms_key", {"enable_key_rotation": True, "deletion_window_in_days": 30}, "key_id")
    key.has_resource_properties("aws_kms_alias", {"name": "alias/t", "target_key_id": key_id})


def test_logs_and_alarms_may_use_the_key_only_for_this_account(key):
    policy = json.loads(key.has_resource_properties("aws_kms_key", {})["policy"])
    by_sid = {statement["Sid"]: statement for statement in policy["Statement"]}
    assert by_sid["CloudWatchAlarmsPublishToTheEncryptedTopic"]["Condition"] == {
        "StringEquals": {"aws:SourceAccount": "${data.aws_caller_identity.caller.account_id}"}
    }
    assert by_sid["CloudWatchLogsUsesForThisAccountsGroups"]["Principal"] == {
        "Service": "logs.ap-northeast-1.amazonaws.com"
    }


@pytest.mark.parametrize("days", [6, 31])
def test_a_deletion_window_outside_aws_range_is_refused(days):
    with pytest.raises(
        PropError, match=rf"invalid prop StackKeyProps\.deletion_window_days={days}: allowed an integer from 7 to 30"
    ):
        StackKeyProps(name_prefix="t", ctx=sample_context(), deletion_window_days=days)
