"""Stable loopback ports of a stack's local data plane: the same on every ``serve`` start.

A client configured once (a ``mysql`` profile, a bookmarked URL, a hosts line) keeps working across restarts,
so each stack gets its own block of ports derived from its name. The blocks lie below Linux's ephemeral range
(32768-60999), where the OS never hands out ports to outgoing connections or to ``bind(0)``. ``LOCAL_PORT_BASE``
(or the ``serve`` options) moves a block when another program already uses it.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

PORT_BASE_VARIABLE = "LOCAL_PORT_BASE"
FIRST_BLOCK_PORT = 20000
BLOCK_COUNT = 1000
BLOCK_SIZE = 8
PORT_BASE_RANGE = (1024, 65535 - BLOCK_SIZE)
"""Allowed values of ``LOCAL_PORT_BASE``: the whole block must fit below 65536."""
PORT_OPTIONS = {"http": "--http-port", "proxy": "--proxy-port", "db": "--db-port"}
"""The ``serve`` options that move one port of the block (the others move with ``LOCAL_PORT_BASE`` only)."""
LOOPBACK = "127.0.0.1"


class PortSettingError(ValueError):
    """A port setting is out of range; the message names the setting, the value and the allowed range."""


class PortTakenError(PortSettingError):
    """A port of the block is in use by another program; the message names it and what to set instead."""


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

    def with_overrides(self, **ports: int | None) -> LocalPorts:
        """This block with single ports moved (``http=``, ``proxy=``, ``db=``: the ``serve`` options); None keeps."""
        unknown = sorted(set(ports) - set(PORT_OPTIONS))
        if unknown:
            raise PortSettingError(f"invalid port override {unknown[0]}: allowed {', '.join(PORT_OPTIONS)}")
        moved = LocalPorts(**{**dataclasses.asdict(self), **{k: v for k, v in ports.items() if v is not None}})
        values = [port for _, port in moved.items()]
        if len(set(values)) != len(values):
            clash = next(name for name, port in moved.items() if values.count(port) > 1)
            raise PortSettingError(
                f"invalid port {clash}={getattr(moved, clash)}: used twice in {dict(moved.items())}; "
                "allowed a port no other listener of this block uses"
            )
        return moved

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


def _taken(port: int, host: str) -> bool:
    # SO_REUSEADDR as the listeners themselves use it: a port left in TIME_WAIT by the previous run is free.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return True
    return False


def require_free(ports: LocalPorts, names: Iterable[str], host: str = LOOPBACK) -> None:
    """Refuse (`PortTakenError`) when one of the named ports is in use, saying which and what to set instead."""
    for name in names:
        port = getattr(ports, name)
        if _taken(port, host):
            option = f" or {PORT_OPTIONS[name]} to move this one" if name in PORT_OPTIONS else ""
            raise PortTakenError(
                f"port {name}={port} on {host} is taken by another program: set {PORT_BASE_VARIABLE} to move the "
                f"whole block (allowed {PORT_BASE_RANGE[0]} to {PORT_BASE_RANGE[1]}){option}"
            )
