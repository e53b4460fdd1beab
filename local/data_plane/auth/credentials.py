"""Temporary credentials for the deployed functions' execution roles, issued locally and checkable by the stand-in.

Lambda hands each container the role's temporary credentials (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
``AWS_SESSION_TOKEN``); the handler signs its RDS auth token with them. The runtime's containers get theirs from
this local issuer rather than from the emulator's STS: a cold start costs no emulator round trip (100 containers
start at once in the load experiment), the stand-in checks such a key without asking anyone (no lookup on its
event loop during the cold-start burst), and nothing changes if the emulator restarts. Fidelity is the same: the
deployed role's policies decide either way (the emulator would not check the role's trust policy either).
People's keys, which the emulator issued, are checked through the emulator (``emulator_principals``).

One issuer key (``.local/auth/issuer.key``, 0600), which the stand-in reads too, derives everything:

- access key id: ``ASIA`` + 16 random base32 characters (AWS's format for temporary keys);
- secret key: HMAC-SHA256(issuer key, access key id), so it is never stored;
- session token: ``{access key id, role ARN, session name, expiry}`` plus an HMAC over them, so the
  verifier recovers the role and rejects a forged, re-bound or expired token.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import re
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path

from local.common.local_target import local_state_dir
from modules.validation import SettingsError, check_pattern, check_range

from .errors import BAD_SIGNATURE, EXPIRED, AuthError

ROLE_ARN = re.compile(r"^arn:aws(-cn|-us-gov)?:iam::\d{12}:role/[\w+=,.@/-]{1,512}$")
ACCESS_KEY_ID = re.compile(r"^ASIA[A-Z2-7]{16}$")
_SESSION_NAME = re.compile(r"^[\w+=,.@-]{2,64}$")
_TOKEN_PREFIX = "SMSLOCAL1"
SESSION_TOKEN_PREFIX = _TOKEN_PREFIX + "."
"""How the session tokens this issuer writes begin (so a verifier knows whom to ask about a key)."""
_KEY_BYTES = 32


def default_issuer_key_path() -> Path:
    return local_state_dir() / "auth" / "issuer.key"


@dataclass(frozen=True)
class IssuerSettings:
    """Where the issuer key lives and how long issued credentials last."""

    key_path: Path = field(default_factory=default_issuer_key_path)
    lifetime_s: int = 12 * 3600
    """Like Lambda's role credentials: refreshed long before a container would notice (900 s .. 12 h)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "key_path", Path(self.key_path))
        check_range("lifetime_s", self.lifetime_s, 900, 12 * 3600)


@dataclass(frozen=True)
class IssuedCredentials:
    """One container's credentials for ``role_arn`` (the secret stays out of ``repr``)."""

    access_key_id: str
    secret_access_key: str = field(repr=False)
    session_token: str = field(repr=False)
    role_arn: str
    session_name: str
    expiration: int
    """Unix time after which the credentials (and tokens signed with them) are refused."""

    def environment(self) -> dict[str, str]:
        """The variables Lambda sets in a container for its execution role."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
            "AWS_SESSION_TOKEN": self.session_token,
        }

    @property
    def assumed_role_arn(self) -> str:
        """The caller identity AWS would report: ``arn:aws:sts::<account>:assumed-role/<role>/<session>``."""
        parts = self.role_arn.split(":", 5)
        partition, account, role_name = parts[1], parts[4], parts[5].rsplit("/", 1)[-1]
        return f"arn:{partition}:sts::{account}:assumed-role/{role_name}/{self.session_name}"


class CredentialIssuer:
    """Issues and resolves credentials with one issuer key (created on first use)."""

    def __init__(self, settings: IssuerSettings | None = None) -> None:
        self.settings = settings or IssuerSettings()
        self._key = _load_or_create_key(self.settings.key_path)

    def issue(self, role_arn: str, session_name: str, now: float | None = None) -> IssuedCredentials:
        check_pattern("role_arn", role_arn, ROLE_ARN, "an IAM role ARN arn:aws:iam::<12 digits>:role/<name>")
        check_pattern("session_name", session_name, _SESSION_NAME, "2-64 of A-Za-z0-9_+=,.@-")
        access_key_id = "ASIA" + base64.b32encode(secrets.token_bytes(10)).decode()
        expiration = int(now if now is not None else time.time()) + self.settings.lifetime_s
        claims = {"k": access_key_id, "r": role_arn, "s": session_name, "e": expiration}
        body = _b64(json.dumps(claims, separators=(",", ":"), sort_keys=True).encode())
        token = f"{_TOKEN_PREFIX}.{body}.{_b64(self._mac(b'session-token', body.encode()))}"
        return IssuedCredentials(access_key_id, self._secret(access_key_id), token, role_arn, session_name, expiration)

    def resolve(self, access_key_id: str, session_token: str, now: float | None = None) -> IssuedCredentials:
        """The credentials behind (access key id, session token); AuthError if forged, re-bound or expired."""
        if not ACCESS_KEY_ID.match(access_key_id or ""):
            raise AuthError(BAD_SIGNATURE, "unknown access key id")
        try:
            prefix, body, mac = session_token.split(".")
            genuine = prefix == _TOKEN_PREFIX and hmac.compare_digest(
                _unb64(mac), self._mac(b"session-token", body.encode())
            )
            claims = json.loads(_unb64(body)) if genuine else None
        except (ValueError, AttributeError, binascii.Error, UnicodeDecodeError):
            genuine, claims = False, None
        if not genuine or not isinstance(claims, dict):
            raise AuthError(BAD_SIGNATURE, "the security token is invalid")
        if claims.get("k") != access_key_id:
            raise AuthError(BAD_SIGNATURE, "the security token belongs to another access key")
        expiration = claims.get("e")
        if not isinstance(expiration, int) or (now if now is not None else time.time()) >= expiration:
            raise AuthError(EXPIRED, f"the credentials expired at {expiration}")
        role_arn, session_name = str(claims.get("r")), str(claims.get("s"))
        return IssuedCredentials(
            access_key_id, self._secret(access_key_id), session_token, role_arn, session_name, expiration
        )

    def _secret(self, access_key_id: str) -> str:
        return base64.b64encode(self._mac(b"secret-access-key", access_key_id.encode())).decode()[:40]

    def _mac(self, purpose: bytes, message: bytes) -> bytes:
        return hmac.new(self._key, purpose + b"\x00" + message, hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    """Strict: only the canonical encoding decodes (no ignored characters, no spare bits), so a token has one form."""
    data = base64.b64decode(text.replace("-", "+").replace("_", "/") + "=" * (-len(text) % 4), validate=True)
    if _b64(data) != text:
        raise ValueError("not canonical base64url")
    return data


def _load_or_create_key(path: Path) -> bytes:
    """Read the issuer key, or create it exclusively (0600) so concurrent starters agree on one key."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        for _ in range(50):  # another process may be between create and write
            key = path.read_bytes()
            if len(key) == _KEY_BYTES:
                return key
            time.sleep(0.01)
        raise SettingsError(
            "key_path", str(path), f"a file of exactly {_KEY_BYTES} bytes (delete it to recreate)"
        ) from None
    try:
        key = secrets.token_bytes(_KEY_BYTES)
        os.write(fd, key)
    finally:
        os.close(fd)
    return key
