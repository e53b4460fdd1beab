"""Deterministic Lambda deployment zip: the ``handler`` package plus the pure-Python MySQL driver.

One zip serves both functions: the request function (``handler.app.lambda_handler``) and the migrator
(``handler.migrator.lambda_handler``). The package sits at the zip's top level, as ``handler/``, so its modules
import each other as ``handler.<module>`` in Lambda, in the tests and in the local runtime alike.

Terraform redeploys a function whenever ``source_code_hash`` changes, so the zip must be byte-identical
for identical inputs on any checkout: entries sorted, timestamps fixed, permissions fixed, handler line
endings normalised to LF. File mtimes, umask and directory walk order therefore never matter.
Entries are stored uncompressed by default: deflate output depends on the zlib build (zlib-ng, as used
by some distributions, or Apple's zlib emit different bytes at the same level), stored entries do not,
and the whole zip is still only ~1.2 MB. ``compress=True`` gives deflate level 9 (~0.3 MB) for callers
that build on one known toolchain.

The driver comes from the installed distribution (``importlib.metadata``), pinned by
``handler/requirements.txt``. Only its pure-Python part ships: the C extension and vendored shared
libraries are built against a newer glibc/OpenSSL than the Lambda runtime provides and would only
add ~60 MB; the handler connects with ``use_pure=True`` anyway.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import os
import re
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from handler import app_contract

DRIVER_DISTRIBUTION = "mysql-connector-python"
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)  # earliest timestamp the zip format can store
FILE_MODE = 0o100644  # regular file, rw-r--r--
DEFLATE_LEVEL = 9
PACKAGE_NAME = app_contract.REQUEST_HANDLER.split(".")[0]
"""The package the handler strings name; the source directory's files go under it, whatever its own name."""
_ENTRY_MODULES = tuple(
    handler.split(".")[1] + ".py" for handler in (app_contract.REQUEST_HANDLER, app_contract.MIGRATOR_HANDLER)
)

# Parts of the driver the handler never imports: the asyncio API, the Django backend and the
# C-extension wrappers (which only import-fail without the .so and are skipped by the driver).
_DRIVER_EXCLUDED_PREFIXES = (
    "mysql/connector/aio/",
    "mysql/connector/django/",
)
_DRIVER_EXCLUDED_FILES = frozenset({"mysql/connector/connection_cext.py", "mysql/connector/cursor_cext.py"})
_DRIVER_INCLUDED_ROOTS = ("mysql/__init__.py", "mysql/connector/")
# License text travels with the code it covers (GPLv2 + Universal FOSS Exception); METADATA records the version.
_DIST_INFO_KEPT = ("METADATA", "LICENSE.txt")


class PackagingError(RuntimeError):
    """The zip cannot be built as specified (missing source, wrong driver version, ...)."""


@dataclass(frozen=True)
class PackageInfo:
    """The built zip and the hash Terraform expects in ``source_code_hash`` (``filebase64sha256``)."""

    path: Path
    sha256_base64: str
    size_bytes: int
    file_count: int


def pinned_driver_version(requirements: Path) -> str:
    """The exact ``mysql-connector-python==X`` pin from the handler's requirements file."""
    try:
        text = requirements.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PackagingError(f"{requirements} not found; it must pin {DRIVER_DISTRIBUTION}==<version>") from None
    pattern = re.compile(rf"^\s*{re.escape(DRIVER_DISTRIBUTION)}\s*==\s*([A-Za-z0-9.+!-]+)\s*(?:#.*)?$", re.I | re.M)
    match = pattern.search(text)
    if not match:
        raise PackagingError(f"{requirements} must pin {DRIVER_DISTRIBUTION}==<version> exactly")
    return match.group(1)


def handler_files(source_dir: Path) -> dict[str, Path]:
    """``{name in zip: file}`` for the handler package's modules, under ``handler/`` (no tests, no bytecode)."""
    if not source_dir.is_dir():
        raise PackagingError(f"handler source directory {source_dir} does not exist")
    files = {
        f"{PACKAGE_NAME}/{path.name}": path
        for path in source_dir.glob("*.py")
        if path.is_file() and not path.name.startswith("test")
    }
    missing = [name for name in ("__init__.py", *_ENTRY_MODULES) if f"{PACKAGE_NAME}/{name}" not in files]
    if missing:
        raise PackagingError(f"{source_dir} has no {', '.join(missing)} (the package and its Lambda entry modules)")
    return files


def driver_files(expected_version: str) -> dict[str, Path]:
    """``{name in zip: file}`` for the pure-Python driver, taken from the installed distribution."""
    try:
        dist = importlib.metadata.distribution(DRIVER_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        raise PackagingError(
            f"{DRIVER_DISTRIBUTION}=={expected_version} is not installed in this environment"
        ) from None
    if dist.version != expected_version:
        raise PackagingError(
            f"installed {DRIVER_DISTRIBUTION} is {dist.version}, but handler/requirements.txt pins "
            f"{expected_version}; install the pinned version before packaging"
        )
    selected: dict[str, Path] = {}
    for entry in dist.files or ():
        name = PurePosixPath(entry).as_posix()
        if _keep_driver_file(name) or _is_kept_dist_info(name):
            selected[name] = Path(str(entry.locate()))
    if "mysql/connector/__init__.py" not in selected:
        raise PackagingError(f"{DRIVER_DISTRIBUTION} {dist.version} has no mysql/connector/__init__.py in its RECORD")
    missing = [name for name, path in selected.items() if not path.is_file()]
    if missing:
        raise PackagingError(f"files listed in the RECORD of {DRIVER_DISTRIBUTION} are missing: {missing[:5]}")
    return selected


def _keep_driver_file(name: str) -> bool:
    if not name.endswith(".py") or "/__pycache__/" in name:
        return False
    if not any(name == root or (root.endswith("/") and name.startswith(root)) for root in _DRIVER_INCLUDED_ROOTS):
        return False
    return not name.startswith(_DRIVER_EXCLUDED_PREFIXES) and name not in _DRIVER_EXCLUDED_FILES


def _is_kept_dist_info(name: str) -> bool:
    parts = name.split("/")
    return len(parts) == 2 and parts[0].endswith(".dist-info") and parts[1] in _DIST_INFO_KEPT


def write_deterministic_zip(entries: dict[str, bytes], out_path: Path, compress: bool = False) -> None:
    """Write ``entries`` sorted by name with fixed metadata, so only their contents affect the bytes."""
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    level = DEFLATE_LEVEL if compress else None
    out_path.parent.mkdir(parents=True, exist_ok=True)
    # Unique temp file + atomic rename: concurrent builds (parallel synths/tests) and readers never
    # see a half-written zip.
    fd, tmp_name = tempfile.mkstemp(dir=out_path.parent, prefix=f".{out_path.name}.", suffix=".tmp")
    tmp_path = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as raw, zipfile.ZipFile(raw, "w", compression=method, compresslevel=level) as archive:
            for name in sorted(entries):
                info = zipfile.ZipInfo(name, date_time=ZIP_EPOCH)
                info.compress_type = method
                info.create_system = 3  # Unix, so external_attr is read as a mode by every unzip/Lambda
                info.external_attr = FILE_MODE << 16
                archive.writestr(info, entries[name], compresslevel=level)
        tmp_path.chmod(0o644)
        tmp_path.replace(out_path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def file_base64_sha256(path: Path) -> str:
    """Same value as Terraform's ``filebase64sha256(path)``."""
    return base64.b64encode(hashlib.sha256(path.read_bytes()).digest()).decode("ascii")


def build_handler_zip(source_dir: Path, out_path: Path, compress: bool = False) -> PackageInfo:
    """Build the Lambda zip from ``source_dir`` (the ``handler/`` directory) into ``out_path``."""
    source_dir = Path(source_dir)
    out_path = Path(out_path)
    handler = handler_files(source_dir)
    driver = driver_files(pinned_driver_version(source_dir / "requirements.txt"))
    clashes = sorted(set(handler) & set(driver))
    if clashes:
        raise PackagingError(f"handler files clash with driver files in the zip: {clashes}")
    # A Windows checkout with autocrlf must not change the hash; driver files come verbatim from the wheel.
    entries = {name: path.read_bytes().replace(b"\r\n", b"\n") for name, path in handler.items()}
    entries.update({name: path.read_bytes() for name, path in driver.items()})
    write_deterministic_zip(entries, out_path, compress=compress)
    return PackageInfo(
        path=out_path,
        sha256_base64=file_base64_sha256(out_path),
        size_bytes=out_path.stat().st_size,
        file_count=len(entries),
    )
