"""Who holds an access key the local AWS emulator issued, and its secret: the lookup AWS does inside RDS Proxy.

RDS Proxy verifies an IAM auth token's SigV4 signature with the signer's secret key and then asks IAM whether the
signer's policies allow ``rds-db:connect``. Locally the emulator (moto) is IAM and STS: it issued every IAM user's
access key and every ``sts assume-role`` session, so only it knows their secrets. The emulator answers one lookup
for this (``LOOKUP_PATH``, installed by ``local.control_plane.credential_lookup``): the secret, the session token,
the principal, whether the key is active, when a session expires, and the principal's identity policies.

This module is the contract both sides share and the client the RDS Proxy stand-in and ``python -m local sql`` use.
The emulator listens on loopback only and already hands every secret to anyone who can reach it; this lookup reveals
nothing beyond that, and its answers are never logged or printed.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any

LOOKUP_PATH = "/moto-api/local/credentials"
"""POST ``{"AccessKeyId": ...}``: 200 with the fields below, 404 when the emulator never issued that key."""

ACCESS_KEY_ID = re.compile(r"^(AKIA|ASIA)[A-Z0-9]{16}$")
"""The shape of the access key ids AWS (and so the emulator) issues: long-term AKIA…, temporary ASIA…."""

USER = "user"
ASSUMED_ROLE = "assumed-role"


class EmulatorLookupError(RuntimeError):
    """The emulator could not be asked (down, wrong address) or gave an answer this client cannot read."""


@dataclass(frozen=True)
class PolicyText:
    """One identity policy of a principal: where it comes from (inline name or policy ARN) and its JSON text."""

    name: str
    document: str


@dataclass(frozen=True)
class EmulatorCredentials:
    """An access key the emulator issued and the principal behind it (secrets stay out of ``repr``)."""

    access_key_id: str
    secret_access_key: str = field(repr=False)
    session_token: str = field(repr=False)
    """Empty for an IAM user's long-term key."""
    kind: str
    """``user`` or ``assumed-role``."""
    principal_arn: str
    """The caller identity: ``arn:aws:iam::<account>:user/<name>`` or ``arn:aws:sts::<account>:assumed-role/…``."""
    role_arn: str
    """The assumed role (empty for a user)."""
    active: bool
    expiration: int | None
    """Unix time a session ends (None for a user's key, which does not expire)."""
    policies: tuple[PolicyText, ...]
    """The principal's identity policies: a user's inline, attached and group policies; an assumed role's own."""
    session_policy: str
    """The inline session policy passed to AssumeRole (empty: none), which narrows what the role allows."""

    @classmethod
    def from_json(cls, data: Any) -> EmulatorCredentials:
        """Parse the emulator's answer; EmulatorLookupError when any field is missing or of the wrong type."""
        try:
            kind = data["Kind"]
            if kind not in (USER, ASSUMED_ROLE):
                raise ValueError(f"Kind={kind!r}")
            expiration = data.get("Expiration")
            if expiration is not None and (isinstance(expiration, bool) or not isinstance(expiration, int)):
                raise ValueError(f"Expiration={expiration!r}")
            policies = tuple(PolicyText(_text(p["Name"]), _text(p["Document"])) for p in data["Policies"])
            credentials = cls(
                access_key_id=_text(data["AccessKeyId"]),
                secret_access_key=_text(data["SecretAccessKey"]),
                session_token=_text(data.get("SessionToken") or ""),
                kind=kind,
                principal_arn=_text(data["PrincipalArn"]),
                role_arn=_text(data.get("RoleArn") or ""),
                active=data["Status"] == "Active",
                expiration=expiration,
                policies=policies,
                session_policy=_text(data.get("SessionPolicy") or ""),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise EmulatorLookupError(f"unreadable answer from the emulator's credentials lookup: {exc}") from None
        return credentials


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__}")
    return value


def lookup_credentials(endpoint: str, access_key_id: str, timeout_s: float = 2.0) -> EmulatorCredentials | None:
    """The emulator's record of ``access_key_id``; None when it never issued that key.

    Raises EmulatorLookupError when the emulator cannot be reached or does not offer the lookup.
    """
    if not ACCESS_KEY_ID.match(access_key_id):
        return None  # not a key AWS could have issued: nothing to ask
    request = urllib.request.Request(
        endpoint.rstrip("/") + LOOKUP_PATH,
        data=json.dumps({"AccessKeyId": access_key_id}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            body = response.read()
    except urllib.error.HTTPError as exc:
        if exc.code == 404 and exc.headers.get("Content-Type", "").startswith("application/json"):
            return None
        raise EmulatorLookupError(
            f"the emulator at {endpoint} answered {exc.code} to {LOOKUP_PATH}: is it started by "
            "`python -m local up` (which installs the lookup)?"
        ) from None
    except (urllib.error.URLError, OSError) as exc:
        raise EmulatorLookupError(f"cannot reach the emulator at {endpoint}: {exc}") from None
    try:
        data = json.loads(body)
    except ValueError:
        raise EmulatorLookupError(f"the emulator at {endpoint} answered {LOOKUP_PATH} with non-JSON") from None
    return EmulatorCredentials.from_json(data)
