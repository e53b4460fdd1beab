"""``eval "$(python -m local env)"``: shell-quoted exports, and the real cdktf, terraform and aws CLIs as typed.

The tests evaluate the output in bash; the real CLIs against a deployed stack are in the lifecycle tier
(tests/lifecycle/test_env_clis.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from local.client_access import shell_env
from modules.project import REPO_ROOT

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
