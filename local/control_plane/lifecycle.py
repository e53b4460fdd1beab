"""Synthesize, deploy, plan, diff and destroy a stack, against the local emulator by default.

Each step runs the cdktf CLI or terraform (in ``cdktf.out/stacks/<stack>``) through `runner` and, for stacks
whose target is ``local``, with ``LOCAL_AWS_ENDPOINT`` pointing at the running emulator, so synth writes its
provider endpoints. Every step prints a progress line and its duration; a failure raises `LifecycleError`
saying what failed and how to fix it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from local.common.local_target import local_state_dir
from local.control_plane.emulator_control import endpoint_for
from local.control_plane.project import DEFAULT_STACK, LOCAL_TARGET, LifecycleError, Project
from local.control_plane.runner import (
    QUICK_TIMEOUT_S,
    cdktf,
    initialized_stack_dir,
    run_step,
    terraform,
    tool_environment,
)
from local.control_plane.state_files import managed_resource_count, state_file
from local.control_plane.state_queries import outputs

# Bounds per step; the provider's own RDS waits make deploy ~2 min and destroy ~1.5 min here.
SYNTH_TIMEOUT_S = 300.0
DEPLOY_TIMEOUT_S = 1200.0
DESTROY_TIMEOUT_S = 900.0
PLAN_TIMEOUT_S = 300.0
_UNATTENDED = ("-input=false", "-no-color", "-lock-timeout=60s")
"""Terraform options of every plan, apply and destroy: no prompt, plain output, wait for a held state lock."""


def synth(
    stack: str = DEFAULT_STACK, project: Project | None = None, *, extra_env: Mapping[str, str] | None = None
) -> Path:
    """``cdktf synth`` (for the running emulator's endpoint, if any); returns the stack directory."""
    project = project or Project()
    endpoint = endpoint_for(project, stack, start=False, required=False)
    return _synth(project, stack, tool_environment(endpoint, extra_env))


def _synth(project: Project, stack: str, env: Mapping[str, str]) -> Path:
    run_step(project, stack, "synth", [*cdktf(), "synth"], cwd=project.root, env=env, timeout_s=SYNTH_TIMEOUT_S)
    if not (project.stack_dir(stack) / "cdk.tf.json").is_file():
        raise LifecycleError(
            f"[{stack}] synth produced no {project.stack_dir(stack)}/cdk.tf.json: "
            f"is {stack!r} a stack of the app (environments/{stack}.json)?"
        )
    return project.stack_dir(stack)


def deploy(
    stack: str = DEFAULT_STACK,
    project: Project | None = None,
    *,
    extra_env: Mapping[str, str] | None = None,
    synthesize: bool = True,
) -> dict[str, Any]:
    """Start the emulator if needed, synthesize, ``terraform apply`` the stack, and return its outputs.

    ``synthesize=False`` deploys the config already in ``cdktf.out``, e.g. right after `plan` synthesized it with
    the same ``extra_env``. Terraform runs directly (see `_apply`), not under ``cdktf deploy``.
    """
    project = project or Project()
    endpoint = endpoint_for(project, stack, start=True)
    env = tool_environment(endpoint, extra_env)
    if synthesize:
        _synth(project, stack, env)
    _apply(project, stack, "deploy", env, destroy=False, to_emulator=bool(endpoint), timeout_s=DEPLOY_TIMEOUT_S)
    return outputs(stack, project)


def _apply(
    project: Project,
    stack: str,
    step: str,
    env: Mapping[str, str],
    *,
    destroy: bool,
    to_emulator: bool,
    timeout_s: float,
) -> None:
    """``terraform apply`` (or ``destroy``) in the synthesized stack directory.

    Not ``cdktf deploy``/``destroy``: cdktf 0.21 runs terraform on a pseudo-terminal and stops reading it when it
    exits, so the error of a failed apply, printed last, was lost. That left nothing to explain the failure and
    nothing for the dropped-connection retry to recognise.
    """
    run_step(
        project,
        stack,
        step,
        [terraform(), "destroy" if destroy else "apply", "-auto-approve", *_UNATTENDED],
        cwd=initialized_stack_dir(project, stack, env),
        env=env,
        timeout_s=timeout_s,
        transient_retries=1 if to_emulator else 0,
    )


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


def plan(
    stack: str = DEFAULT_STACK,
    project: Project | None = None,
    *,
    extra_env: Mapping[str, str] | None = None,
    synthesize: bool = True,
) -> PlanResult:
    """Synthesize (unless ``synthesize=False``) and ``terraform plan``; prints the plan.

    Uses ``terraform plan -detailed-exitcode`` because, unlike ``cdktf diff``, it reports
    "changes pending" through its exit status; drift done behind Terraform's back shows up too.
    """
    project = project or Project()
    if synthesize:
        synth(stack, project, extra_env=extra_env)
    endpoint = endpoint_for(project, stack, start=False)
    env = tool_environment(endpoint, extra_env)
    stack_dir = initialized_stack_dir(project, stack, env)
    plan_file = stack_dir / "diff.tfplan"
    try:
        code, _ = run_step(
            project,
            stack,
            "diff (terraform plan)",
            [
                terraform(),
                "plan",
                "-detailed-exitcode",
                *_UNATTENDED,
                f"-out={plan_file.name}",
            ],
            cwd=stack_dir,
            env=env,
            timeout_s=PLAN_TIMEOUT_S,
            ok_codes=(0, 2),
            transient_retries=1 if endpoint else 0,
        )
        _, shown = run_step(
            project,
            stack,
            "show plan",
            [terraform(), "show", "-json", plan_file.name],
            cwd=stack_dir,
            env=env,
            timeout_s=QUICK_TIMEOUT_S,
            echo=False,
        )
    finally:
        plan_file.unlink(missing_ok=True)
    document = json.loads(shown or "{}")
    result = PlanResult(
        exit_code=code,
        changes=_actions(document.get("resource_changes", [])),
        drift=_actions(document.get("resource_drift", [])),
    )
    summary = ", ".join(f"{address}: {'/'.join(actions)}" for address, actions in result.changes.items())
    project.output(
        f"[{stack}] diff: " + (f"CHANGES pending ({summary or 'outputs only'})" if result.has_changes else "no changes")
    )
    return result


def diff(
    stack: str = DEFAULT_STACK,
    project: Project | None = None,
    *,
    extra_env: Mapping[str, str] | None = None,
    synthesize: bool = True,
) -> bool:
    """True if Terraform would change anything (config changes or drift); see `plan`."""
    return plan(stack, project, extra_env=extra_env, synthesize=synthesize).has_changes


def _actions(changes: Sequence[Mapping[str, Any]]) -> dict[str, tuple[str, ...]]:
    found = {}
    for change in changes:
        actions = tuple(change.get("change", {}).get("actions", ()))
        if change.get("mode") == "managed" and actions and actions != ("no-op",):
            found[change["address"]] = actions
    return found


def destroy(
    stack: str = DEFAULT_STACK, project: Project | None = None, *, extra_env: Mapping[str, str] | None = None
) -> None:
    """``terraform destroy`` the stack (see `_apply`). For a local stack, the emulator must be running."""
    project = project or Project()
    is_local = project.target(stack) == LOCAL_TARGET
    if is_local and not project.emulator().is_running():
        if managed_resource_count(project, stack):
            raise LifecycleError(
                f"[{stack}] the local AWS emulator is not running, and the resources in "
                f"{state_file(project, stack)} lived only in its memory. Run `python -m local up` "
                "(it sets that stale state aside) instead of destroying."
            )
        project.output(f"[{stack}] nothing to destroy: the emulator is not running and the state is empty")
        return
    endpoint = endpoint_for(project, stack, start=False)
    env = tool_environment(endpoint, extra_env)
    if not _synthesized_for(project, stack, endpoint):
        _synth(project, stack, env)  # destroy needs only the provider config: reuse it when current
    remove_local_db = _local_db_hook(project, stack) if is_local else None
    _apply(project, stack, "destroy", env, destroy=True, to_emulator=bool(endpoint), timeout_s=DESTROY_TIMEOUT_S)
    if remove_local_db is not None:
        remove_local_db()


def _local_db_hook(project: Project, stack: str):
    """Keep the local DB instance's final snapshot (if any) now; returns what removes its data after destroy."""
    from local.common.db_instance import DbInstanceError, before_destroy

    try:
        return before_destroy(state_file(project, stack), local_state_dir(project.root), project.output)
    except DbInstanceError as exc:
        raise LifecycleError(f"[{stack}] {exc}") from None


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
