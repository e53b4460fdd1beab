"""Host names as certificates and the resolver shim compare them: lower case, no trailing dot, IPs canonical.

Kept apart from ``local_ca`` so the resolver shim, which runs in every runtime container, imports no crypto.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable

from modules.validation import SettingsError

_DNS_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


def normalize_hostnames(hostnames: Iterable[str]) -> tuple[str, ...]:
    """Lower-cased, de-duplicated DNS names and IP addresses; raises SettingsError for anything else."""
    result: list[str] = []
    for raw in hostnames:
        name = str(raw).strip().lower().rstrip(".")
        try:
            name = str(ipaddress.ip_address(name))
        except ValueError:
            if not name or len(name) > 253 or not all(_DNS_LABEL.match(label) for label in name.split(".")):
                raise SettingsError("hostnames", raw, "DNS names (labels of a-z, 0-9, -) or IP addresses") from None
        if name not in result:
            result.append(name)
    if not result:
        raise SettingsError("hostnames", list(hostnames), "at least one DNS name or IP address")
    return tuple(result)
