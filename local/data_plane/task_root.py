"""The function's code as Lambda sees it: the deployment zip, unpacked into a directory of its own.

Lambda unpacks the zip into ``/var/task`` and imports the handler string from there, so the function can import
what the zip holds (the ``handler`` package and the driver) and the runtime's libraries, but not the project that
built it. The local runtime does the same: the zip is built exactly as the stack builds it (``modules.packaging``)
and unpacked into ``.local/lambda-task/<hash>/``, named by the zip's SHA-256, so an unchanged handler reuses it and
concurrent data planes never see a half-written copy.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import zipfile
from pathlib import Path

from local.common.local_target import local_state_dir
from modules.packaging import build_handler_zip

TASK_ROOTS_DIR_NAME = "lambda-task"
_UNUSED_FOR_S = 24 * 3600.0
"""Unpacked copies nobody used for this long are removed when another one is made."""


def unpacked_handler(source_dir: Path, roots_dir: Path | None = None) -> Path:
    """The directory holding the unpacked deployment zip built from ``source_dir`` (the ``handler/`` package)."""
    roots_dir = Path(roots_dir) if roots_dir is not None else local_state_dir() / TASK_ROOTS_DIR_NAME
    roots_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=roots_dir, prefix=".build-") as scratch:
        package = build_handler_zip(Path(source_dir), Path(scratch) / "handler.zip")
        digest = package.sha256_base64.replace("/", "_").replace("+", "-").rstrip("=")[:22]
        task_root = roots_dir / digest
        if task_root.is_dir():
            os.utime(task_root)  # in use: keep it
            return task_root
        unpacked = Path(scratch) / "task"
        with zipfile.ZipFile(package.path) as archive:
            archive.extractall(unpacked)
        try:
            unpacked.rename(task_root)  # atomic: another process may have made the same copy meanwhile
        except OSError:
            if not task_root.is_dir():
                raise
    _remove_unused(roots_dir, keep=task_root)
    return task_root


def _remove_unused(roots_dir: Path, keep: Path) -> None:
    cutoff = time.time() - _UNUSED_FOR_S
    for entry in roots_dir.iterdir():
        if entry != keep and entry.is_dir() and entry.stat().st_mtime < cutoff:  # scratch dirs of dead builds too
            shutil.rmtree(entry, ignore_errors=True)
