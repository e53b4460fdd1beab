"""Deploy, diff, inspect and destroy a stack, against the local emulator by default.

Each function runs the cdktf CLI or terraform (in ``cdktf.out/stacks/<stack>``) with the environment
from `local.terraform` (offline provider mirror, no telemetry) and, for stacks whose target is
``local``, ``LOCAL_AWS_ENDPOINT`` pointing at the running emulator, so synth writes its provider
endpoints. Every step prints a progress line and its duration; a failure raises `LifecycleError`
saying what failed and how to fix it. ``Project.root`` lets tests run all of it in a copy of the repo.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

from local.emulator import Emulator, EmulatorConfig, EmulatorError
from local.terraform import REPO_ROOT, ToolchainError, cdktf_command, terraform_binary, terraform_env

DEFAULT_STACK = "local"
LOCAL_TARGET = "local"
DEFAULT_LOCAL_PORT = 4599  # matches modules.environments.DEFAULT_LOCAL_ENDPOINT

# Bounds per step; the provider's own RDS waits make deploy ~2 min and destroy ~1.5 min here.
SYNTH_TIMEOUT_S = 300.0
DEPLOY_TIMEOUT_S = 1200.0
DESTROY_TIMEOUT_S = 900.0
PLAN_TIMEOUT_S = 300.0
QUICK_TIMEOUT_S = 120.0

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
# cdktf's live status footer, repeated between every line of output when not on a terminal.
_CDKTF_STATUS = re.compile(r"^\s*\d+ Stacks? (deploying|destroying|diffing)\b.*Stacks? (done|waiting)")


class LifecycleError(RuntimeError):
    """A lifecycle step failed; the message names the step and the fix."""


@dataclass(frozen=True)
class StepTime:
    stack: str
    step: str
    seconds: float


#: Every step's duration in this process, in order (tests and CI print them).
STEP_TIMES: list[StepTime] = []


@dataclass(frozen=True)
class Project:
    """The checkout to operate on and where its emulator keeps pid/log files."""

    root: Path = REPO_ROOT
    emulator_port: int = DEFAULT_LOCAL_PORT
    emulator_state_dir: Path | None = None
    output: Callable[[str], None] = field(default=lambda line: print(line, file=sys.stderr, flush=True))
    """Where progress lines go (stderr by default, so stdout carries only results)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root).resolve())
        if not (self.root / "cdktf.json").is_file():
            raise LifecycleError(f"{self.root} has no cdktf.json; run from the repository root "
                                 "(or pass the project directory)")

    def stack_dir(self, stack: str) -> Path:
        return self.root / "cdktf.out" / "stacks" / stack

    def emulator(self) -> Emulator:
        state_dir = self.emulator_state_dir or self.root / ".local" / "emulator"
        return Emulator(EmulatorConfig(port=self.emulator_port, state_dir=state_dir))

    def target(self, stack: str) -> str:
        """``local`` or ``aws``, from ``environments/<stack>.json``."""
        path = self.root / "environments" / f"{stack}.json"
        try:
            return str(json.loads(path.read_text()).get("target", ""))
        except FileNotFoundError:
            known = sorted(p.stem for p in (self.root / "environments").glob("*.json"))
            raise LifecycleError(f"unknown stack {stack!r}: no {path.relative_to(self.root)}; "
                                 f"known stacks: {', '.join(known) or 'none'}") from None
        except json.JSONDecodeError as exc:
            raise LifecycleError(f"{path} is not valid JSON ({exc})") from None


# ---------------------------------------------------------------- running commands
def _run(project: Project, stack: str, step: str, command: Sequence[str], *, cwd: Path,
         env: Mapping[str, str], timeout_s: float, ok_codes: tuple[int, ...] = (0,),
         echo: bool = True, transient_retries: int = 0) -> tuple[int, str]:
    """Run ``command``; stream its cleaned output (if ``echo``); return (exit code, output).

    ``transient_retries``: re-run that many times when the only trouble was a dropped connection
    (see `_TRANSIENT`); terraform plan/apply/destroy are safe to repeat.
    """
    for attempt in range(transient_retries + 1):
        try:
            return _run_once(project, stack, step, command, cwd=cwd, env=env, timeout_s=timeout_s,
                             ok_codes=ok_codes, echo=echo)
        except _StepFailed as failed:
            if attempt < transient_retries and _TRANSIENT.search(failed.output):
                project.output(f"[{stack}] {step}: a connection to the emulator was dropped "
                               f"({_TRANSIENT.search(failed.output).group(0)}); running the step again")
                continue
            raise LifecycleError(failed.message) from None
    raise AssertionError("unreachable")  # pragma: no cover


# The werkzeug server under moto closes every connection after its response; under load the Go SDK
# occasionally sees that as a reset while reading a 200 body (aws-sdk-go-v2 calls both retryable).
_TRANSIENT = re.compile(r"use of closed network connection|connection reset by peer")


class _StepFailed(Exception):
    def __init__(self, message: str, output: str):
        super().__init__(message)
        self.message, self.output = message, output


def _run_once(project: Project, stack: str, step: str, command: Sequence[str], *, cwd: Path,
              env: Mapping[str, str], timeout_s: float, ok_codes: tuple[int, ...],
              echo: bool) -> tuple[int, str]:
    say = project.output
    say(f"[{stack}] ==> {step}: {' '.join(Path(command[0]).name if i == 0 else c for i, c in enumerate(command))}")
    started = time.monotonic()
    try:
        process = subprocess.Popen(list(command), cwd=cwd, env=dict(env), stdin=subprocess.DEVNULL,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
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
        raise LifecycleError(f"[{stack}] {step} did not finish within {timeout_s:.0f} s and was stopped. "
                             f"Last output:\n" + "\n".join(tail)) from None
    except KeyboardInterrupt:
        _kill_group(process)  # it runs in its own session, so Ctrl-C did not reach it
        raise
    reader.join(10)
    seconds = time.monotonic() - started
    STEP_TIMES.append(StepTime(stack, step, seconds))
    output = "\n".join(lines)
    if code not in ok_codes:
        say(f"[{stack}] <== {step} FAILED (exit {code}) after {seconds:.1f} s")
        raise _StepFailed(f"[{stack}] {step} failed (exit {code}) after {seconds:.1f} s.\n"
                          f"{_hint(output)}\nLast output:\n" + "\n".join(tail), output)
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


_HINTS: tuple[tuple[str, str], ...] = (
    ("NotImplementedByLocalEmulator",
     "The local emulator does not implement a call this change needs (see the message above; "
     "local/EMULATOR.md lists the gaps). Destroy and re-deploy the local stack, or use real AWS."),
    ("connection refused",
     "The local AWS emulator is not reachable. Start it with `python -m local up` "
     "(the state of a stopped emulator is lost: re-deploy after starting it)."),
    ("Failed to query available provider packages",
     "Terraform could not install hashicorp/aws from the filesystem mirror. Set TF_PROVIDER_MIRROR to the "
     "directory that contains registry.terraform.io/hashicorp/aws/5.100.0."),
    ("Inconsistent dependency lock file",
     "Run `terraform init -upgrade` in the stack directory, or delete its .terraform.lock.hcl."),
    ("Error acquiring the state lock",
     "Another terraform run holds the state lock; wait for it, or remove the stale .tflock file."),
)


def _hint(output: str) -> str:
    hints = [hint for needle, hint in _HINTS if needle.lower() in output.lower()]
    return "\n".join(f"Fix: {h}" for h in hints) or "Fix: see the error in the output above."


# ---------------------------------------------------------------- environment and emulator
def _environment(project: Project, stack: str, endpoint: str | None,
                 extra_env: Mapping[str, str] | None) -> dict[str, str]:
    try:
        env = terraform_env()
    except ToolchainError as exc:
        raise LifecycleError(str(exc)) from None
    env.pop("TF_LOG", None)
    env["CI"] = env.get("CI", "1")  # plain, line-oriented output from the cdktf CLI
    env["FORCE_COLOR"] = "0"
    if endpoint:
        env["LOCAL_AWS_ENDPOINT"] = endpoint
    env.update(extra_env or {})
    return env


def up(project: Project | None = None) -> Emulator:
    """Start the emulator unless it already runs (idempotent); move aside stale local state."""
    project = project or Project()
    emulator = project.emulator()
    if emulator.is_running():
        project.output(f"[emulator] already running at {emulator.endpoint} (pid {emulator.pid})")
        return emulator
    started = time.monotonic()
    try:
        emulator.start()
    except EmulatorError as exc:
        raise LifecycleError(f"could not start the local AWS emulator: {exc}") from None
    seconds = time.monotonic() - started
    STEP_TIMES.append(StepTime("emulator", "start", seconds))
    project.output(f"[emulator] started at {emulator.endpoint} (pid {emulator.pid}, {seconds:.1f} s, "
                   f"log {emulator.config.log_file})")
    _set_aside_stale_states(project)
    return emulator


def down(project: Project | None = None) -> bool:
    """Stop the emulator by its recorded pid. Its resources (in memory) are gone afterwards."""
    project = project or Project()
    emulator = project.emulator()
    for stack in _local_stacks(project):
        if _managed_resource_count(project, stack):
            project.output(f"[emulator] note: stack {stack!r} still has resources in its state; they vanish "
                           "with the emulator, so its local state file is set aside at the next `up`")
    try:
        stopped = emulator.stop()
    except EmulatorError as exc:
        raise LifecycleError(str(exc)) from None
    project.output("[emulator] stopped" if stopped else "[emulator] was not running")
    return stopped


def _running_emulator(project: Project, stack: str) -> Emulator:
    emulator = project.emulator()
    if not emulator.is_running():
        raise LifecycleError(
            f"[{stack}] the local AWS emulator is not running (looked for {emulator.config.state_file}). "
            "Start it with `python -m local up` (or deploy with `python -m local deploy`, which starts it).")
    return emulator


def _endpoint_for(project: Project, stack: str, *, start: bool, required: bool = True) -> str | None:
    """The emulator endpoint for a local-target stack (None for real AWS, or when not ``required``)."""
    if project.target(stack) != LOCAL_TARGET:
        project.output(f"[{stack}] target: REAL AWS (credentials and account from your environment)")
        return None
    if start:
        return up(project).endpoint
    emulator = project.emulator()
    if emulator.is_running():
        return emulator.endpoint
    if required:
        _running_emulator(project, stack)  # raises with the fix
    project.output(f"[{stack}] note: the emulator is not running; synthesizing for LOCAL_AWS_ENDPOINT "
                   "or the stack's default endpoint")
    return None


def _local_stacks(project: Project) -> list[str]:
    stacks = []
    for path in sorted((project.root / "environments").glob("*.json")):
        try:
            if json.loads(path.read_text()).get("target") == LOCAL_TARGET:
                stacks.append(path.stem)
        except (OSError, json.JSONDecodeError):
            continue
    return stacks


# ---------------------------------------------------------------- state files
def state_file(project: Project, stack: str) -> Path:
    """The local backend's state file: from the synthesized config, else the stack's naming rule."""
    synthesized = project.stack_dir(stack) / "cdk.tf.json"
    try:
        backend = json.loads(synthesized.read_text())["terraform"]["backend"]["local"]
        # Terraform resolves a relative path against the stack's working directory.
        return (project.stack_dir(stack) / backend.get("path", "terraform.tfstate")).resolve()
    except (OSError, KeyError, TypeError, json.JSONDecodeError):
        return project.root / f"terraform.{stack}.tfstate"


def _managed_resource_count(project: Project, stack: str) -> int:
    try:
        state = json.loads(state_file(project, stack).read_text())
    except (OSError, json.JSONDecodeError):
        return 0
    return sum(1 for r in state.get("resources", []) if r.get("mode") == "managed")


def _set_aside_stale_states(project: Project) -> None:
    """A new emulator starts empty, so a local state that lists resources describes nothing real."""
    for stack in _local_stacks(project):
        count = _managed_resource_count(project, stack)
        if count:
            path = state_file(project, stack)
            aside = path.with_name(f"{path.name}.stale-{time.strftime('%Y%m%d-%H%M%S')}")
            path.replace(aside)
            project.output(f"[{stack}] the new emulator is empty, so the state listing {count} resources "
                           f"was moved to {aside.name}; `deploy` creates the stack afresh")


# ---------------------------------------------------------------- lifecycle steps
def synth(stack: str = DEFAULT_STACK, project: Project | None = None, *,
          extra_env: Mapping[str, str] | None = None) -> Path:
    """``cdktf synth`` (for the running emulator's endpoint, if any); returns the stack directory."""
    project = project or Project()
    endpoint = _endpoint_for(project, stack, start=False, required=False)
    env = _environment(project, stack, endpoint, extra_env)
    _run(project, stack, "synth", [*_cdktf(), "synth"], cwd=project.root, env=env, timeout_s=SYNTH_TIMEOUT_S)
    if not (project.stack_dir(stack) / "cdk.tf.json").is_file():
        raise LifecycleError(f"[{stack}] synth produced no {project.stack_dir(stack)}/cdk.tf.json: "
                             f"is {stack!r} a stack of the app (environments/{stack}.json)?")
    return project.stack_dir(stack)


def deploy(stack: str = DEFAULT_STACK, project: Project | None = None, *,
           extra_env: Mapping[str, str] | None = None, synthesize: bool = True) -> dict[str, Any]:
    """Start the emulator if needed, ``cdktf deploy`` the stack, and return its outputs.

    ``synthesize=False`` deploys the config already in ``cdktf.out`` (``--skip-synth``), e.g. right
    after `plan` synthesized it with the same ``extra_env``.
    """
    project = project or Project()
    endpoint = _endpoint_for(project, stack, start=True)
    env = _environment(project, stack, endpoint, extra_env)
    command = [*_cdktf(), "deploy", stack, "--auto-approve", "--skip-provider-lock", "--no-color"]
    if not synthesize:
        command.append("--skip-synth")
    _run(project, stack, "deploy", command, cwd=project.root, env=env, timeout_s=DEPLOY_TIMEOUT_S,
         transient_retries=1 if endpoint else 0)
    return outputs(stack, project)


@dataclass(frozen=True)
class PlanResult:
    """What ``terraform plan`` would do: managed resources and their actions (no-ops left out)."""

    exit_code: int
    changes: Mapping[str, tuple[str, ...]]
    """``{address: actions}``, e.g. ``{"aws_db_proxy_default_target_group.x": ("update",)}``."""
    drift: Mapping[str, tuple[str, ...]]
    """Resources Terraform found changed outside of it (``resource_drift``)."""

    @property
    def has_changes(self) -> bool:
        return self.exit_code == 2


def plan(stack: str = DEFAULT_STACK, project: Project | None = None, *,
         extra_env: Mapping[str, str] | None = None, synthesize: bool = True) -> PlanResult:
    """Synthesize (unless ``synthesize=False``) and ``terraform plan``; prints the plan.

    Uses ``terraform plan -detailed-exitcode`` because, unlike ``cdktf diff``, it reports
    "changes pending" through its exit status; drift done behind Terraform's back shows up too.
    """
    project = project or Project()
    if synthesize:
        synth(stack, project, extra_env=extra_env)
    endpoint = _endpoint_for(project, stack, start=False)
    env = _environment(project, stack, endpoint, extra_env)
    stack_dir = _initialized_stack_dir(project, stack, env)
    plan_file = stack_dir / "diff.tfplan"
    try:
        code, _ = _run(project, stack, "diff (terraform plan)",
                       [terraform_binary(), "plan", "-detailed-exitcode", "-input=false", "-no-color",
                        "-lock-timeout=60s", f"-out={plan_file.name}"],
                       cwd=stack_dir, env=env, timeout_s=PLAN_TIMEOUT_S, ok_codes=(0, 2),
                       transient_retries=1 if endpoint else 0)
        _, shown = _run(project, stack, "show plan", [terraform_binary(), "show", "-json", plan_file.name],
                        cwd=stack_dir, env=env, timeout_s=QUICK_TIMEOUT_S, echo=False)
    finally:
        plan_file.unlink(missing_ok=True)
    document = json.loads(shown or "{}")
    result = PlanResult(exit_code=code, changes=_actions(document.get("resource_changes", [])),
                        drift=_actions(document.get("resource_drift", [])))
    summary = ", ".join(f"{address}: {'/'.join(actions)}" for address, actions in result.changes.items())
    project.output(f"[{stack}] diff: " + (f"CHANGES pending ({summary or 'outputs only'})"
                                          if result.has_changes else "no changes"))
    return result


def diff(stack: str = DEFAULT_STACK, project: Project | None = None, *,
         extra_env: Mapping[str, str] | None = None, synthesize: bool = True) -> bool:
    """True if Terraform would change anything (config changes or drift); see `plan`."""
    return plan(stack, project, extra_env=extra_env, synthesize=synthesize).has_changes


def _actions(changes: Sequence[Mapping[str, Any]]) -> dict[str, tuple[str, ...]]:
    found = {}
    for change in changes:
        actions = tuple(change.get("change", {}).get("actions", ()))
        if change.get("mode") == "managed" and actions and actions != ("no-op",):
            found[change["address"]] = actions
    return found


def destroy(stack: str = DEFAULT_STACK, project: Project | None = None, *,
            extra_env: Mapping[str, str] | None = None) -> None:
    """``cdktf destroy`` the stack. For a local stack, the emulator must be running."""
    project = project or Project()
    is_local = project.target(stack) == LOCAL_TARGET
    if is_local and not project.emulator().is_running():
        if _managed_resource_count(project, stack):
            raise LifecycleError(
                f"[{stack}] the local AWS emulator is not running, and the resources in "
                f"{state_file(project, stack)} lived only in its memory. Run `python -m local up` "
                "(it sets that stale state aside) instead of destroying.")
        project.output(f"[{stack}] nothing to destroy: the emulator is not running and the state is empty")
        return
    endpoint = _endpoint_for(project, stack, start=False)
    env = _environment(project, stack, endpoint, extra_env)
    command = [*_cdktf(), "destroy", stack, "--auto-approve", "--skip-provider-lock", "--no-color"]
    if _synthesized_for(project, stack, endpoint):
        command.append("--skip-synth")  # destroy needs only the provider config, which is current
    _run(project, stack, "destroy", command, cwd=project.root, env=env, timeout_s=DESTROY_TIMEOUT_S,
         transient_retries=1 if endpoint else 0)


def state_list(stack: str = DEFAULT_STACK, project: Project | None = None) -> list[str]:
    """``terraform state list``: every resource address in the stack's state."""
    project = project or Project()
    env = _environment(project, stack, None, None)
    stack_dir = _initialized_stack_dir(project, stack, env)
    _, output = _run(project, stack, "state list", [terraform_binary(), "state", "list"], cwd=stack_dir,
                     env=env, timeout_s=QUICK_TIMEOUT_S, echo=False)
    return [line.strip() for line in output.splitlines() if line.strip()]


def state_show(stack: str, address: str, project: Project | None = None) -> str:
    """``terraform state show <address>`` as text."""
    project = project or Project()
    env = _environment(project, stack, None, None)
    stack_dir = _initialized_stack_dir(project, stack, env)
    _, output = _run(project, stack, f"state show {address}",
                     [terraform_binary(), "state", "show", "-no-color", address], cwd=stack_dir, env=env,
                     timeout_s=QUICK_TIMEOUT_S, echo=False)
    return output


def state_resources(stack: str = DEFAULT_STACK, project: Project | None = None) -> dict[str, dict[str, Any]]:
    """``terraform show -json``: ``{address: attribute values}`` of every managed resource."""
    project = project or Project()
    env = _environment(project, stack, None, None)
    stack_dir = _initialized_stack_dir(project, stack, env)
    _, output = _run(project, stack, "show -json", [terraform_binary(), "show", "-json", "-no-color"],
                     cwd=stack_dir, env=env, timeout_s=QUICK_TIMEOUT_S, echo=False)
    shown = json.loads(output or "{}")
    root_module = shown.get("values", {}).get("root_module", {})
    return {r["address"]: r.get("values", {}) for r in _resources(root_module) if r.get("mode") == "managed"}


def outputs(stack: str = DEFAULT_STACK, project: Project | None = None) -> dict[str, Any]:
    """``terraform output -json`` as ``{name: value}`` (API URL, proxy endpoint, secret ARN, ...)."""
    project = project or Project()
    env = _environment(project, stack, None, None)
    stack_dir = _initialized_stack_dir(project, stack, env)
    _, output = _run(project, stack, "outputs", [terraform_binary(), "output", "-json", "-no-color"],
                     cwd=stack_dir, env=env, timeout_s=QUICK_TIMEOUT_S, echo=False)
    return {name: item.get("value") for name, item in json.loads(output or "{}").items()}


# ---------------------------------------------------------------- helpers
def _cdktf() -> list[str]:
    try:
        return cdktf_command()
    except ToolchainError as exc:
        raise LifecycleError(str(exc)) from None


def _initialized_stack_dir(project: Project, stack: str, env: Mapping[str, str]) -> Path:
    """The synthesized stack directory, with ``terraform init`` done (offline, from the mirror)."""
    stack_dir = project.stack_dir(stack)
    if not (stack_dir / "cdk.tf.json").is_file():
        raise LifecycleError(f"[{stack}] {stack_dir}/cdk.tf.json does not exist: deploy first "
                             f"(`python -m local deploy`) or synthesize (`npx cdktf synth`)")
    if not (stack_dir / ".terraform" / "terraform.tfstate").is_file() or \
            not (stack_dir / ".terraform" / "providers").is_dir():
        _run(project, stack, "terraform init", [terraform_binary(), "init", "-input=false", "-no-color"],
             cwd=stack_dir, env=env, timeout_s=QUICK_TIMEOUT_S, echo=False)
    return stack_dir


def _synthesized_for(project: Project, stack: str, endpoint: str | None) -> bool:
    """The synthesized config exists and targets the same endpoint as now."""
    try:
        config = json.loads((project.stack_dir(stack) / "cdk.tf.json").read_text())
    except (OSError, json.JSONDecodeError):
        return False
    if endpoint is None:
        return False
    providers = config.get("provider", {}).get("aws", [])
    endpoints = {v for p in providers for e in p.get("endpoints", []) for v in e.values()}
    return endpoints == {endpoint}


def _resources(module: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    yield from module.get("resources", [])
    for child in module.get("child_modules", []):
        yield from _resources(child)


def fresh_checkout(destination: Path, source: Path = REPO_ROOT) -> str:
    """Put a fresh checkout of ``source`` at ``destination``; return how it was made.

    A ``git clone`` when the working tree is committed and clean, else a copy of the files git would
    commit (tracked plus untracked, not ignored), so uncommitted work is what gets tested. Both give
    fresh file mtimes, like a CI checkout. ``.venv`` and ``node_modules`` (installed by pipenv and
    npm, never committed) are linked from ``source``.
    """
    def git(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["git", *args], cwd=source, capture_output=True, text=True, timeout=60)

    if git("rev-parse", "--is-inside-work-tree").returncode != 0:
        raise LifecycleError(f"{source} is not a git checkout")
    committed = git("rev-parse", "--verify", "-q", "HEAD").returncode == 0
    if committed and not git("status", "--porcelain").stdout.strip():
        subprocess.run(["git", "clone", "--quiet", "--no-local", str(source), str(destination)],
                       check=True, timeout=300)
        how = "git clone"
    else:
        listed = git("ls-files", "-z", "--cached", "--others", "--exclude-standard").stdout.split("\0")
        for name in filter(None, listed):
            file = source / name
            if file.is_file():
                target = destination / name
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(file, target)  # new mtime, like a clone
                shutil.copymode(file, target)
        how = "copy of the working tree"
    for installed in (".venv", "node_modules"):
        if (source / installed).exists() and not (destination / installed).exists():
            (destination / installed).symlink_to(source / installed, target_is_directory=True)
    return how


def print_step_times(output: Callable[[str], None] = lambda line: print(line, file=sys.stderr)) -> None:
    """One line per step, then the total (for CI logs)."""
    total = 0.0
    for item in STEP_TIMES:
        output(f"  {item.stack:>8}  {item.step:<32} {item.seconds:7.1f} s")
        total += item.seconds
    output(f"  {'':>8}  {'total':<32} {total:7.1f} s")

