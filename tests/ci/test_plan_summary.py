"""The CI plan summary: counts and replaced addresses from `terraform show -json` of a saved plan."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from modules.project import REPO_ROOT

SCRIPT = REPO_ROOT / "scripts" / "plan_summary.py"
FIXTURE = Path(__file__).parent / "fixtures" / "plan_proxy_replaced.json"
_spec = importlib.util.spec_from_file_location("plan_summary", SCRIPT)
plan_summary = importlib.util.module_from_spec(_spec)
sys.modules["plan_summary"] = plan_summary  # dataclasses look their module up while the class is built
_spec.loader.exec_module(plan_summary)


def test_fixture_plan_counts_and_replaced_addresses():
    summary = plan_summary.summarize(json.loads(FIXTURE.read_text()))
    assert summary.counts == {"add": 1, "change": 1, "replace": 4, "destroy": 1}
    assert [a.split(".")[0] for a, _ in summary.replaced] == [
        "aws_db_proxy",
        "aws_db_proxy_default_target_group",
        "aws_db_proxy_target",
        "aws_subnet",
    ]
    assert dict(summary.replaced)["aws_db_proxy_target.proxy_target_DBEE798E"] == "replace_by_triggers"
    assert summary.destroyed == ["aws_sns_topic_subscription.monitoring_email-1_DDDD"]


def test_cli_writes_markdown_for_the_step_summary():
    run = subprocess.run(
        [sys.executable, str(SCRIPT), str(FIXTURE), "--title", "aws stack"], capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("### aws stack\n")
    assert "| 1 | 1 | 4 | 1 |" in run.stdout
    assert (
        "- `aws_db_proxy_default_target_group.proxy_default-target-group_5C807BB1` (replace_by_triggers)" in run.stdout
    )


def test_cli_fails_clearly_on_a_missing_plan(tmp_path):
    run = subprocess.run(
        [sys.executable, str(SCRIPT), str(tmp_path / "none.json")], capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 2 and "cannot read" in run.stderr


def test_empty_plan_says_no_changes():
    text = plan_summary.to_markdown(plan_summary.summarize({"resource_changes": []}))
    assert "| 0 | 0 | 0 | 0 |" in text and "No changes." in text


ACTIONS = st.sampled_from(
    [["no-op"], ["create"], ["read"], ["update"], ["delete"], ["delete", "create"], ["create", "delete"]]
)


@given(st.lists(st.tuples(ACTIONS, st.sampled_from(["managed", "data"])), max_size=40))
def test_every_managed_change_is_counted_once(changes):
    plan = {
        "resource_changes": [
            {"address": f"r.n{i}", "mode": mode, "change": {"actions": actions}}
            for i, (actions, mode) in enumerate(changes)
        ]
    }
    summary = plan_summary.summarize(plan)
    managed = [actions for actions, mode in changes if mode == "managed"]
    assert sum(summary.counts.values()) == len([a for a in managed if a not in (["no-op"], ["read"])])
    assert summary.counts["replace"] == len(summary.replaced) == len([a for a in managed if len(a) == 2])
    assert summary.counts["destroy"] == len(summary.destroyed)
