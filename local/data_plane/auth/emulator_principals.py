"""Keys the emulator issued (IAM users' access keys, ``sts assume-role`` sessions), checked as RDS Proxy checks them.

The emulator's lookup (``local.common.emulator_credentials``) gives a key's secret, principal and identity
policies in one loopback round trip (~1.5 ms). A token check must stay cheap and runs on the stand-in's event loop,
so each answer (also "no such key") is kept for ``cache_s`` seconds: a policy or key changed in the emulator takes
effect within that time, as IAM changes in AWS take effect after a short delay. New keys are looked up at most
``lookups_per_s`` times a second: a client sending tokens with made-up keys cannot stall the loop, it is refused.
"""

from __future__ import annotations

import hmac
import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from local.common.emulator_credentials import (
    ACCESS_KEY_ID,
    USER,
    EmulatorCredentials,
    EmulatorLookupError,
    lookup_credentials,
)
from modules.validation import SettingsError

from .errors import BAD_SIGNATURE, EXPIRED, AuthError
from .policies import ConnectAuthorizer, PolicyDocument, PrincipalPolicies
from .principals import EMULATOR, ConnectPolicy, Signer

Lookup = Callable[[str, str], EmulatorCredentials | None]
_MAX_ENTRIES = 4096


@dataclass(frozen=True)
class EmulatorPrincipalSettings:
    """Where the emulator is and how its answers are reused."""

    endpoint: str
    """The emulator, e.g. ``http://127.0.0.1:4599`` (the stand-in's ``secrets_endpoint``)."""
    cache_s: float = 5.0
    """Seconds an answer is reused, 0-300 (0: ask on every login, for tests that change policies)."""
    lookups_per_s: float = 20.0
    """Lookups of keys not in the cache per second, 1-1000; beyond that, unknown keys are refused unasked."""
    timeout_s: float = 2.0
    """How long one lookup may take, 0.1-30 s (it holds up the stand-in's other clients meanwhile)."""

    def __post_init__(self) -> None:
        if not isinstance(self.endpoint, str) or not self.endpoint.startswith(("http://", "https://")):
            raise SettingsError("emulator endpoint", self.endpoint, "an http:// URL such as http://127.0.0.1:4599")
        for name, low, high in (("cache_s", 0, 300), ("lookups_per_s", 1, 1000), ("timeout_s", 0.1, 30)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
                raise SettingsError(name, value, f"a number from {low} to {high}")


@dataclass(frozen=True)
class _Entry:
    fetched_at: float
    credentials: EmulatorCredentials | None
    policy: ConnectPolicy | None


class EmulatorPrincipals:
    """Resolves emulator keys to signers, with the cache and lookup budget described above."""

    def __init__(
        self,
        settings: EmulatorPrincipalSettings,
        lookup: Lookup | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.settings = settings
        self._lookup = lookup or (lambda endpoint, key: lookup_credentials(endpoint, key, settings.timeout_s))
        self._clock = clock or time.monotonic
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._lock = threading.Lock()
        self._budget = settings.lookups_per_s
        self._budget_at = self._clock()
        self.lookups = 0
        """How many times the emulator was asked (for tests and the benchmark)."""

    def resolve(self, access_key_id: str, session_token: str, now: float | None = None) -> Signer:
        if not ACCESS_KEY_ID.match(access_key_id):
            raise AuthError(BAD_SIGNATURE, "the access key id is not one AWS or the emulator issues")
        entry = self._entry(access_key_id)
        credentials = entry.credentials
        if credentials is None or entry.policy is None:
            raise AuthError(BAD_SIGNATURE, f"access key {access_key_id} was not issued by the emulator")
        if not credentials.active:
            raise AuthError(BAD_SIGNATURE, f"access key {access_key_id} is inactive")
        if credentials.kind == USER:
            if session_token:
                raise AuthError(BAD_SIGNATURE, "a session token came with an IAM user's long-term key")
        elif not hmac.compare_digest(session_token.encode(), credentials.session_token.encode()):
            raise AuthError(BAD_SIGNATURE, f"the security token does not belong to access key {access_key_id}")
        moment = time.time() if now is None else now
        if credentials.expiration is not None and moment >= credentials.expiration:
            raise AuthError(EXPIRED, f"the session's credentials expired at {credentials.expiration}")
        return Signer(
            credentials.access_key_id,
            credentials.secret_access_key,
            credentials.session_token,
            credentials.principal_arn,
            credentials.role_arn,
            EMULATOR,
            entry.policy,
        )

    def _entry(self, access_key_id: str) -> _Entry:
        with self._lock:
            clock = self._clock()
            entry = self._entries.get(access_key_id)
            if entry is not None and clock - entry.fetched_at < self.settings.cache_s:
                self._entries.move_to_end(access_key_id)
                return entry
            if not self._spend(clock):
                if entry is not None:
                    return entry  # a known key keeps working while made-up ones are being refused
                raise AuthError(BAD_SIGNATURE, f"access key {access_key_id} is unknown (too many new keys just now)")
            self.lookups += 1
            try:
                credentials = self._lookup(self.settings.endpoint, access_key_id)
            except EmulatorLookupError as exc:
                raise AuthError(BAD_SIGNATURE, f"cannot look up access key {access_key_id}: {exc}") from None
            entry = _Entry(clock, credentials, _policy(credentials) if credentials else None)
            self._entries[access_key_id] = entry
            self._entries.move_to_end(access_key_id)
            while len(self._entries) > _MAX_ENTRIES:
                self._entries.popitem(last=False)
            return entry

    def _spend(self, clock: float) -> bool:
        """A token bucket of ``lookups_per_s`` (as deep as one second of lookups)."""
        rate = self.settings.lookups_per_s
        self._budget = min(rate, self._budget + (clock - self._budget_at) * rate)
        self._budget_at = clock
        if self._budget < 1:
            return False
        self._budget -= 1
        return True


def _policy(credentials: EmulatorCredentials) -> ConnectPolicy:
    """The principal's policies for moto's evaluator; a document that is not JSON fails closed (denies all)."""
    arn = credentials.principal_arn
    documents = [PolicyDocument(p.name, _document(p.name, p.document)) for p in credentials.policies]
    identity = ConnectAuthorizer(PrincipalPolicies(arn, tuple(documents)))
    session = None
    if credentials.session_policy:
        session_document = _document("session policy", credentials.session_policy)
        session = ConnectAuthorizer(PrincipalPolicies(arn, (PolicyDocument("session policy", session_document),)))
    return ConnectPolicy(identity, session)


def _document(name: str, text: str) -> dict:
    try:
        document = json.loads(text)
    except ValueError:
        document = None
    if not isinstance(document, dict):
        return {"Statement": [{"Effect": "Deny", "Action": "*", "Resource": "*", "Sid": f"unreadable {name}"}]}
    return document
