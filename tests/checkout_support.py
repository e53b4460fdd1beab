"""A fresh checkout of the working tree, for the tests and benchmarks that prove checkout independence."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from local.control_plane.project import LifecycleError
from modules.project import REPO_ROOT


def fresh_checkout(destination: Path, source: Path = REPO_ROOT) -> str:
    """Put a fresh checkout of ``source`` at ``destination``; return how it was made.

    A ``git clone`` when the working tree is committed and clean, else a copy of the files git would
    commit (tracked plus untracked, not ignored), so uncommitted work is what gets tested. Both give
    fresh file mtimes, like a CI checkout. ``.venv`` and ``node_modules`` (installed by pipenv and
    npm, never committed) are linked from ``source``.
    """

    def git(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["git", *args], cwd=source, capture_output=True, text=True, timeout=60)

    if git("rev-parse", "--is-inside-work-tree").returncode != 0:
        raise LifecycleError(f"{source} is not a git checkout")
    committed = git("rev-parse", "--verify", "-q", "HEAD").returncode == 0
    if committed and not git("status", "--porcelain").stdout.strip():
        subprocess.run(
            ["git", "clone", "--quiet", "--no-local", str(source), str(destination)], check=True, timeout=300
        )
        how = "git clone"
    else:
        listed = git("ls-files", "-z", "--cached", "--others", "--exclude-standard").stdout.split("\0")
        for name in filter(None, listed):
            file = source / name
            if file.is_file():
                target = destination / name
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(file, target)  # new mtime, like a clone
                shutil.copymode(file, target)
        how = "copy of the working tree"
    for installed in (".venv", "node_modules"):
        if (source / installed).exists() and not (destination / installed).exists():
            (destination / installed).symlink_to(source / installed, target_is_directory=True)
    return how
