"""Start and stop the local AWS emulator for a project, and find the endpoint a stack should use."""

from __future__ import annotations

import time

from local.control_plane.emulator import Emulator, EmulatorError
from local.control_plane.project import LOCAL_TARGET, LifecycleError, Project
from local.control_plane.state_files import managed_resource_count, set_aside_stale_states


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
    project.timings.record("emulator", "start", seconds)
    project.output(
        f"[emulator] started at {emulator.endpoint} (pid {emulator.pid}, {seconds:.1f} s, "
        f"log {emulator.config.log_file})"
    )
    set_aside_stale_states(project)
    return emulator


def down(project: Project | None = None) -> bool:
    """Stop the emulator by its recorded pid. Its resources (in memory) are gone afterwards."""
    project = project or Project()
    emulator = project.emulator()
    for stack in project.local_stacks():
        if managed_resource_count(project, stack):
            project.output(
                f"[emulator] note: stack {stack!r} still has resources in its state; they vanish "
                "with the emulator, so its local state file is set aside at the next `up`"
            )
    try:
        stopped = emulator.stop()
    except EmulatorError as exc:
        raise LifecycleError(str(exc)) from None
    project.output("[emulator] stopped" if stopped else "[emulator] was not running")
    return stopped


def require_running(project: Project, stack: str) -> Emulator:
    emulator = project.emulator()
    if not emulator.is_running():
        raise LifecycleError(
            f"[{stack}] the local AWS emulator is not running (looked for {emulator.config.state_file}). "
            "Start it with `python -m local up` (or deploy with `python -m local deploy`, which starts it)."
        )
    return emulator


def endpoint_for(project: Project, stack: str, *, start: bool, required: bool = True) -> str | None:
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
        require_running(project, stack)  # raises with the fix
    project.output(
        f"[{stack}] note: the emulator is not running; synthesizing for LOCAL_AWS_ENDPOINT "
        "or the stack's default endpoint"
    )
    return None
