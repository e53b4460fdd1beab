"""Make the deployed proxy endpoint name resolve to the local stand-in for one client process.

A client must verify the proxy's certificate for the endpoint name, as in AWS, so it has to connect to that name.
With the hosts line ``serve`` prints (``127.0.0.1 <endpoint>``) in ``/etc/hosts`` the name resolves for every
program, and nothing else is needed. Without it (editing ``/etc/hosts`` needs root), a client process can run in a
private mount namespace whose ``/etc/hosts`` is a copy with that line added (``unshare``: a user namespace when not
root): the client resolves the name through the system resolver like any other, verifies the certificate for it,
and nothing on the machine changes. Works for any program (the ``mariadb`` CLI is a C program: no Python shim
reaches it). When neither is possible the caller is told which line to add.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

SYSTEM_HOSTS = Path("/etc/hosts")
_BIND_AND_EXEC = 'mount --bind -- "$0" /etc/hosts && exec "$@"'


class NameResolutionError(RuntimeError):
    """The endpoint name cannot be made to resolve for the client; the message gives the hosts line to add."""


def hosts_line(name: str, address: str) -> str:
    return f"{address} {name}"


def resolves_to(name: str, address: str) -> bool:
    """Whether the system resolver already maps ``name`` to ``address`` (e.g. through the hosts line)."""
    try:
        infos = socket.getaddrinfo(name, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return False
    wanted = ipaddress.ip_address(address)
    return any(ipaddress.ip_address(info[4][0]) == wanted for info in infos)


def _unshare_prefix() -> list[str]:
    mount_ns = ["--mount", "--propagation", "private"]
    return ["unshare", *mount_ns] if os.geteuid() == 0 else ["unshare", "--user", "--map-root-user", *mount_ns]


def private_namespace_available() -> bool:
    """Whether this user may run a process with its own ``/etc/hosts`` (``unshare`` present and permitted)."""
    if not shutil.which("unshare") or not shutil.which("mount"):
        return False
    probe = subprocess.run([*_unshare_prefix(), "true"], capture_output=True, timeout=10, check=False)
    return probe.returncode == 0


@contextmanager
def resolving(name: str, address: str, argv: Sequence[str]) -> Iterator[list[str]]:
    """``argv``, wrapped so that in its process ``name`` resolves to ``address`` (only when it does not already).

    The private hosts file lives until the block ends: run the command inside it.
    """
    if resolves_to(name, address):
        yield list(argv)
        return
    if not private_namespace_available():
        raise NameResolutionError(
            f"{name} does not resolve to {address} here, and this user cannot run a client with its own /etc/hosts "
            f"(unshare). Add this line to /etc/hosts and retry: {hosts_line(name, address)}"
        )
    try:
        system = SYSTEM_HOSTS.read_text(encoding="utf-8")
    except OSError:
        system = "127.0.0.1 localhost\n"
    with tempfile.TemporaryDirectory(prefix="local-hosts-") as directory:
        private = Path(directory) / "hosts"
        private.write_text(f"{system.rstrip()}\n{hosts_line(name, address)}\n", encoding="utf-8")
        private.chmod(0o644)
        yield [*_unshare_prefix(), "sh", "-c", _BIND_AND_EXEC, str(private), *argv]
