"""The local backend's state files, and setting aside a state that describes a forgotten emulator.

The emulator keeps everything in memory, so after it restarts a state that lists resources describes nothing
real. Such a state is renamed (never deleted), so the next deploy creates the stack afresh and nothing is lost.
"""

from __future__ import annotations

import json
from pathlib import Path

from local.common.stale import stale_suffix
from local.control_plane.project import Project
from modules.project import default_state_file


def state_file(project: Project, stack: str) -> Path:
    """The local backend's state file: from the synthesized config, else the stack's naming rule."""
    synthesized = project.stack_dir(stack) / "cdk.tf.json"
    try:
        backend = json.loads(synthesized.read_text())["terraform"]["backend"]["local"]
        # Terraform resolves a relative path against the stack's working directory.
        return (project.stack_dir(stack) / backend.get("path", "terraform.tfstate")).resolve()
    except (OSError, KeyError, TypeError, json.JSONDecodeError):
        return default_state_file(stack, project.root)


def managed_resource_count(project: Project, stack: str) -> int:
    try:
        state = json.loads(state_file(project, stack).read_text())
    except (OSError, json.JSONDecodeError):
        return 0
    return sum(1 for r in state.get("resources", []) if r.get("mode") == "managed")


def set_aside_stale_states(project: Project) -> list[str]:
    """Rename every local stack's non-empty state; returns the stacks whose state was set aside."""
    moved = []
    for stack in project.local_stacks():
        count = managed_resource_count(project, stack)
        if count:
            path = state_file(project, stack)
            aside = path.with_name(path.name + stale_suffix())
            path.replace(aside)
            moved.append(stack)
            project.output(
                f"[{stack}] the new emulator is empty, so the state listing {count} resources "
                f"was moved to {aside.name}; `deploy` creates the stack afresh"
            )
    return moved
