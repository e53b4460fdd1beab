"""Stable loopback ports of a stack's local data plane: the same on every ``serve`` start.

A client configured once (a ``mysql`` profile, a bookmarked URL, a hosts line) keeps working across restarts,
so each stack gets its own block of ports derived from its name. The blocks lie below Linux's ephemeral range
(32768-60999), where the OS never hands out ports to outgoing connections or to ``bind(0)``. ``LOCAL_PORT_BASE``
(or the ``serve`` options) moves a block when another program already uses it.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Mapping
from dataclasses import dataclass

PORT_BASE_VARIABLE = "LOCAL_PORT_BASE"
FIRST_BLOCK_PORT = 20000
BLOCK_COUNT = 1000
BLOCK_SIZE = 8
PORT_BASE_RANGE = (1024, 65535 - BLOCK_SIZE)
"""Allowed values of ``LOCAL_PORT_BASE``: the whole block must fit below 65536."""


class PortSettingError(ValueError):
    """A port setting is out of range; the message names the setting, the value and the allowed range."""


@dataclass(frozen=True)
class LocalPorts:
    """One stack's loopback ports. Default: a block derived from the stack name (``stack_ports``)."""

    http: int
    """The local HTTP API (API Gateway's ``$default`` stage). Default: block base + 0."""
    proxy: int
    """The RDS Proxy stand-in's client port. Default: block base + 1."""
    proxy_stats: int
    """The stand-in's ``GET /stats`` endpoint. Default: block base + 2."""
    db: int
    """The local DB instance (MariaDB). Default: block base + 3."""
    db_extra: int
    """MariaDB's ``--extra-port``, outside ``max_connections`` (monitoring). Default: block base + 4."""

    def __post_init__(self) -> None:
        for name, port in self.items():
            if not 1 <= port <= 65535:
                raise PortSettingError(f"invalid port {name}={port}: allowed an integer from 1 to 65535")

    def items(self) -> tuple[tuple[str, int], ...]:
        return (
            ("http", self.http),
            ("proxy", self.proxy),
            ("proxy_stats", self.proxy_stats),
            ("db", self.db),
            ("db_extra", self.db_extra),
        )


def block_base(stack: str, environ: Mapping[str, str] | None = None) -> int:
    """``LOCAL_PORT_BASE`` if set, else ``FIRST_BLOCK_PORT`` + a block chosen by a CRC-32 of the stack name."""
    environ = os.environ if environ is None else environ
    raw = environ.get(PORT_BASE_VARIABLE, "").strip()
    if not raw:
        return FIRST_BLOCK_PORT + (zlib.crc32(stack.encode()) % BLOCK_COUNT) * BLOCK_SIZE
    low, high = PORT_BASE_RANGE
    try:
        base = int(raw)
    except ValueError:
        base = None
    if base is None or not low <= base <= high:
        raise PortSettingError(f"invalid setting {PORT_BASE_VARIABLE}={raw}: allowed an integer from {low} to {high}")
    return base


def stack_ports(stack: str, environ: Mapping[str, str] | None = None) -> LocalPorts:
    """The stack's ports: consecutive from its block base."""
    base = block_base(stack, environ)
    return LocalPorts(http=base, proxy=base + 1, proxy_stats=base + 2, db=base + 3, db_extra=base + 4)
