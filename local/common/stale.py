"""The suffix that marks what was set aside (a state file, a DB datadir) because the emulator that held its stack is
gone: renamed, never deleted, so nothing is lost."""

from __future__ import annotations

import time


def stale_suffix() -> str:
    """``.stale-<timestamp>``, appended to the name of what is set aside."""
    return f".stale-{time.strftime('%Y%m%d-%H%M%S')}"
