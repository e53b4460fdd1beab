"""The real cdktf, terraform and aws CLIs, typed as a user types them after ``eval "$(python -m local env)"``, against
the stack the lifecycle tier shares (see conftest), ending with a no-change diff."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator

import pytest

from tests.lifecycle.lifecycle_support import Deployment, worth_one_more_run

pytestmark = pytest.mark.lifecycle


@pytest.fixture(scope="module")
def deployed(deployment: Deployment) -> Iterator[tuple[Deployment, str]]:
    root = deployment.root
    env_script = subprocess.run(
        [str(root / ".venv/bin/python"), "-m", "local", "--port", str(deployment.project.emulator().port), "env"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    yield deployment, env_script


def typed(deployed: tuple[Deployment, str], command: str, timeout_s: float = 600) -> subprocess.CompletedProcess:
    """``command`` in a shell after ``eval "$(python -m local env)"``, with the project's venv on PATH.

    Run again once when `worth_one_more_run` says so, as ``python -m local`` does for its own steps: the check is
    the command, not the emulator's rare dropped connection.
    """
    deployment, env_script = deployed
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "TF_", "LOCAL_", "SMS_", "JSII_"))}
    clean["PATH"] = f"{deployment.root / '.venv' / 'bin'}:{clean.get('PATH', '')}"

    def run() -> subprocess.CompletedProcess:
        started = time.monotonic()
        result = subprocess.run(
            ["bash", "-c", f'eval "$ENV_SCRIPT"\n{command}'],
            env={**clean, "ENV_SCRIPT": env_script},
            cwd=deployment.root,
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
        print(f"[test] {command}: exit {result.returncode} in {time.monotonic() - started:.1f} s", flush=True)
        return result

    result = run()
    why = worth_one_more_run(result)
    if why:
        print(f"[test] {command}: {why}; once more", flush=True)
        result = run()
    return result


def test_the_real_clis_work_as_typed_after_eval(deployed) -> None:
    listed = typed(deployed, "terraform -chdir=cdktf.out/stacks/local state list")
    assert listed.returncode == 0, listed.stderr
    proxy_address = next(line for line in listed.stdout.splitlines() if line.startswith("aws_db_proxy."))
    shown = typed(deployed, f"terraform -chdir=cdktf.out/stacks/local state show {proxy_address}")
    assert shown.returncode == 0 and "require_tls" in shown.stdout, shown.stderr
    proxies = typed(deployed, "aws rds describe-db-proxies")
    assert proxies.returncode == 0, proxies.stderr
    endpoint = json.loads(proxies.stdout)["DBProxies"][0]["Endpoint"]
    token = typed(deployed, f"aws rds generate-db-auth-token --hostname {endpoint} --port 3306 --username app_user")
    assert token.returncode == 0 and token.stdout.startswith(f"{endpoint}:3306/?Action=connect&DBUser=app_user&")
    applied = typed(deployed, "npx cdktf deploy local --skip-provider-lock --auto-approve")
    assert applied.returncode == 0, applied.stdout[-3000:] + applied.stderr[-3000:]
    diff = typed(deployed, "npx cdktf diff local --skip-provider-lock")
    assert diff.returncode == 0, diff.stdout[-3000:] + diff.stderr[-3000:]
    assert "No changes" in diff.stdout, diff.stdout[-3000:]
