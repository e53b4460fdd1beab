"""Resolve the deployed proxy endpoint to the local stand-in inside a runtime container, without touching DNS.

The handler connects to ``DB_HOST:DB_PORT`` (the deployed endpoint name) and verifies the certificate for that
name, exactly as in AWS. The runtime installs this shim in each container before importing the handler, so
``socket.getaddrinfo`` (which ``socket.create_connection``, mysql.connector and asyncio all call) answers
for the endpoint with the stand-in's loopback address and port. TLS still sees the deployed host name
(SNI, certificate verification), and nothing is written to /etc/hosts.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from modules.validation import SettingsError, check_range

from .hostnames import normalize_hostnames


@dataclass(frozen=True)
class AddressOverride:
    """Connections to ``host:port`` go to ``target_host:target_port`` (a literal IP address) instead."""

    host: str
    port: int
    target_port: int
    target_host: str = "127.0.0.1"

    def __post_init__(self) -> None:
        object.__setattr__(self, "host", normalize_hostnames([self.host])[0])
        check_range("port", self.port, 1, 65535)
        check_range("target_port", self.target_port, 1, 65535)
        try:
            ipaddress.ip_address(self.target_host)
        except ValueError:
            raise SettingsError("target_host", self.target_host, "a literal IP address such as 127.0.0.1") from None

    def encode(self) -> str:
        return f"{self.host}:{self.port}={self.target_host}:{self.target_port}"

    @classmethod
    def decode(cls, text: str) -> AddressOverride:
        """Parse ``host:port=ip:port`` (the form a runtime passes to its containers)."""
        try:
            source, target = text.strip().split("=")
            host, port = source.rsplit(":", 1)
            target_host, target_port = target.rsplit(":", 1)
            return cls(host, int(port), int(target_port), target_host)
        except ValueError as exc:
            if isinstance(exc, SettingsError):
                raise
            raise SettingsError("address_override", text, "host:port=ip:port") from None


_original_getaddrinfo = socket.getaddrinfo
_overrides: dict[tuple[str, int], AddressOverride] = {}


def install(overrides: Iterable[AddressOverride]) -> None:
    """Route these endpoints in this process (idempotent; later calls add to or replace earlier ones)."""
    for override in overrides:
        _overrides[(override.host, override.port)] = override
    socket.getaddrinfo = _getaddrinfo  # type: ignore[assignment]


def uninstall() -> None:
    _overrides.clear()
    socket.getaddrinfo = _original_getaddrinfo  # type: ignore[assignment]


def _getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> list:
    if isinstance(host, (str, bytes)) and _overrides:
        name = (host.decode() if isinstance(host, bytes) else host).lower().rstrip(".")
        try:
            number = int(port) if port is not None else 0
        except (TypeError, ValueError):
            number = -1  # a service name: not ours
        override = _overrides.get((name, number))
        if override is not None:
            return _original_getaddrinfo(override.target_host, override.target_port, *args, **kwargs)
        if any(key[0] == name for key in _overrides):  # the name resolves, other ports stay as asked
            target = next(o.target_host for (h, _), o in _overrides.items() if h == name)
            return _original_getaddrinfo(target, port, *args, **kwargs)
    return _original_getaddrinfo(host, port, *args, **kwargs)
