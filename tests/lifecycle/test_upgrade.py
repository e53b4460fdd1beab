"""A stack deployed by the previous release upgrades to this release in one deploy with no row lost.

The shared deployment (conftest) is that upgrade: the previous release deployed and stored rows through its function
logged in as the master (schema v1-v3 in the local DB); the same checkout switched to this tree planned and deployed
once; ``serve`` then ran the migrator once and the function, as the application user, served the old rows. The other
lifecycle modules then run on this upgraded stack (the no-change plan shows it equals a fresh deploy).
"""

from __future__ import annotations

import pytest

from handler import app_contract as contract
from tests.lifecycle.lifecycle_support import PREVIOUS_RELEASE, Deployment, action_counts

pytestmark = pytest.mark.lifecycle

UPGRADE_COUNTS = {"create": 16, "update": 4, "delete": 1, "replace": 0}
"""What this release changes in a stack the previous release deployed (local target; the cloud adds the migrator's
invocation): the application user's secret, the migrator and its network path are new; the proxy (second auth block),
its secret-read policy, the request function (DB_USER) and the stage (throttling) change in place; the request
role's master grant goes."""


def test_the_previous_release_stored_rows_as_the_master(deployment: Deployment) -> None:
    record = deployment.upgrade
    assert record is not None
    assert [answer["count"] for answer in record.previous_answers] == [1, 2, 3], PREVIOUS_RELEASE
    assert all(answer["inserted"] for answer in record.previous_answers)


def test_one_deploy_upgrades_in_place_with_nothing_replaced(deployment: Deployment) -> None:
    record = deployment.upgrade
    assert record is not None
    changes = record.upgrade_changes
    assert action_counts(changes) == UPGRADE_COUNTS, changes
    for kept in ("aws_db_instance", "aws_db_proxy", "aws_db_proxy_default_target_group", "aws_db_proxy_target"):
        address = deployment.address(kept)
        assert changes.get(address, ("no-op",)) in (("no-op",), ("update",)), (address, changes.get(address))
    assert changes[deployment.address("aws_db_proxy")] == ("update",)  # the application user's auth block
    assert not record.after_upgrade_has_changes, "a second plan right after the upgrade shows no changes"


def test_serve_migrates_once_and_the_function_serves_the_old_rows_as_the_app_user(deployment: Deployment) -> None:
    record = deployment.upgrade
    assert record is not None
    assert len(record.migrated) == 1, record.migrated  # the migrator ran once, before the function served
    (migrated,) = record.migrated
    assert (migrated["schema_version"], migrated["applied"]) == (contract.SCHEMA_VERSION, [4])  # v1-v3 were there
    assert migrated["app_user"] == "app_user"
    status, answer = record.answer
    assert status == 200 and answer["count"] == 4, answer  # the count continues from the three old rows
    old = [previous["inserted"] for previous in record.previous_answers]
    assert set(answer["times"]) == {*old, answer["inserted"]}, (old, answer)  # every row, the old ones too
    function_env = deployment.config()["resource"]["aws_lambda_function"]
    request = next(f for f in function_env.values() if f["handler"] == contract.REQUEST_HANDLER)
    assert request["environment"]["variables"][contract.DB_USER] == "app_user"  # IAM allows it only this user
