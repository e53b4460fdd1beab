"""Lifecycle plumbing without an emulator: step runner, retries, messages, state and plan parsing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from local.control_plane import lifecycle as lc
from local.control_plane.project import LifecycleError, Project
from local.control_plane.runner import run_step
from local.control_plane.state_files import set_aside_stale_states, state_file
from tests.checkout_support import fresh_checkout


@pytest.fixture
def lines() -> list[str]:
    return []


@pytest.fixture
def project(tmp_path, lines) -> Project:
    (tmp_path / "cdktf.json").write_text("{}")
    (tmp_path / "environments").mkdir()
    (tmp_path / "environments" / "local.json").write_text(json.dumps({"target": "local"}))
    (tmp_path / "environments" / "aws.json").write_text(json.dumps({"target": "aws"}))
    return Project(root=tmp_path, emulator_port=0, output=lines.append)


def test_project_needs_a_cdktf_app(tmp_path):
    with pytest.raises(LifecycleError, match="no cdktf.json"):
        Project(root=tmp_path)


def test_targets_come_from_the_environment_files(project):
    assert project.target("local") == "local"
    assert project.target("aws") == "aws"
    with pytest.raises(LifecycleError, match=r"unknown stack 'prod'.*known stacks: aws, local"):
        project.target("prod")


def _script(tmp_path: Path, body: str) -> list[str]:
    script = tmp_path / "step.py"
    script.write_text(body)
    return [sys.executable, str(script)]


def test_step_streams_cleaned_output_and_records_its_time(project, lines, tmp_path):
    command = _script(
        tmp_path,
        "print('\\x1b[32mhello\\x1b[0m')\n"
        "print('1 Stack deploying     0 Stacks done     0 Stacks waiting')\n"
        "print('world')\n",
    )
    code, output = run_step(project, "local", "demo", command, cwd=tmp_path, env={}, timeout_s=30)
    assert (code, output) == (0, "hello\nworld")
    assert "    hello" in lines and not any("Stacks waiting" in line for line in lines)
    assert lines[0].startswith("[local] ==> demo:") and lines[-1].startswith("[local] <== demo ok")
    assert [step.step for step in project.timings.steps] == ["demo"]


def test_failed_step_names_the_step_exit_code_fix_and_last_output(project, tmp_path):
    command = _script(
        tmp_path, "import sys\nprint('Error: api error NotImplementedByLocalEmulator: nope')\nsys.exit(1)\n"
    )
    with pytest.raises(LifecycleError) as caught:
        run_step(project, "local", "deploy", command, cwd=tmp_path, env={}, timeout_s=30)
    message = str(caught.value)
    assert "[local] deploy failed (exit 1)" in message
    assert "Fix: The local emulator does not implement" in message
    assert "NotImplementedByLocalEmulator: nope" in message


def test_hung_step_is_stopped_at_its_time_limit(project, tmp_path):
    command = _script(tmp_path, "import time\nprint('working', flush=True)\ntime.sleep(60)\n")
    started = time.monotonic()
    with pytest.raises(LifecycleError, match=r"did not finish within 2 s(.|\n)*working"):
        run_step(project, "local", "plan", command, cwd=tmp_path, env={}, timeout_s=2)
    assert time.monotonic() - started < 30  # stopped, not waited out


def test_dropped_connection_is_retried_once_then_reported(project, lines, tmp_path):
    marker = tmp_path / "attempts"
    command = _script(
        tmp_path,
        f"""import pathlib, sys
marker = pathlib.Path({str(marker)!r})
n = int(marker.read_text()) if marker.exists() else 0
marker.write_text(str(n + 1))
if n < LIMIT:
    print('Error: read tcp 127.0.0.1:1->127.0.0.1:2: use of closed network connection')
    sys.exit(1)
print('ok')
""".replace("LIMIT", "1"),
    )
    assert run_step(project, "local", "plan", command, cwd=tmp_path, env={}, timeout_s=30, transient_retries=1) == (
        0,
        "ok",
    )
    assert marker.read_text() == "2"
    assert any("connection to the emulator was dropped" in line for line in lines)

    marker.write_text("-5")  # fails more often than one retry covers
    with pytest.raises(LifecycleError, match="use of closed network connection"):
        run_step(project, "local", "plan", command, cwd=tmp_path, env={}, timeout_s=30, transient_retries=1)


def test_other_failures_are_not_retried(project, tmp_path):
    marker = tmp_path / "count"
    command = _script(
        tmp_path,
        f"import pathlib, sys\np = pathlib.Path({str(marker)!r})\n"
        "p.write_text(p.read_text() + 'x' if p.exists() else 'x')\nsys.exit(1)\n",
    )
    with pytest.raises(LifecycleError):
        run_step(project, "local", "plan", command, cwd=tmp_path, env={}, timeout_s=30, transient_retries=1)
    assert marker.read_text() == "x"


def test_state_file_comes_from_the_synthesized_backend(project, tmp_path):
    assert state_file(project, "local") == tmp_path / "terraform.local.tfstate"
    stack_dir = project.stack_dir("local")
    stack_dir.mkdir(parents=True)
    (stack_dir / "cdk.tf.json").write_text(
        json.dumps({"terraform": {"backend": {"local": {"path": str(tmp_path / "elsewhere.tfstate")}}}})
    )
    assert state_file(project, "local") == tmp_path / "elsewhere.tfstate"


def _write_state(path: Path, managed: int) -> None:
    resources = [{"mode": "data", "type": "aws_partition"}] + [{"mode": "managed", "type": "aws_vpc"}] * managed
    path.write_text(json.dumps({"version": 4, "resources": resources}))


def test_up_sets_aside_a_state_that_lists_resources_of_a_lost_emulator(project, lines, tmp_path):
    _write_state(tmp_path / "terraform.local.tfstate", managed=3)
    set_aside_stale_states(project)
    assert not (tmp_path / "terraform.local.tfstate").exists()
    [aside] = tmp_path.glob("terraform.local.tfstate.stale-*")
    assert json.loads(aside.read_text())["resources"][1]["type"] == "aws_vpc"
    assert any("moved to" in line for line in lines)


def test_empty_state_is_left_alone(project, tmp_path):
    _write_state(tmp_path / "terraform.local.tfstate", managed=0)
    set_aside_stale_states(project)
    assert (tmp_path / "terraform.local.tfstate").exists()


def test_destroy_without_emulator_refuses_when_resources_are_recorded(project, lines, tmp_path):
    _write_state(tmp_path / "terraform.local.tfstate", managed=2)
    with pytest.raises(LifecycleError, match=r"emulator is not running(.|\n)*python -m local up"):
        lc.destroy("local", project)
    (tmp_path / "terraform.local.tfstate").unlink()
    lc.destroy("local", project)  # nothing recorded: nothing to do, no error
    assert any("nothing to destroy" in line for line in lines)


def test_commands_that_need_the_emulator_say_how_to_start_it(project):
    stack_dir = project.stack_dir("local")
    stack_dir.mkdir(parents=True)
    (stack_dir / "cdk.tf.json").write_text("{}")
    with pytest.raises(LifecycleError, match=r"emulator is not running.*python -m local up"):
        lc.plan("local", project, synthesize=False)


def test_plan_actions_keep_managed_changes_only():
    changes = [
        {"address": "aws_db_proxy_default_target_group.tg", "mode": "managed", "change": {"actions": ["update"]}},
        {"address": "aws_vpc.v", "mode": "managed", "change": {"actions": ["no-op"]}},
        {"address": "data.aws_partition.p", "mode": "data", "change": {"actions": ["read"]}},
        {"address": "aws_db_proxy.p", "mode": "managed", "change": {"actions": ["delete", "create"]}},
    ]
    assert lc._actions(changes) == {
        "aws_db_proxy_default_target_group.tg": ("update",),
        "aws_db_proxy.p": ("delete", "create"),
    }


def test_cli_has_every_command_and_dispatches_to_it():
    from local import cli

    parser = cli.build_parser()
    for name in ("up", "deploy", "diff", "state", "outputs", "destroy", "down", "serve", "experiment"):
        assert parser.parse_args(["state"] if name == "state" else [name]).command == name
    assert parser.parse_args(["state", "show", "aws_vpc.v"]).words == ["show", "aws_vpc.v"]
    assert parser.parse_args(["serve", "--direct", "--http-port", "8080"]).direct is True


def test_cli_state_forms(monkeypatch, capsys):
    from local import cli

    calls = []
    monkeypatch.setattr(
        cli.state_queries, "state_list", lambda stack, project: calls.append(("list", stack)) or ["a.b"]
    )
    monkeypatch.setattr(
        cli.state_queries, "state_show", lambda stack, address, project: calls.append(("show", address)) or "shown"
    )
    assert cli.main(["--port", "0", "state"]) == 0
    assert cli.main(["--port", "0", "state", "list"]) == 0
    assert cli.main(["--port", "0", "state", "show", "aws_vpc.v"]) == 0
    assert cli.main(["--port", "0", "state", "aws_vpc.w"]) == 0
    assert cli.main(["--port", "0", "state", "show"]) == 1
    assert calls == [("list", "local"), ("list", "local"), ("show", "aws_vpc.v"), ("show", "aws_vpc.w")]
    assert "use `state`, `state list`, or `state show ADDRESS`" in capsys.readouterr().err


def test_cli_port_default_follows_local_aws_endpoint(monkeypatch):
    from local import cli

    monkeypatch.delenv("LOCAL_AWS_ENDPOINT", raising=False)
    assert cli.default_port() == 4599
    monkeypatch.setenv("LOCAL_AWS_ENDPOINT", "http://127.0.0.1:4700")
    assert cli.default_port() == 4700
    monkeypatch.setenv("LOCAL_AWS_ENDPOINT", "http://10.0.0.5:4700")
    with pytest.raises(SystemExit, match="expected http://127.0.0.1:<port>"):
        cli.default_port()


def _git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.email=t@example.invalid", "-c", "user.name=t", *args],
        cwd=repo,
        check=True,
        capture_output=True,
        timeout=60,
    )


def test_fresh_checkout_clones_a_clean_tree_and_copies_a_dirty_one(tmp_path):
    source = tmp_path / "source"
    (source / "pkg").mkdir(parents=True)
    (source / "pkg" / "mod.py").write_text("x = 1\n")
    (source / ".gitignore").write_text("ignored/\n")
    (source / "node_modules").mkdir()
    _git(source, "init", "-q")
    _git(source, "add", ".")
    _git(source, "commit", "-q", "-m", "init")

    clean = tmp_path / "clean"
    assert fresh_checkout(clean, source) == "git clone"
    assert (clean / "pkg" / "mod.py").read_text() == "x = 1\n" and (clean / ".git").is_dir()
    assert (clean / "node_modules").is_symlink()

    (source / "pkg" / "new.py").write_text("y = 2\n")  # untracked work is part of what gets tested
    (source / "ignored").mkdir()
    (source / "ignored" / "junk.txt").write_text("no")
    dirty = tmp_path / "dirty"
    assert fresh_checkout(dirty, source) == "copy of the working tree"
    assert (dirty / "pkg" / "new.py").read_text() == "y = 2\n"
    assert not (dirty / "ignored").exists() and not (dirty / ".git").exists()


_FAKE_TERRAFORM = """#!{python}
import json, pathlib, sys
calls = pathlib.Path({calls!r})
calls.open("a").write(" ".join(sys.argv[1:]) + "\\n")
if sys.argv[1] == "output":
    print(json.dumps({{"api_url": {{"value": "http://api.example"}}}}))
    sys.exit(0)
applies = sum(line.startswith("apply") for line in calls.read_text().splitlines())
print("  # aws_vpc.v will be created")
print("Plan: 1 to add, 0 to change, 0 to destroy.")
if applies <= {failures}:
    print("aws_vpc.v: Creating...")
    print("Error: creating EC2 VPC: {error}")
    sys.exit(1)
print("Apply complete! Resources: 1 added, 0 changed, 0 destroyed.")
"""


def _fake_terraform(monkeypatch, tmp_path: Path, *, failures: int, error: str) -> Path:
    """A `terraform` first on PATH that prints a plan, then fails ``failures`` times with ``error`` printed last."""
    bin_dir, calls = tmp_path / "bin", tmp_path / "terraform-calls"
    bin_dir.mkdir()
    script = bin_dir / "terraform"
    script.write_text(_FAKE_TERRAFORM.format(python=sys.executable, calls=str(calls), failures=failures, error=error))
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    return calls


def _synthesized(project: Project, stack: str) -> None:
    stack_dir = project.stack_dir(stack)
    (stack_dir / ".terraform" / "providers").mkdir(parents=True)
    (stack_dir / ".terraform" / "terraform.tfstate").write_text("{}")
    (stack_dir / "cdk.tf.json").write_text("{}")


def test_deploy_runs_terraform_apply_itself_and_shows_the_error_printed_after_the_plan(project, monkeypatch, tmp_path):
    calls = _fake_terraform(monkeypatch, tmp_path, failures=1, error="InvalidParameterValue: bad CIDR 10.0.0.0/33")
    _synthesized(project, "aws")
    with pytest.raises(LifecycleError) as caught:
        lc.deploy("aws", project, synthesize=False)
    assert "[aws] deploy failed (exit 1)" in str(caught.value)
    assert "InvalidParameterValue: bad CIDR 10.0.0.0/33" in str(caught.value)
    assert calls.read_text().splitlines() == ["apply -auto-approve -input=false -no-color -lock-timeout=60s"]


def test_deploy_to_the_emulator_runs_apply_once_more_after_a_dropped_connection(project, lines, monkeypatch, tmp_path):
    calls = _fake_terraform(monkeypatch, tmp_path, failures=1, error="read tcp: use of closed network connection")
    _synthesized(project, "local")
    monkeypatch.setattr(lc, "endpoint_for", lambda *_args, **_kwargs: "http://127.0.0.1:4599")
    assert lc.deploy("local", project, synthesize=False) == {"api_url": "http://api.example"}
    assert [call.split()[0] for call in calls.read_text().splitlines()] == ["apply", "apply", "output"]
    assert any("connection to the emulator was dropped" in line for line in lines)


@pytest.mark.parametrize(
    ("code", "output", "reason"),
    [
        (0, "Apply complete!", None),
        (1, "Error: ... decomposing response: read tcp: use of closed network connection", "dropped a connection"),
        (1, "  + resource ...\nInvoking Terraform CLI failed with exit code 1", "cdktf lost terraform's error"),
        (1, "│ Error: creating EC2 VPC: InvalidParameterValue\nInvoking Terraform CLI failed with exit code 1", None),
        (1, "Error: creating EC2 VPC: InvalidParameterValue", None),
    ],
)
def test_a_cli_run_gets_one_more_run_only_for_a_drop_or_a_lost_error(code, output, reason):
    from tests.lifecycle.lifecycle_support import worth_one_more_run

    why = worth_one_more_run(subprocess.CompletedProcess(["cdktf"], code, stdout=output, stderr=""))
    assert (why is None) if reason is None else (reason in why)
