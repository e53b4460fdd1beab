"""How long each lifecycle step took, kept on the project object rather than in a module global."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class StepTime:
    stack: str
    step: str
    seconds: float


@dataclass
class StepTimes:
    """Every recorded step in order; ``report`` prints one line per step and the total."""

    steps: list[StepTime] = field(default_factory=list)

    def record(self, stack: str, step: str, seconds: float) -> None:
        self.steps.append(StepTime(stack, step, seconds))

    def report(self, output: Callable[[str], None] = lambda line: print(line, file=sys.stderr)) -> None:
        for item in self.steps:
            output(f"  {item.stack:>8}  {item.step:<32} {item.seconds:7.1f} s")
        output(f"  {'':>8}  {'total':<32} {sum(s.seconds for s in self.steps):7.1f} s")
