"""Checkouts for the tests that prove checkout independence and the upgrade from the previous release.

``fresh_checkout``: this working tree as CI would check it out. ``release_checkout``: another commit (the previous
release) in its own directory. ``switch_to_working_tree``: the same directory (its ignored files, i.e. Terraform
state and ``.local/``, stay) switched to this working tree, as a user pulls a new release into their checkout.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from local.control_plane.project import LifecycleError
from modules.project import REPO_ROOT


def _git(cwd: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)


def _committed_and_clean(source: Path) -> bool:
    if _git(source, "rev-parse", "--is-inside-work-tree").returncode != 0:
        raise LifecycleError(f"{source} is not a git checkout")
    committed = _git(source, "rev-parse", "--verify", "-q", "HEAD").returncode == 0
    return committed and not _git(source, "status", "--porcelain").stdout.strip()


def _clone(source: Path, destination: Path) -> None:
    subprocess.run(["git", "clone", "--quiet", "--no-local", str(source), str(destination)], check=True, timeout=300)


def _copy_working_tree(source: Path, destination: Path) -> None:
    """The files git would commit (tracked plus untracked, not ignored), with fresh mtimes like a clone."""
    listed = _git(source, "ls-files", "-z", "--cached", "--others", "--exclude-standard").stdout.split("\0")
    for name in filter(None, listed):
        file = source / name
        if file.is_file():
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(file, target)
            shutil.copymode(file, target)


def _link_installed(source: Path, destination: Path) -> None:
    """``.venv`` and ``node_modules`` (installed by pipenv and npm, never committed) are linked from ``source``."""
    for installed in (".venv", "node_modules"):
        if (source / installed).exists() and not (destination / installed).exists():
            (destination / installed).symlink_to(source / installed, target_is_directory=True)


def fresh_checkout(destination: Path, source: Path = REPO_ROOT) -> str:
    """Put a fresh checkout of ``source`` at ``destination``; return how it was made.

    A ``git clone`` when the working tree is committed and clean, else a copy of the files git would
    commit, so uncommitted work is what gets tested. Both give fresh file mtimes, like a CI checkout.
    """
    if _committed_and_clean(source):
        _clone(source, destination)
        how = "git clone"
    else:
        _copy_working_tree(source, destination)
        how = "copy of the working tree"
    _link_installed(source, destination)
    return how


def release_checkout(destination: Path, commit: str, source: Path = REPO_ROOT) -> None:
    """A clone of ``source`` at ``commit`` (which must be in its history), installed tools linked."""
    _clone(source, destination)
    checked_out = _git(destination, "checkout", "--quiet", "--detach", commit)
    if checked_out.returncode != 0:
        raise LifecycleError(f"cannot check out {commit} in {destination}: {checked_out.stderr.strip()}")
    _link_installed(source, destination)


def switch_to_working_tree(checkout: Path, source: Path = REPO_ROOT) -> str:
    """Switch ``checkout`` (a clone of ``source``) to ``source``'s working tree in place; return how.

    ``git checkout`` of ``source``'s commit when its tree is committed and clean, else the checkout's tracked files
    are replaced by a copy of ``source``'s. Ignored files (state, ``.local/``, ``cdktf.out/``) stay either way.
    """
    if _committed_and_clean(source):
        head = _git(source, "rev-parse", "HEAD").stdout.strip()
        fetched = _git(checkout, "fetch", "--quiet", str(source), head, timeout=300)
        switched = _git(checkout, "checkout", "--quiet", "--detach", head)
        if fetched.returncode or switched.returncode:
            raise LifecycleError(f"cannot switch {checkout} to {head}: {fetched.stderr}{switched.stderr}".strip())
        return f"git checkout {head[:12]}"
    for name in filter(None, _git(checkout, "ls-files", "-z").stdout.split("\0")):
        (checkout / name).unlink(missing_ok=True)
    _copy_working_tree(source, checkout)
    return "copy of the working tree"
