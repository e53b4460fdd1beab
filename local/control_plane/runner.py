"""Run one lifecycle step (cdktf or terraform) as a child process: streamed, bounded, timed, explained.

A failure raises `LifecycleError` with the step, the exit status, a fix for the failures we recognise and the
last lines of output. Steps run in their own process group, so a timeout or Ctrl-C stops terraform too.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path

from local.control_plane.project import LifecycleError, Project
from local.control_plane.toolchain import ToolchainError, cdktf_command, terraform_binary, terraform_env
from modules.local_target import LOCAL_ENDPOINT_VARIABLE

QUICK_TIMEOUT_S = 120.0

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
# cdktf's live status footer, repeated between every line of output when not on a terminal.
_CDKTF_STATUS = re.compile(r"^\s*\d+ Stacks? (deploying|destroying|diffing)\b.*Stacks? (done|waiting)")
# The werkzeug server under moto closes every connection after its response; under load the Go SDK
# occasionally sees that as a reset while reading a 200 body (aws-sdk-go-v2 calls both retryable).
TRANSIENT_EMULATOR_ERRORS = re.compile(r"use of closed network connection|connection reset by peer")

_HINTS: tuple[tuple[str, str], ...] = (
    (
        "NotImplementedByLocalEmulator",
        "The local emulator does not implement a call this change needs (see the message above; "
        "local/control_plane/EMULATOR.md lists the gaps). Destroy and re-deploy the local stack, or use real AWS.",
    ),
    (
        "connection refused",
        "The local AWS emulator is not reachable. Start it with `python -m local up` "
        "(the state of a stopped emulator is lost: re-deploy after starting it).",
    ),
    (
        "Failed to query available provider packages",
        "Terraform could not install hashicorp/aws from the filesystem mirror. Set TF_PROVIDER_MIRROR to the "
        "directory that contains registry.terraform.io/hashicorp/aws/5.100.0.",
    ),
    (
        "Inconsistent dependency lock file",
        "Run `terraform init -upgrade` in the stack directory, or delete its .terraform.lock.hcl.",
    ),
    (
        "Error acquiring the state lock",
        "Another terraform run holds the state lock; wait for it, or remove the stale .tflock file.",
    ),
)


class _StepFailed(Exception):
    def __init__(self, message: str, output: str):
        super().__init__(message)
        self.message, self.output = message, output


def run_step(
    project: Project,
    stack: str,
    step: str,
    command: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    timeout_s: float,
    ok_codes: tuple[int, ...] = (0,),
    echo: bool = True,
    transient_retries: int = 0,
) -> tuple[int, str]:
    """Run ``command``; stream its cleaned output (if ``echo``); return (exit code, output).

    ``transient_retries``: re-run that many times when the only trouble was a dropped connection to the
    emulator; terraform plan/apply/destroy are safe to repeat.
    """
    for attempt in range(transient_retries + 1):
        try:
            return _run_once(
                project, stack, step, command, cwd=cwd, env=env, timeout_s=timeout_s, ok_codes=ok_codes, echo=echo
            )
        except _StepFailed as failed:
            transient = TRANSIENT_EMULATOR_ERRORS.search(failed.output)
            if attempt < transient_retries and transient:
                project.output(
                    f"[{stack}] {step}: a connection to the emulator was dropped "
                    f"({transient.group(0)}); running the step again"
                )
                continue
            raise LifecycleError(failed.message) from None
    raise AssertionError("unreachable")  # pragma: no cover


def _run_once(
    project: Project,
    stack: str,
    step: str,
    command: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    timeout_s: float,
    ok_codes: tuple[int, ...],
    echo: bool,
) -> tuple[int, str]:
    say = project.output
    say(f"[{stack}] ==> {step}: {' '.join([Path(command[0]).name, *command[1:]])}")
    started = time.monotonic()
    try:
        process = subprocess.Popen(
            list(command),
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    except FileNotFoundError as exc:
        raise LifecycleError(f"{step}: cannot run {command[0]} ({exc})") from None
    lines: list[str] = []
    tail: deque[str] = deque(maxlen=40)

    def pump() -> None:
        assert process.stdout is not None
        for raw in process.stdout:
            line = _ANSI.sub("", raw.decode("utf-8", "replace")).rstrip()
            if not line.strip() or _CDKTF_STATUS.match(line):
                continue
            lines.append(line)
            tail.append(line)
            if echo:
                say(f"    {line}")

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        code = process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        _kill_group(process)
        reader.join(5)
        raise LifecycleError(
            f"[{stack}] {step} did not finish within {timeout_s:.0f} s and was stopped. "
            "Last output:\n" + "\n".join(tail)
        ) from None
    except KeyboardInterrupt:
        _kill_group(process)  # it runs in its own session, so Ctrl-C did not reach it
        raise
    reader.join(10)
    seconds = time.monotonic() - started
    project.timings.record(stack, step, seconds)
    output = "\n".join(lines)
    if code not in ok_codes:
        say(f"[{stack}] <== {step} FAILED (exit {code}) after {seconds:.1f} s")
        raise _StepFailed(
            f"[{stack}] {step} failed (exit {code}) after {seconds:.1f} s.\n"
            f"{_hint(output)}\nLast output:\n" + "\n".join(tail),
            output,
        )
    say(f"[{stack}] <== {step} ok ({seconds:.1f} s)")
    return code, output


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    """Stop a step we started (and its children: cdktf runs terraform) by its process group id."""
    for signum, wait_s in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        try:
            os.killpg(process.pid, signum)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


def _hint(output: str) -> str:
    hints = [hint for needle, hint in _HINTS if needle.lower() in output.lower()]
    return "\n".join(f"Fix: {h}" for h in hints) or "Fix: see the error in the output above."


# ---------------------------------------------------------------- the tools' environment
def tool_environment(endpoint: str | None, extra_env: Mapping[str, str] | None = None) -> dict[str, str]:
    """terraform/cdktf environment: offline provider mirror, no telemetry, plain output, the emulator endpoint."""
    try:
        env = terraform_env()
    except ToolchainError as exc:
        raise LifecycleError(str(exc)) from None
    env.pop("TF_LOG", None)
    env["CI"] = env.get("CI", "1")  # plain, line-oriented output from the cdktf CLI
    env["FORCE_COLOR"] = "0"
    if endpoint:
        env[LOCAL_ENDPOINT_VARIABLE] = endpoint
    env.update(extra_env or {})
    return env


def cdktf() -> list[str]:
    try:
        return cdktf_command()
    except ToolchainError as exc:
        raise LifecycleError(str(exc)) from None


def terraform() -> str:
    try:
        return terraform_binary()
    except ToolchainError as exc:
        raise LifecycleError(str(exc)) from None


def initialized_stack_dir(project: Project, stack: str, env: Mapping[str, str]) -> Path:
    """The synthesized stack directory, with ``terraform init`` done (offline, from the mirror)."""
    directory = project.stack_dir(stack)
    if not (directory / "cdk.tf.json").is_file():
        raise LifecycleError(
            f"[{stack}] {directory}/cdk.tf.json does not exist: deploy first "
            "(`python -m local deploy`) or synthesize (`npx cdktf synth`)"
        )
    if (
        not (directory / ".terraform" / "terraform.tfstate").is_file()
        or not (directory / ".terraform" / "providers").is_dir()
    ):
        run_step(
            project,
            stack,
            "terraform init",
            [terraform(), "init", "-input=false", "-no-color"],
            cwd=directory,
            env=env,
            timeout_s=QUICK_TIMEOUT_S,
            echo=False,
        )
    return directory


def run_json(project: Project, stack: str, step: str, args: Sequence[str], env: Mapping[str, str]) -> object:
    """Run ``terraform <args>`` in the initialized stack directory and parse its JSON output."""
    directory = initialized_stack_dir(project, stack, env)
    _, output = run_step(
        project, stack, step, [terraform(), *args], cwd=directory, env=env, timeout_s=QUICK_TIMEOUT_S, echo=False
    )
    return json.loads(output or "{}")
