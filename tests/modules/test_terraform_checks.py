"""The synthesized stacks are valid Terraform (offline, through the provider mirror) and pass checkov.

checkov's terraform_json runner does not read inline suppressions, so the accepted findings live in the
code (``modules.suppressions.skip_checks``, each with a reason, rendered into the resource's ``//`` block)
and this test enforces them: every failed check must be accepted on that very resource, and every
accepted check must still fail (no stale suppressions).
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from local.control_plane.toolchain import terraform_env
from modules.project import REPO_ROOT
from tests.modules.synth_support import default_synth

pytestmark = pytest.mark.heavy

CHECKOV = REPO_ROOT / "tools" / "checkov" / ".venv" / "bin" / "checkov"
SKIP = re.compile(r"^checkov:skip=([A-Z0-9_]+):(.+)$")


def _stack_dir(name: str) -> Path:
    return default_synth()[0] / "stacks" / name


@pytest.mark.parametrize("name", ["local", "aws"])
def test_terraform_validate_offline(name, tmp_path):
    env = terraform_env()
    env["TF_DATA_DIR"] = str(tmp_path / ".terraform")
    init = subprocess.run(
        ["terraform", "init", "-backend=false", "-input=false", "-no-color"],
        cwd=_stack_dir(name),
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert init.returncode == 0, init.stdout + init.stderr
    validate = subprocess.run(
        ["terraform", "validate", "-json", "-no-color"],
        cwd=_stack_dir(name),
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    result = json.loads(validate.stdout)
    assert result["valid"] is True and result["error_count"] == 0, result["diagnostics"]


def accepted_findings(stack: dict) -> dict[tuple[str, str], str]:
    """{(block name, check id): reason} from the ``//.checkov`` entries of resources and data sources."""
    accepted = {}
    for section in ("resource", "data", "provider"):
        blocks = stack.get(section, {})
        items = (
            [(rtype, blocks[rtype]) for rtype in blocks]
            if section == "provider"
            else [(name, block) for rtype in blocks.values() for name, block in rtype.items()]
        )
        for name, block in items:
            for entry in block if isinstance(block, list) else [block]:
                for line in entry.get("//", {}).get("checkov", []):
                    check, reason = SKIP.match(line).groups()
                    assert len(reason.strip()) > 15, f"accepted finding {check} on {name} needs a real reason"
                    accepted[(name, check)] = reason
    return accepted


def _block_name(checkov_resource: str) -> str:
    # Python checks report "resource.<name>"/"data.<name>", graph checks "<type>.<name>", providers "aws.default".
    return checkov_resource.split(".", 1)[1] if "." in checkov_resource else checkov_resource


@pytest.fixture(scope="module")
def checkov_results():
    """One checkov run over both stacks (it starts once), its checks split by the file each was found in (not
    ``--quiet``, which would leave the passed checks out)."""
    if not CHECKOV.exists():
        pytest.fail(f"checkov is not installed at {CHECKOV}: run `cd tools/checkov && pipenv install` (see README)")
    outdir, stacks = default_synth()
    files = {name: outdir / "stacks" / name / "cdk.tf.json" for name in stacks}
    run = subprocess.run(
        [
            str(CHECKOV),
            *[argument for path in files.values() for argument in ("-f", str(path))],
            "--framework",
            "terraform_json",
            "--compact",
            "-o",
            "json",
            "--skip-download",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={"PATH": "/usr/bin:/bin", "BC_SKIP_MAPPING": "TRUE"},
    )
    assert run.stdout.strip(), run.stderr[-2000:]
    report = json.loads(run.stdout)
    assert report["summary"]["parsing_errors"] == 0, report["summary"]

    def checks_of(kind: str, name: str) -> list[dict]:
        suffix = f"/stacks/{name}/cdk.tf.json"
        return [check for check in report["results"].get(kind, []) if check["file_path"].endswith(suffix)]

    results = {
        name: {"failed_checks": checks_of("failed_checks", name), "passed": len(checks_of("passed_checks", name))}
        for name in stacks
    }
    assert sum(len(r["failed_checks"]) for r in results.values()) == report["summary"]["failed"]
    assert sum(r["passed"] for r in results.values()) == report["summary"]["passed"]
    return stacks, results


@pytest.mark.parametrize("name", ["local", "aws"])
def test_checkov_has_no_failure_that_is_not_accepted_in_code(name, checkov_results):
    stacks, results = checkov_results
    accepted = accepted_findings(stacks[name])
    unaccepted = [
        (c["check_id"], c["resource"], c["check_name"])
        for c in results[name]["failed_checks"]
        if (_block_name(c["resource"]), c["check_id"]) not in accepted and ("aws", c["check_id"]) not in accepted
    ]
    assert unaccepted == []
    assert results[name]["passed"] > 100, "checkov really ran its AWS checks"


@pytest.mark.parametrize("name", ["local", "aws"])
def test_no_stale_accepted_findings(name, checkov_results):
    stacks, results = checkov_results
    failed = {(_block_name(c["resource"]), c["check_id"]) for c in results[name]["failed_checks"]}
    failed |= {("aws", c["check_id"]) for c in results[name]["failed_checks"] if c["resource"].startswith("aws.")}
    stale = sorted(set(accepted_findings(stacks[name])) - failed)
    assert stale == [], f"these checks now pass, remove their skip_checks entries: {stale}"


def test_every_accepted_finding_is_listed_in_the_operations_docs():
    operations = (REPO_ROOT / "docs" / "operations.md").read_text()
    ids = {check for stack in default_synth()[1].values() for (_, check) in accepted_findings(stack)}
    assert ids and [check for check in sorted(ids) if f"| {check} |" not in operations] == []
