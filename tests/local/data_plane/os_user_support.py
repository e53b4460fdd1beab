"""Running a command as another OS user (``runuser``), to show what other users of the machine can reach."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

OTHER_USER = "nobody"


def require_other_user() -> None:
    if os.geteuid() != 0 or shutil.which("runuser") is None:
        pytest.skip("switching to another OS user needs root and runuser")


def run_as_other_user(*command: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """``command`` as `OTHER_USER`, from a directory that user may enter; never raises on a non-zero exit."""
    return subprocess.run(
        ["runuser", "-u", OTHER_USER, "--", *command],
        cwd="/",
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def world_traversable_dir(prefix: str) -> Path:
    """A fresh 0755 directory whose parents others can traverse too (pytest's own tmp dirs are 0700).

    Servers placed here are protected only by what they do themselves, which is what a test must show.
    """
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    path.chmod(0o755)
    return path


def mariadb_cli_as_other_user(*options: str) -> subprocess.CompletedProcess[str]:
    """The real ``mariadb`` client as the other user, with no option file and no password prompt."""
    client = shutil.which("mariadb") or "/usr/bin/mariadb"
    return run_as_other_user(client, "--no-defaults", "--connect-timeout=5", *options, "-e", "SELECT CURRENT_USER()")
