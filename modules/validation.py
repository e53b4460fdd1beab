"""The one error type for bad settings and the checks that raise it.

Every check names the field, the value and what is allowed, so a typo fails at synth (or at the start of a
local command) with a message that says how to fix it.
"""

from __future__ import annotations

import re
from typing import Any


class SettingsError(ValueError):
    """A setting outside its allowed values; the message names field, value and what is allowed."""

    kind = "setting"

    def __init__(self, field_name: str, value: Any, allowed: str):
        self.field_name, self.value, self.allowed = field_name, value, allowed
        super().__init__(f"invalid {self.kind} {self.qualified_name}={value!r}: allowed {allowed}")

    @property
    def qualified_name(self) -> str:
        return self.field_name


class PropError(SettingsError):
    """A construct prop outside its allowed values, named ``<PropsClass>.<field>`` in the same message shape as a
    setting (``invalid prop DatabaseProps.port=80: allowed an integer from 1150 to 65535``)."""

    kind = "prop"
    source: tuple[type, Exception] | None = None
    """(props class, its validation error): lets an enclosing props class re-name the field from its own root."""

    def __init__(self, owner: str, field_name: str, value: Any, allowed: str):
        self.owner = owner
        super().__init__(field_name, value, allowed)

    @property
    def qualified_name(self) -> str:
        return f"{self.owner}.{self.field_name}"


def check_range(name: str, value: int, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise SettingsError(name, value, f"an integer from {low} to {high}")


def check_pattern(name: str, value: str, pattern: re.Pattern[str], allowed: str) -> None:
    if not isinstance(value, str) or not pattern.match(value):
        raise SettingsError(name, value, allowed)


def check_choice(name: str, value: Any, choices: tuple) -> None:
    if value not in choices:
        raise SettingsError(name, value, "one of " + ", ".join(map(str, choices)))
