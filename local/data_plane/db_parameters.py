"""The deployed DB parameter group, applied to the local MariaDB where MariaDB can honour it.

A parameter is honoured when MariaDB knows the variable (as listed by ``mariadbd --verbose --help``), its value
is a literal (not an RDS formula such as ``{DBInstanceClassMemory/12582880}``), the local data plane does not
manage it itself (ports, paths, ``max_connections``), and it does not weaken durability. Every other parameter
is reported with the reason, so ``serve`` can list what it could not honour.
"""

from __future__ import annotations

import functools
import re
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass

_VARIABLES_HEADER = "Variables (--variable-name=value)"
_SAFE_VALUE = re.compile(r"[A-Za-z0-9_.,:/+*-]*")

#: Set by the local data plane (ports, paths, accounts) or its own settings (--max-connections).
LOCALLY_MANAGED = frozenset(
    {
        "port",
        "bind_address",
        "socket",
        "datadir",
        "pid_file",
        "tmpdir",
        "log_error",
        "init_file",
        "extra_port",
        "extra_max_connections",
        "max_connections",
        "user",
        "skip_networking",
        "log_bin",
        "innodb_log_file_size",
        "performance_schema",
    }
)
#: Values that would lose committed rows on a crash; the persistent instance keeps the safe ones.
DURABILITY = {"innodb_flush_log_at_trx_commit": {"1"}, "innodb_doublewrite": {"1", "ON", "TRUE"}}


@dataclass(frozen=True)
class NotHonoured:
    name: str
    value: str
    reason: str

    def __str__(self) -> str:
        return f"{self.name}={self.value} ({self.reason})"


@functools.cache
def server_variables(mariadbd: str) -> frozenset[str]:
    """The variable names (underscored) this ``mariadbd`` accepts as options."""
    result = subprocess.run(
        [mariadbd, "--no-defaults", "--verbose", "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    _, _, listing = result.stdout.partition(_VARIABLES_HEADER)
    names = set()
    for line in listing.splitlines()[3:]:
        if not line.strip():
            break
        names.add(line.split()[0].replace("-", "_"))
    return frozenset(names)


def translate(
    parameters: Iterable[tuple[str, str]], known: frozenset[str]
) -> tuple[tuple[str, ...], tuple[NotHonoured, ...]]:
    """``(mariadbd options, parameters not honoured)`` for a parameter group's ``(name, value)`` pairs."""
    options: list[str] = []
    skipped: list[NotHonoured] = []
    for name, value in parameters:
        key = name.strip().lower().replace("-", "_")
        if key in LOCALLY_MANAGED:
            skipped.append(NotHonoured(name, value, "set by the local data plane"))
        elif key not in known:
            skipped.append(NotHonoured(name, value, "MariaDB has no such variable"))
        elif "{" in value:
            skipped.append(NotHonoured(name, value, "an RDS formula, not a value"))
        elif not _SAFE_VALUE.fullmatch(value):
            skipped.append(NotHonoured(name, value, "value not usable as a server option"))
        elif key in DURABILITY and value.upper() not in DURABILITY[key]:
            skipped.append(NotHonoured(name, value, "would lose committed rows on a crash"))
        else:
            options.append(f"--{key.replace('_', '-')}={value}")
    return tuple(options), tuple(skipped)
