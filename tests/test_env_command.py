"""``eval "$(python -m local env)"``: shell-quoted exports, and the real cdktf, terraform and aws CLIs as typed.

The quick tests evaluate the output in bash. The lifecycle test deploys the stack once (a fresh checkout, its own
emulator) and runs each command exactly as a user types it after the ``eval``, ending with a no-change diff.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from local.client_access import shell_env
from local.control_plane import lifecycle
from local.control_plane.emulator_control import down, up
from local.control_plane.project import LifecycleError, Project
from local.control_plane.state_queries import state_list
from tests.checkout_support import fresh_checkout

REPO_ROOT = Path(__file__).resolve().parent.parent
HOSTILE_VALUES = {
    "SPACES": "a b  c",
    "QUOTES": 'it\'s "quoted"',
    "EXPANSIONS": "$(touch pwned) `touch pwned` $HOME ${PATH}",
    "NEWLINE": "one\ntwo",
    "GLOB": "* ?",
}


def evaluated(script: str, names: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> dict:
    """What bash holds for ``names`` after ``eval "$script"`` (unset variables are absent)."""
    printer = "; ".join(f'[ -n "${{{n}+x}}" ] && printf "%s\\0%s\\0" {n} "${n}"' for n in names)
    result = subprocess.run(
        ["bash", "-c", f'eval "$SCRIPT"; {printer}; true'],
        env={**(env or os.environ), "SCRIPT": script},
        capture_output=True,
        text=True,
        timeout=30,
        cwd=cwd,
        check=True,
    )
    fields = result.stdout.split("\0")[:-1]
    return dict(zip(fields[::2], fields[1::2], strict=True))


def test_every_value_is_shell_quoted(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setattr(shell_env, "variables", lambda stack, endpoint: dict(HOSTILE_VALUES))
    script = shell_env.script("local", "http://127.0.0.1:4599")
    assert evaluated(script, list(HOSTILE_VALUES), cwd=tmp_path) == HOSTILE_VALUES
    assert not (tmp_path / "pwned").exists()


def local_env(*args: str, extra: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), **(extra or {})}
    return subprocess.run(
        [sys.executable, "-m", "local", "--port", "4999", "env", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO_ROOT,
    )


def test_env_sets_the_toolchain_the_emulator_region_and_dummy_credentials() -> None:
    result = local_env()
    assert result.returncode == 0, result.stderr
    names = ["TF_CLI_CONFIG_FILE", "CHECKPOINT_DISABLE", "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION"]
    names += ["LOCAL_AWS_ENDPOINT", "AWS_ENDPOINT_URL", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ACCESS_KEY_ID"]
    names += ["AWS_PROFILE", "AWS_SESSION_TOKEN", "TF_IN_AUTOMATION"]
    stale = {"AWS_PROFILE": "prod-sso", "AWS_SESSION_TOKEN": "real-session"}
    values = evaluated(result.stdout, names, env={**os.environ, **stale})
    assert "filesystem_mirror" in Path(values["TF_CLI_CONFIG_FILE"]).read_text()
    assert values["LOCAL_AWS_ENDPOINT"] == values["AWS_ENDPOINT_URL"] == "http://127.0.0.1:4999"
    assert values["AWS_REGION"] == values["AWS_DEFAULT_REGION"] == "ap-northeast-1"
    assert (values["AWS_ACCESS_KEY_ID"], values["CHECKPOINT_DISABLE"]) == ("test", "1")
    assert "AWS_PROFILE" not in values and "AWS_SESSION_TOKEN" not in values  # a real session never leaks in
    assert "TF_IN_AUTOMATION" not in values  # an interactive shell keeps Terraform's hints


def test_env_follows_the_stacks_region_override_and_refuses_a_cloud_stack() -> None:
    overridden = local_env(
        extra={"SMS_LOCAL__REGION": "us-east-1", "SMS_LOCAL__AVAILABILITY_ZONES": "us-east-1a,us-east-1b"}
    )
    assert overridden.returncode == 0, overridden.stderr
    assert "export AWS_REGION=us-east-1" in overridden.stdout.splitlines()
    refused = local_env("--stack", "aws")
    assert refused.returncode == 1 and "stack 'aws' targets 'aws': `env` is for local stacks" in refused.stderr


# --- the real CLIs against a deployed stack --------------------------------------------------------------
@pytest.fixture(scope="module")
def deployed(tmp_path_factory) -> Iterator[tuple[Project, str]]:
    root = tmp_path_factory.mktemp("checkout") / "repo"
    try:
        fresh_checkout(root)
    except LifecycleError as exc:
        pytest.skip(str(exc))
    project = Project(root=root, emulator_port=0, output=lambda line: print(line, flush=True))
    up(project)
    try:
        lifecycle.deploy("local", project)
        env_script = subprocess.run(
            [str(root / ".venv/bin/python"), "-m", "local", "--port", str(project.emulator().port), "env"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        ).stdout
        yield project, env_script
    finally:
        try:
            if project.emulator().is_running() and state_list("local", project):
                lifecycle.destroy("local", project)
        finally:
            down(project)


def typed(deployed: tuple[Project, str], command: str, timeout_s: float = 600) -> subprocess.CompletedProcess:
    """``command`` in a shell after ``eval "$(python -m local env)"``, with the project's venv on PATH."""
    project, env_script = deployed
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "TF_", "LOCAL_", "SMS_", "JSII_"))}
    clean["PATH"] = f"{project.root / '.venv' / 'bin'}:{clean.get('PATH', '')}"
    started = time.monotonic()
    result = subprocess.run(
        ["bash", "-c", f'eval "$ENV_SCRIPT"\n{command}'],
        env={**clean, "ENV_SCRIPT": env_script},
        cwd=project.root,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
    print(f"[test] {command}: exit {result.returncode} in {time.monotonic() - started:.1f} s", flush=True)
    return result


@pytest.mark.lifecycle
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
