"""The checkout a lifecycle command works on: its stacks, its emulator and where progress goes."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from local.common.local_target import DEFAULT_EMULATOR_PORT, emulator_state_dir
from local.control_plane.emulator import Emulator, EmulatorConfig
from local.control_plane.timings import StepTimes
from modules.environments import load_environment
from modules.project import ENVIRONMENTS_DIR_NAME, REPO_ROOT, stack_dir
from modules.validation import SettingsError

DEFAULT_STACK = "local"
LOCAL_TARGET = "local"


class LifecycleError(RuntimeError):
    """A lifecycle step failed; the message names the step and the fix."""


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Project:
    """The checkout to operate on (``root`` lets tests use a copy of the repo) and its emulator."""

    root: Path = REPO_ROOT
    emulator_port: int = DEFAULT_EMULATOR_PORT
    emulator_state_dir: Path | None = None
    output: Callable[[str], None] = field(default=_stderr)
    """Where progress lines go (stderr by default, so stdout carries only results)."""
    timings: StepTimes = field(default_factory=StepTimes, compare=False)
    """Every step's duration, in order (the CLI and CI print them)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root).resolve())
        if not (self.root / "cdktf.json").is_file():
            raise LifecycleError(
                f"{self.root} has no cdktf.json; run from the repository root (or pass the project directory)"
            )

    @property
    def environments_dir(self) -> Path:
        return self.root / ENVIRONMENTS_DIR_NAME

    def stack_dir(self, stack: str) -> Path:
        return stack_dir(stack, self.root)

    def emulator(self) -> Emulator:
        state_dir = self.emulator_state_dir or emulator_state_dir(self.root)
        return Emulator(EmulatorConfig(port=self.emulator_port, state_dir=state_dir))

    def target(self, stack: str) -> str:
        """``local`` or ``aws``, as ``environments/<stack>.json`` (with its overrides) says."""
        path = self.environments_dir / f"{stack}.json"
        if not path.is_file():
            known = sorted(p.stem for p in self.environments_dir.glob("*.json"))
            raise LifecycleError(
                f"unknown stack {stack!r}: no {path.relative_to(self.root)}; known stacks: {', '.join(known) or 'none'}"
            )
        try:
            return load_environment(path).target
        except SettingsError as exc:
            raise LifecycleError(f"{path}: {exc}") from None

    def local_stacks(self) -> list[str]:
        """Stacks whose target is the local emulator (unreadable environment files are skipped)."""
        stacks = []
        for path in sorted(self.environments_dir.glob("*.json")):
            try:
                if load_environment(path).target == LOCAL_TARGET:
                    stacks.append(path.stem)
            except (OSError, SettingsError):
                continue
        return stacks
