"""Who signed a token and which policies decide for them: the local issuer's role sessions and emulator principals.

Two kinds of keys sign tokens locally. The runtime's containers get role sessions from the local issuer (their
secrets derive from the issuer key, their policies are the deployed role's, read from Terraform state). People
and their tools use keys the emulator issued (an IAM user's access key, an ``sts assume-role`` session), whose
secret and policies the emulator holds (``emulator_principals``). ``PrincipalResolver`` routes each token's key to
the right one by its session token, so a check never asks the emulator about a container's key.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from .credentials import SESSION_TOKEN_PREFIX, CredentialIssuer
from .errors import BAD_SIGNATURE, AuthError
from .policies import CONNECT_ACTION, ConnectAuthorizer, Decision, PrincipalPolicies

LOCAL_ISSUER = "local issuer"
EMULATOR = "emulator"


class ConnectPolicy:
    """The principal's identity policies, narrowed by an assume-role session policy when there is one.

    As in IAM: an explicit Deny in either denies; otherwise both must allow.
    """

    def __init__(self, identity: ConnectAuthorizer, session: ConnectAuthorizer | None = None) -> None:
        self._identity, self._session = identity, session

    @classmethod
    def without_policies(cls, principal_arn: str) -> ConnectPolicy:
        return cls(ConnectAuthorizer(PrincipalPolicies(principal_arn, ())))

    def decide(self, resource_arn: str) -> Decision:
        identity = self._identity.decide(resource_arn)
        if self._session is None:
            return identity
        session = self._session.decide(resource_arn)
        if session.explicit_deny:
            return Decision(False, f"explicitly denied by the session policy ({session.explanation})", True)
        if not identity.allowed:
            return identity
        if not session.allowed:
            return Decision(False, f"the session policy does not allow {CONNECT_ACTION} on {resource_arn}")
        return identity


@dataclass(frozen=True)
class Signer:
    """A verified key's holder: the key (to recompute the signature), who they are, what they may do."""

    access_key_id: str
    secret_access_key: str = field(repr=False)
    session_token: str = field(repr=False)
    principal_arn: str
    """The caller identity (``…:user/<name>`` or ``…:assumed-role/<role>/<session>``)."""
    role_arn: str
    """The role behind a session ("" for an IAM user)."""
    source: str
    """``local issuer`` or ``emulator``."""
    policy: ConnectPolicy = field(repr=False, compare=False)


class IssuerPrincipals:
    """The local issuer's role sessions, decided by the deployed role's policies (a role not deployed: nothing)."""

    def __init__(self, issuer: CredentialIssuer, roles: Mapping[str, PrincipalPolicies]) -> None:
        self.issuer = issuer
        self._policies = {arn: ConnectPolicy(ConnectAuthorizer(p)) for arn, p in roles.items()}

    def resolve(self, access_key_id: str, session_token: str, now: float | None = None) -> Signer:
        credentials = self.issuer.resolve(access_key_id, session_token, now)
        role = credentials.role_arn
        policy = self._policies.get(role) or ConnectPolicy.without_policies(role)  # a role this stack does not have
        return Signer(
            credentials.access_key_id,
            credentials.secret_access_key,
            credentials.session_token,
            credentials.assumed_role_arn,
            role,
            LOCAL_ISSUER,
            policy,
        )


class KeyResolver(Protocol):
    """What ``PrincipalResolver`` delegates emulator keys to (``emulator_principals.EmulatorPrincipals``)."""

    def resolve(self, access_key_id: str, session_token: str, now: float | None = None) -> Signer: ...


class PrincipalResolver:
    """Routes a token's key: the local issuer's sessions carry its session-token prefix, the rest are the emulator's."""

    def __init__(self, issuer: IssuerPrincipals, emulator: KeyResolver | None) -> None:
        self.issuer, self.emulator = issuer, emulator

    def resolve(self, access_key_id: str, session_token: str, now: float | None = None) -> Signer:
        if session_token.startswith(SESSION_TOKEN_PREFIX):
            return self.issuer.resolve(access_key_id, session_token, now)
        if self.emulator is None:
            raise AuthError(
                BAD_SIGNATURE, f"access key {access_key_id} is unknown (no emulator is configured to look it up)"
            )
        return self.emulator.resolve(access_key_id, session_token, now)
