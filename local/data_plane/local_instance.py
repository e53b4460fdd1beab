"""Opening the persistent local DB instance of a deployed stack for one ``serve``: lock, leftovers, credentials.

`open_instance` takes the instance's lock (a second ``serve`` is refused with the holder's pid), ends what a
crashed ``serve`` left running (recorded child pids), reads the master credentials from the deployed secret in
the emulator, and turns the deployed parameter group into server options. The caller releases `OpenedInstance`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from local.common import db_instance
from local.common.db_instance import DeployedDbInstance, InstanceLock
from local.common.processes import ChildRegistry
from local.data_plane import db_parameters
from local.data_plane.mariadb_config import MariaDBConfig, find_binary
from local.data_plane.secrets import read_db_secret


class ProxyAuthError(RuntimeError):
    """The proxy's auth secret does not hold the DB instance's master credentials."""


@dataclass(frozen=True)
class PersistentDb:
    """Where the deployed instance's data lives and where its secret can be read."""

    instance: DeployedDbInstance
    local_state_dir: Path
    secrets_endpoint: str


@dataclass
class OpenedInstance:
    directory: Path
    lock: InstanceLock
    children: ChildRegistry
    username: str
    password: str = field(repr=False)
    options: tuple[str, ...]
    not_honoured: tuple[db_parameters.NotHonoured, ...]
    notes: list[str]

    def mariadb_config(self, instance: DeployedDbInstance, max_connections: int) -> MariaDBConfig:
        return MariaDBConfig(
            max_connections=max_connections,
            database=instance.db_name,
            app_user=self.username,
            app_password=self.password,
            instance_dir=str(self.directory),
            die_with_parent=True,
            extra_args=self.options,
        )

    def release(self) -> None:
        self.lock.release()


def open_instance(persistent: PersistentDb, output: Callable[[str], None]) -> OpenedInstance:
    instance = persistent.instance
    directory = db_instance.prepare_dir(persistent.local_state_dir, instance, output)
    lock = InstanceLock(directory).acquire()
    try:
        notes = []
        if lock.previous_pid is not None:
            notes.append(f"took over the lock left by serve pid {lock.previous_pid}, which is no longer running")
        children = ChildRegistry(directory / db_instance.CHILDREN_FILE)
        for name, pid in children.end_leftovers().items():
            notes.append(f"ended {name} (pid {pid}) left running by an earlier serve")
        username, password = read_db_secret(persistent.secrets_endpoint, instance.secret_arn)
        if username != instance.username:
            notes.append(
                f"the master secret names user {username!r}, the instance says {instance.username!r}: "
                "the secret's user is the DB account (as RDS Proxy logs in with the secret)"
            )
        known = db_parameters.server_variables(find_binary(None, "mariadbd"))
        options, not_honoured = db_parameters.translate(instance.parameters, known)
        return OpenedInstance(directory, lock, children, username, password, options, not_honoured, notes)
    except BaseException:
        lock.release()
        raise


def master_secret_arn(persistent: PersistentDb, master: tuple[str, str], arns: Sequence[str]) -> str:
    """Which of the proxy's ``auth`` secrets holds the instance's master credentials (the migrator logs in with it).

    A proxy none of whose secrets holds them cannot reach the DB as the master (RDS reports the target as
    AUTH_FAILURE); say so instead of starting a proxy whose migrations fail.
    """
    instance = persistent.instance
    for arn in arns:
        if read_db_secret(persistent.secrets_endpoint, arn) == master:
            return arn
    named = ", ".join(arns) or "(none)"
    verb = "does" if len(arns) == 1 else "do"
    raise ProxyAuthError(
        f"the proxy's auth secret{'' if len(arns) == 1 else 's'} {named} {verb} not hold the master credentials of "
        f"{instance.identifier} (its master secret is {instance.secret_arn}): the proxy could not log in to the DB "
        "as the master (AUTH_FAILURE)"
    )
