"""The lifecycle tier's one deployment: the previous release deployed, served, then upgraded to this tree.

What users do to upgrade a local stack, step by step, in a checkout of their own (``UPGRADE_STEPS`` in the notes):
the previous release deploys on an emulator started from this release's launcher (its ``ModifyDBProxy`` and stage
fixes are what the upgrade needs) and stores rows through its function logged in as the master; the same checkout
switched to this tree deploys once (new resources and in-place updates, no replacement of the DB or the proxy), and
``serve`` runs the migrator once and serves the old rows through the application user.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
import urllib.error
import urllib.request
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3

from local.common.ports import PORT_BASE_VARIABLE
from local.common.processes import free_port
from local.control_plane import lifecycle as lc
from local.control_plane.project import Project
from local.control_plane.runner import (
    TRANSIENT_EMULATOR_ERRORS,
    initialized_stack_dir,
    run_step,
    terraform,
    tool_environment,
)
from local.control_plane.state_queries import state_resources
from tests.ports_support import free_block_base

STACK = "local"
PREVIOUS_RELEASE = "33b0e74"
"""The last release before the least-privilege stack: its function logs in as the master, migrates v1-v3 itself."""
SERVE_START_TIMEOUT_S = 300.0
_SERVING = re.compile(r"^serving (http://\S+?)/ ", re.MULTILINE)
_MIGRATED = re.compile(r"\[migrator\] (\{.*\})$", re.MULTILINE)


def action_counts(changes: dict[str, tuple[str, ...]]) -> dict[str, int]:
    """``{"create": n, "update": n, "delete": n, "replace": n}`` of a plan's resource changes."""
    counted: Counter[str] = Counter()
    for actions in changes.values():
        counted["replace" if set(actions) == {"create", "delete"} else actions[0]] += 1
    return {action: counted[action] for action in ("create", "update", "delete", "replace")}


@dataclass
class ServeRun:
    """One ``python -m local serve`` of a checkout, by its own interpreter and tree (the previous release's or this
    one's); stopped by its pid with SIGTERM, as Ctrl-C would."""

    root: Path
    env: dict[str, str]
    args: tuple[str, ...] = ()
    url: str = ""
    process: subprocess.Popen[bytes] | None = None
    out_path: Path = field(default_factory=Path)
    log_path: Path = field(default_factory=Path)

    def __enter__(self) -> ServeRun:
        stem = self.root.parent / f"serve-{time.monotonic_ns()}"
        self.out_path, self.log_path = stem.with_suffix(".out"), stem.with_suffix(".log")
        command = [str(self.root / ".venv" / "bin" / "python"), "-m", "local", "serve", *self.args]
        with self.out_path.open("wb") as out, self.log_path.open("wb") as log:  # files: an undrained pipe blocks
            self.process = subprocess.Popen(command, cwd=self.root, env=self.env, stdout=out, stderr=log)
        deadline = time.monotonic() + SERVE_START_TIMEOUT_S
        while time.monotonic() < deadline and self.process.poll() is None:
            match = _SERVING.search(self.stdout())
            if match:
                self.url = match.group(1)
                return self
            time.sleep(0.2)
        self.stop()
        raise AssertionError(f"serve did not start in {self.root}:\n{self.stdout()}\n{self.log()}")

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stop(self) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(120)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(30)
        return self.process.returncode

    def stdout(self) -> str:
        return self.out_path.read_text(errors="replace") if self.out_path.exists() else ""

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def migrated(self) -> list[dict[str, Any]]:
        """What the migrator returned, each time ``serve`` ran it (``[migrator] {...}`` lines)."""
        return [json.loads(found) for found in _MIGRATED.findall(self.log() + self.stdout())]

    def get(self, path: str = "/") -> tuple[int, dict[str, Any]]:
        try:
            with urllib.request.urlopen(self.url + path, timeout=30) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, {}


@dataclass
class UpgradeRecord:
    """What the upgrade showed, for the tests to assert."""

    previous_answers: list[dict[str, Any]]
    """The previous release's ``GET /`` answers, in order."""
    switched: str
    """How the checkout was switched to this tree."""
    upgrade_changes: dict[str, tuple[str, ...]]
    """This release's first plan of the previously deployed stack."""
    after_upgrade_has_changes: bool
    """A second plan right after the upgrade deploy."""
    migrated: list[dict[str, Any]]
    """The migrator's results during this release's ``serve``."""
    answer: tuple[int, dict[str, Any]]
    """This release's first ``GET /`` (its ``times`` list the newest rows, up to the response limit of 100)."""
    serve_stdout: str
    seconds: dict[str, float] = field(default_factory=dict)


class Deployment:
    """The deployed stack the lifecycle tier shares: its checkout, its emulator and the settings last applied."""

    def __init__(self, project: Project):
        self.project = project
        self.outputs: dict[str, Any] = {}
        self.applied: dict[str, str] = {}
        """The extra settings (``SMS_LOCAL__*``) of the last deploy: ``{}`` means the stack's defaults."""
        self.upgrade: UpgradeRecord | None = None

    @property
    def root(self) -> Path:
        return self.project.root

    @property
    def endpoint(self) -> str:
        return self.project.emulator().endpoint

    def deploy(self, extra_env: dict[str, str] | None = None, synthesize: bool = True) -> dict[str, Any]:
        self.outputs = lc.deploy(STACK, self.project, extra_env=extra_env, synthesize=synthesize)
        self.applied = dict(extra_env or {})
        return self.outputs

    def at_defaults(self) -> None:
        """Put back the stack's default settings if a module before changed them (each module starts from them)."""
        if self.applied:
            self.deploy()

    def client(self, service: str):
        return boto3.client(
            service,
            endpoint_url=self.endpoint,
            region_name="ap-northeast-1",
            aws_access_key_id="test",
            aws_secret_access_key="test",
        )

    def config(self) -> dict[str, Any]:
        return json.loads(self.stack_config_text())

    def stack_config_text(self) -> str:
        return (self.project.stack_dir(STACK) / "cdk.tf.json").read_text()

    def address(self, resource_type: str) -> str:
        names = list(self.config()["resource"][resource_type])
        assert len(names) == 1, f"expected one {resource_type}, found {names}"
        return f"{resource_type}.{names[0]}"

    def function_address(self, handler: str) -> str:
        """The request function or the migrator: found by handler string, as the local plane finds them."""
        functions = self.config()["resource"]["aws_lambda_function"]
        (name,) = [name for name, block in functions.items() if block["handler"] == handler]
        return f"aws_lambda_function.{name}"

    def proxy_name(self) -> str:
        return state_resources(STACK, self.project)[self.address("aws_db_proxy")]["name"]

    def saved_plan(self) -> tuple[int, str, list[bytes]]:
        """``terraform plan -out`` of the current config: (exit code, ``terraform show -json``, every file of the
        saved plan, unpacked)."""
        env = tool_environment(self.endpoint)
        directory = initialized_stack_dir(self.project, STACK, env)
        plan_file = directory / "secret-scan.tfplan"
        command = [terraform(), "plan", "-input=false", "-no-color", "-detailed-exitcode", f"-out={plan_file.name}"]
        try:
            code, _ = run_step(
                self.project, STACK, "plan (saved)", command, cwd=directory, env=env, timeout_s=300, ok_codes=(0, 2)
            )
            _, shown = run_step(
                self.project,
                STACK,
                "show plan",
                [terraform(), "show", "-json", plan_file.name],
                cwd=directory,
                env=env,
                timeout_s=60,
                echo=False,
            )
            with zipfile.ZipFile(plan_file) as archive:
                files = [archive.read(member) for member in archive.namelist()]
        finally:
            plan_file.unlink(missing_ok=True)
        return code, shown, files

    # ---- the commands a user types, run by the checkout's own tree
    def command_env(self) -> dict[str, str]:
        """The environment of a user's shell in the checkout: the emulator's endpoint, no stray stack settings."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SMS_", "LOCAL_", "TF_"))}
        return {**env, "LOCAL_AWS_ENDPOINT": self.endpoint, "CHECKPOINT_DISABLE": "1", "PYTHONUNBUFFERED": "1"}

    def run_local(self, *args: str, timeout_s: float = 900) -> subprocess.CompletedProcess[str]:
        """``python -m local <args>`` in the checkout, with its own tree."""
        python = str(self.root / ".venv" / "bin" / "python")
        return subprocess.run(
            [python, "-m", "local", *args],
            cwd=self.root,
            env=self.command_env(),
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )

    def serve(self, *args: str, port_base: bool = True) -> ServeRun:
        env = self.command_env()
        if port_base:
            env[PORT_BASE_VARIABLE] = str(free_block_base())
        return ServeRun(self.root, env, args)


# cdktf 0.21 stops reading terraform's pseudo-terminal when terraform exits, so a failed apply can end with only this
# line: its error (a dropped connection among them) was never shown.
_CDKTF_LOST_THE_ERROR = re.compile(r"Invoking Terraform CLI failed with exit code \d+")
_TERRAFORM_ERROR = re.compile(r"^[│ ]*Error: ", re.MULTILINE)


def worth_one_more_run(result: subprocess.CompletedProcess[str]) -> str | None:
    """Why a failed cdktf or terraform command against the emulator gets one more run, as a user would give it.

    Either the emulator's known dropped connection (``TRANSIENT_EMULATOR_ERRORS``) or a cdktf failure whose error
    cdktf lost (that drop may be what it hid). None otherwise: a real failure fails twice.
    """
    if result.returncode == 0:
        return None
    output = result.stdout + result.stderr
    dropped = TRANSIENT_EMULATOR_ERRORS.search(output)
    if dropped:
        return f"the emulator dropped a connection ({dropped.group(0)})"
    if _CDKTF_LOST_THE_ERROR.search(output) and not _TERRAFORM_ERROR.search(output):
        return "cdktf lost terraform's error"
    return None


def previous_release_serves(deployment: Deployment, requests: int = 3) -> list[dict[str, Any]]:
    """The previous release's ``serve`` (its own ports: it predates the stable port block), ``requests`` GETs."""
    answers = []
    with deployment.serve("--http-port", str(free_port()), port_base=False) as previous:
        for _ in range(requests):
            status, body = previous.get("/")
            assert status == 200, f"the previous release answered {status}:\n{previous.stdout()}\n{previous.log()}"
            answers.append(body)
        stopped = previous.stop()
    assert stopped == 0, f"the previous release's serve exited {stopped}:\n{previous.log()}"
    return answers
