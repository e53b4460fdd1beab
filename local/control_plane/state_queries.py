"""Read a deployed stack through Terraform: state list/show, attribute values and outputs."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from local.control_plane.project import DEFAULT_STACK, Project
from local.control_plane.runner import (
    QUICK_TIMEOUT_S,
    initialized_stack_dir,
    run_json,
    run_step,
    terraform,
    tool_environment,
)


def state_list(stack: str = DEFAULT_STACK, project: Project | None = None) -> list[str]:
    """``terraform state list``: every resource address in the stack's state."""
    project = project or Project()
    env = tool_environment(None)
    directory = initialized_stack_dir(project, stack, env)
    _, output = run_step(
        project,
        stack,
        "state list",
        [terraform(), "state", "list"],
        cwd=directory,
        env=env,
        timeout_s=QUICK_TIMEOUT_S,
        echo=False,
    )
    return [line.strip() for line in output.splitlines() if line.strip()]


def state_show(stack: str, address: str, project: Project | None = None) -> str:
    """``terraform state show <address>`` as text."""
    project = project or Project()
    env = tool_environment(None)
    directory = initialized_stack_dir(project, stack, env)
    _, output = run_step(
        project,
        stack,
        f"state show {address}",
        [terraform(), "state", "show", "-no-color", address],
        cwd=directory,
        env=env,
        timeout_s=QUICK_TIMEOUT_S,
        echo=False,
    )
    return output


def state_resources(stack: str = DEFAULT_STACK, project: Project | None = None) -> dict[str, dict[str, Any]]:
    """``terraform show -json``: ``{address: attribute values}`` of every managed resource."""
    project = project or Project()
    shown = run_json(project, stack, "show -json", ["show", "-json", "-no-color"], tool_environment(None))
    root_module = shown.get("values", {}).get("root_module", {}) if isinstance(shown, dict) else {}
    return {r["address"]: r.get("values", {}) for r in _resources(root_module) if r.get("mode") == "managed"}


def outputs(stack: str = DEFAULT_STACK, project: Project | None = None) -> dict[str, Any]:
    """``terraform output -json`` as ``{name: value}`` (API URL, proxy endpoint, secret ARN, ...)."""
    project = project or Project()
    shown = run_json(project, stack, "outputs", ["output", "-json", "-no-color"], tool_environment(None))
    return {name: item.get("value") for name, item in shown.items()} if isinstance(shown, dict) else {}


def _resources(module: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    yield from module.get("resources", [])
    for child in module.get("child_modules", []):
        yield from _resources(child)
