"""Cloud-readiness of the stack, proven on the local emulator: alarms, topic, dashboard and the proxy's log group
deploy; replacing the proxy (a DB subnet change) replaces its default target group and target in the same plan and
leaves the DB registered with the configured pool; removing ``init_query`` leaves no permanent diff.

The DB subnet change needs the emulator to keep a modified DB subnet group (moto 5.2.5's
``modify_db_subnet_group`` drops it: fix (e) in local/control_plane/EMULATOR.md).

On the stack the lifecycle tier shares (see conftest), at its default settings when the module starts; the tier's
last module destroys it. Run with ``pytest -m lifecycle -s tests/lifecycle``.
"""

from __future__ import annotations

import json
import time

import pytest

from local.control_plane import lifecycle as lc
from local.control_plane.state_queries import state_list
from tests.lifecycle.lifecycle_support import STACK

pytestmark = pytest.mark.lifecycle

REPLACE_PROXY = {"SMS_LOCAL__DB_SUBNET_CIDRS": "10.0.21.0/24,10.0.12.0/24"}
INIT_QUERY = {"SMS_LOCAL__INIT_QUERY": "SET time_zone = '+00:00'"}
REPLACED = ("aws_db_proxy", "aws_db_proxy_default_target_group", "aws_db_proxy_target")


def test_deploy_creates_alarms_topic_dashboard_and_proxy_log_group(deployment):
    types = {a.split(".")[0] for a in state_list(STACK, deployment.project) if not a.startswith("data.")}
    assert {"aws_sns_topic", "aws_cloudwatch_metric_alarm", "aws_cloudwatch_dashboard"} <= types
    alarms = deployment.client("cloudwatch").describe_alarms(AlarmNamePrefix="sms-local-")["MetricAlarms"]
    assert len(alarms) == 11
    topic = deployment.outputs["alarm_topic_arn"]
    assert all(a["AlarmActions"] == [topic] for a in alarms)
    attributes = deployment.client("sns").get_topic_attributes(TopicArn=topic)["Attributes"]
    assert attributes["KmsMasterKeyId"].startswith("arn:aws:kms:")
    body = json.loads(
        deployment.client("cloudwatch").get_dashboard(DashboardName=deployment.outputs["dashboard_name"])[
            "DashboardBody"
        ]
    )
    assert body["widgets"][0]["properties"]["metrics"][0][3] == deployment.proxy_name()
    groups = deployment.client("logs").describe_log_groups(logGroupNamePrefix="/aws/rds/proxy/")["logGroups"]
    assert [g["logGroupName"] for g in groups] == [f"/aws/rds/proxy/{deployment.proxy_name()}"]
    assert groups[0]["retentionInDays"] == 7 and groups[0]["kmsKeyId"].startswith("arn:aws:kms:")


def test_operator_outputs(deployment):
    outputs = deployment.outputs
    assert outputs["proxy_arn"].startswith("arn:aws:rds:ap-northeast-1:123456789012:db-proxy:")
    assert outputs["proxy_resource_id"] == outputs["proxy_arn"].rsplit(":", 1)[1]
    assert outputs["proxy_target_group"] == "default"
    assert outputs["proxy_role_arn"].endswith(":role/sms-local-proxy-secrets")
    assert outputs["function_role_arn"].endswith(":role/sms-local-api-exec")
    assert outputs["log_groups"]["proxy"] == f"/aws/rds/proxy/{deployment.proxy_name()}"
    assert outputs["dashboard_url"].endswith(f"#dashboards/dashboard/{outputs['dashboard_name']}")


def test_re_synthesized_stack_has_no_changes(deployment):
    result = lc.plan(STACK, deployment.project, synthesize=True)
    assert not result.has_changes, f"unexpected changes: {result.changes}"


def test_db_subnet_change_replaces_proxy_target_group_and_target_in_one_plan(deployment):
    result = lc.plan(STACK, deployment.project, extra_env=REPLACE_PROXY, synthesize=True)
    for rtype in REPLACED:
        actions = result.changes.get(deployment.address(rtype))
        assert actions is not None and set(actions) == {"delete", "create"}, (rtype, actions, result.changes)
    assert deployment.address("aws_db_instance") not in result.changes


def test_replacement_applies_and_leaves_the_db_registered_with_the_pool(deployment):
    started = time.monotonic()
    deployment.deploy(REPLACE_PROXY, synthesize=False)
    rds = deployment.client("rds")
    name = deployment.proxy_name()
    targets = rds.describe_db_proxy_targets(DBProxyName=name)["Targets"]
    assert [t["RdsResourceId"] for t in targets] == ["sms-local-db"]
    (group,) = rds.describe_db_proxy_target_groups(DBProxyName=name)["TargetGroups"]
    assert group["ConnectionPoolConfig"]["MaxConnectionsPercent"] == 70
    assert not lc.plan(STACK, deployment.project, extra_env=REPLACE_PROXY, synthesize=True).has_changes
    print(f"[test] proxy replacement applied in {time.monotonic() - started:.0f} s")


def test_removing_init_query_leaves_no_permanent_diff(deployment):
    deployment.deploy({**REPLACE_PROXY, **INIT_QUERY})
    (group,) = deployment.client("rds").describe_db_proxy_target_groups(DBProxyName=deployment.proxy_name())[
        "TargetGroups"
    ]
    if "InitQuery" not in group["ConnectionPoolConfig"]:
        pytest.skip(
            "the emulator does not store InitQuery (moto 5.2.5), so removing it cannot diff here; "
            "the guard is asserted on the synthesized JSON (tests/modules/test_construct_proxy.py)"
        )
    result = lc.plan(STACK, deployment.project, extra_env=REPLACE_PROXY, synthesize=True)
    assert not result.has_changes, f"removing init_query must not diff forever: {result.changes}"
