"""The local DB instance: one persistent MariaDB datadir per deployed ``aws_db_instance`` of a local stack.

It lives as long as the deployed instance: created on first use after deploy under
``.local/db-instances/<identifier>/``, kept across ``serve`` runs, and removed by ``destroy`` (after a final
snapshot copy under ``.local/db-snapshots/<final_snapshot_identifier>/`` when the instance has one). The
emulator forgets the stack when it stops; a redeployed instance then has a new master secret, so a datadir
recorded for another secret is set aside (renamed with the stale suffix), never silently reused or deleted.
Only one process may open a datadir: `InstanceLock` (fcntl lock + pid) refuses a second ``serve``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from local.common.stale import stale_suffix

INSTANCES_DIR_NAME = "db-instances"
SNAPSHOTS_DIR_NAME = "db-snapshots"
IDENTITY_FILE = "instance.json"
LOCK_FILE = "serve.lock"
DATA_DIR_NAME = "data"
CHILDREN_FILE = "children.json"


class DbInstanceError(RuntimeError):
    """The local DB instance cannot be used as asked; the message says why and what to do."""


class InstanceBusy(DbInstanceError):
    """Another process holds the datadir."""

    def __init__(self, message: str, pid: int | None):
        super().__init__(message)
        self.pid = pid


@dataclass(frozen=True)
class DeployedDbInstance:
    """The deployed ``aws_db_instance`` (and its parameter group and the proxy's auth secret) from state."""

    identifier: str
    db_name: str
    username: str
    port: int
    secret_arn: str
    """``master_user_secret[0].secret_arn``: the RDS-managed secret with the master credentials."""
    proxy_secret_arn: str = ""
    """``aws_db_proxy.auth[0].secret_arn``: the secret the proxy logs in to the DB with."""
    skip_final_snapshot: bool = True
    final_snapshot_identifier: str | None = None
    parameters: tuple[tuple[str, str], ...] = field(default=())
    """The deployed parameter group's ``(name, value)`` pairs."""

    def __post_init__(self) -> None:
        if not self.identifier or "/" in self.identifier or self.identifier.startswith("."):
            raise DbInstanceError(f"identifier={self.identifier!r}: must be a non-empty RDS identifier")
        if not 1 <= self.port <= 65535:
            raise DbInstanceError(f"port={self.port}: must be in 1..65535")
        final = self.final_snapshot_identifier
        if not self.skip_final_snapshot and (not final or "/" in final or final.startswith(".")):
            raise DbInstanceError(f"final_snapshot_identifier={final!r}: needed when skip_final_snapshot is false")

    @property
    def final_snapshot(self) -> str | None:
        """The snapshot ``destroy`` keeps, or None when the instance skips it (a throwaway environment)."""
        return None if self.skip_final_snapshot else self.final_snapshot_identifier


def _managed(state: Mapping[str, Any], rtype: str) -> list[dict[str, Any]]:
    return [
        instance.get("attributes", {})
        for resource in state.get("resources", [])
        if resource.get("mode") == "managed" and resource.get("type") == rtype
        for instance in resource.get("instances", [])
    ]


def _first(value: Any) -> dict[str, Any]:
    return (value[0] if value else {}) if isinstance(value, list) else (value or {})


def from_state(state: Mapping[str, Any]) -> DeployedDbInstance | None:
    """The deployed DB instance of a Terraform v4 state, or None when the state has none (destroyed)."""
    instances = _managed(state, "aws_db_instance")
    if not instances:
        return None
    if len(instances) != 1:
        raise DbInstanceError(f"expected one aws_db_instance in the state, found {len(instances)}")
    db = instances[0]
    group_name = db.get("parameter_group_name")
    parameters: tuple[tuple[str, str], ...] = ()
    for group in _managed(state, "aws_db_parameter_group"):
        if group.get("name") == group_name:
            parameters = tuple(sorted((str(p["name"]), str(p["value"])) for p in group.get("parameter") or ()))
    proxies = _managed(state, "aws_db_proxy")
    return DeployedDbInstance(
        identifier=str(db.get("identifier") or ""),
        db_name=str(db.get("db_name") or ""),
        username=str(db.get("username") or ""),
        port=int(db.get("port") or 3306),
        secret_arn=str(_first(db.get("master_user_secret")).get("secret_arn") or ""),
        proxy_secret_arn=str(_first(proxies[0].get("auth")).get("secret_arn") or "") if proxies else "",
        skip_final_snapshot=bool(db.get("skip_final_snapshot", True)),
        final_snapshot_identifier=db.get("final_snapshot_identifier") or None,
        parameters=parameters,
    )


def from_state_file(path: Path) -> DeployedDbInstance | None:
    try:
        return from_state(json.loads(Path(path).read_text()))
    except (OSError, ValueError):
        return None


def instance_dir(local_state_dir: Path, identifier: str) -> Path:
    return Path(local_state_dir) / INSTANCES_DIR_NAME / identifier


def snapshot_dir(local_state_dir: Path, snapshot_identifier: str) -> Path:
    return Path(local_state_dir) / SNAPSHOTS_DIR_NAME / snapshot_identifier


class InstanceLock:
    """An exclusive fcntl lock on ``<instance dir>/serve.lock`` holding the owner's pid.

    The kernel drops the lock when its holder dies (kill -9 included), so a lock file left behind is taken
    over; the pid in it only serves the message.
    """

    def __init__(self, directory: Path):
        self.path = Path(directory) / LOCK_FILE
        self._fd: int | None = None
        self.previous_pid: int | None = None
        """The pid a dead previous holder left in the file (a stale lock that was taken over)."""

    def acquire(self) -> InstanceLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = _read_pid(fd)
            os.close(fd)
            raise InstanceBusy(
                f"the local DB instance in {self.path.parent} is already in use by another `serve` "
                f"(pid {owner if owner is not None else 'unknown'}); stop that one first",
                owner,
            ) from None
        previous = _read_pid(fd)
        self.previous_pid = previous if previous not in (None, os.getpid()) else None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            os.close(fd)  # closing drops the flock

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> InstanceLock:
        return self.acquire()

    def __exit__(self, *exc_info: object) -> None:
        self.release()


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode().strip()
        return int(text) if text else None
    except (OSError, ValueError):
        return None


def _identity(instance: DeployedDbInstance) -> dict[str, str]:
    # The managed secret is created with the instance, so a redeployed instance (same identifier, new
    # emulator) has a different one; the identifier alone cannot tell them apart.
    return {"identifier": instance.identifier, "secret_arn": instance.secret_arn}


def prepare_dir(local_state_dir: Path, instance: DeployedDbInstance, output: Callable[[str], None]) -> Path:
    """The instance's directory, after setting aside one that belongs to an earlier deployment of the same name.

    Call with the lock not yet held (the lock file lives inside the directory that may be set aside), and
    only from the process that is about to take the lock: a directory whose lock is held is never moved.
    """
    directory = instance_dir(local_state_dir, instance.identifier)
    record = directory / IDENTITY_FILE
    if record.is_file():
        try:
            recorded = json.loads(record.read_text())
        except ValueError:
            recorded = {}
        if recorded != _identity(instance):
            with InstanceLock(directory):  # refuses (InstanceBusy) while a serve uses it
                pass
            aside = directory.with_name(directory.name + stale_suffix())
            directory.replace(aside)
            output(
                f"[db] {directory} belonged to an earlier deployment of {instance.identifier} (the emulator that "
                f"held it has forgotten it), so it was moved to {aside.name}; a new, empty instance is created"
            )
    elif directory.is_dir() and any(p.name != LOCK_FILE for p in directory.iterdir()):
        aside = directory.with_name(directory.name + stale_suffix())
        directory.replace(aside)
        output(f"[db] {directory} had no identity record, so it was moved to {aside.name}")
    directory.mkdir(parents=True, exist_ok=True)
    if not record.is_file():
        record.write_text(json.dumps(_identity(instance), indent=1, sort_keys=True) + "\n")
    return directory


def retire(local_state_dir: Path, instance: DeployedDbInstance, output: Callable[[str], None]) -> Callable[[], None]:
    """Before ``destroy``: keep the final snapshot (if the instance has one); returns what removes the datadir.

    The caller runs the returned function once the cloud-side destroy has succeeded, so a failed destroy keeps
    the data. Refuses (`InstanceBusy`) while a ``serve`` uses the instance: a file copy needs a stopped server.
    """
    directory = instance_dir(local_state_dir, instance.identifier)
    if not (directory / IDENTITY_FILE).is_file():
        return lambda: None
    lock = InstanceLock(directory).acquire()
    try:
        snapshot = instance.final_snapshot
        if snapshot and (directory / DATA_DIR_NAME).is_dir():
            target = snapshot_dir(local_state_dir, snapshot)
            if target.exists():
                raise DbInstanceError(
                    f"final snapshot {snapshot} already exists at {target} (RDS refuses it too: "
                    "DBSnapshotAlreadyExists); move it away or change final_snapshot_identifier"
                )
            partial = target.with_name(target.name + ".partial")
            shutil.rmtree(partial, ignore_errors=True)
            partial.mkdir(parents=True)
            shutil.copytree(directory / DATA_DIR_NAME, partial / DATA_DIR_NAME, symlinks=True)
            shutil.copy2(directory / IDENTITY_FILE, partial / IDENTITY_FILE)
            partial.replace(target)
            output(f"[db] final snapshot {snapshot} of {instance.identifier} kept in {target}")
        elif snapshot:
            output(f"[db] {instance.identifier} never stored data locally: no final snapshot to keep")
        else:
            output(f"[db] {instance.identifier} has skip_final_snapshot = true: no final snapshot kept")
    except BaseException:
        lock.release()
        raise

    def remove() -> None:
        try:
            shutil.rmtree(directory)
            output(f"[db] local DB instance {instance.identifier} removed ({directory})")
        finally:
            lock.release()

    return remove


def before_destroy(state_file: Path, local_state_dir: Path, output: Callable[[str], None]) -> Callable[[], None]:
    """The ``destroy`` hook: `retire` the stack's local DB instance (if the state has one); returns the remover.

    Call before the cloud-side destroy; call the returned function after it succeeded.
    """
    instance = from_state_file(state_file)
    if instance is None:
        return lambda: None
    return retire(local_state_dir, instance, output)
