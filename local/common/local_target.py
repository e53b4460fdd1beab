"""Where the local target's emulator listens and where the local tooling keeps its files between runs.

The emulator's default address is a product fact (the synthesized ``local`` stack points its provider at it:
``modules.local_target``); its host and port are read from that one definition here, so the two never disagree.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from modules.local_target import DEFAULT_LOCAL_ENDPOINT
from modules.project import REPO_ROOT

_DEFAULT_ENDPOINT = urlsplit(DEFAULT_LOCAL_ENDPOINT)
EMULATOR_HOST: str = _DEFAULT_ENDPOINT.hostname
DEFAULT_EMULATOR_PORT: int = _DEFAULT_ENDPOINT.port
LOCAL_STATE_DIR_NAME = ".local"
"""Everything the local target keeps between runs (emulator pid and logs, data plane state)."""


def local_state_dir(root: Path = REPO_ROOT) -> Path:
    return root / LOCAL_STATE_DIR_NAME


def emulator_state_dir(root: Path = REPO_ROOT) -> Path:
    return local_state_dir(root) / "emulator"
