"""The one object the RDS Proxy stand-in and the runtime use for IAM auth over TLS, built from deployed state.

``IamAuthenticator.check`` runs RDS Proxy's checks on a ``mysql_clear_password`` login: token shape, SigV4
signature (botocore) with the signer's secret, expiry, endpoint, DB user, then ``rds-db:connect`` on this proxy's
``prx-`` id from the signer's policies (moto's IAM engine). Signers are the runtime's role sessions (local issuer,
the deployed role's policies from state) and any principal the emulator issued a key to (its policies from the
emulator). Which DB users exist is the stand-in's business (its accounts); a token must name the login user.
``RuntimeCredentials`` gives each runtime container its role credentials, and ``server_ssl_context`` /
``ca_bundle_path`` the TLS halves.
"""

from __future__ import annotations

import json
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modules.validation import SettingsError, check_range

from .credentials import CredentialIssuer, IssuerSettings
from .emulator_principals import EmulatorPrincipals, EmulatorPrincipalSettings
from .errors import MALFORMED, NOT_AUTHORIZED, WRONG_HOST, AuthError
from .local_ca import LocalCa, LocalCaSettings
from .policies import PrincipalPolicies, ProxyIdentity, deployed_roles, proxy_identity
from .principals import IssuerPrincipals, PrincipalResolver
from .rds_token import TokenCheckSettings, verify_token

LOOPBACK_NAMES = ("localhost", "127.0.0.1")


@dataclass(frozen=True)
class IamAuthSettings:
    """Everything a check needs, as deployed: the proxy and its client port, the stack's roles and their policies."""

    proxy: ProxyIdentity
    port: int
    """The deployed proxy port (the function's ``DB_PORT``)."""
    roles: Mapping[str, PrincipalPolicies]
    """The stack's roles by ARN: what the local issuer's sessions may do."""
    ca: LocalCaSettings = field(default_factory=LocalCaSettings)
    issuer: IssuerSettings = field(default_factory=IssuerSettings)
    clock_skew_s: int = 300
    local_port: int | None = None
    """The stand-in's own listening port: local clients may sign tokens for it (None: only ``port``)."""
    emulator: EmulatorPrincipalSettings | None = None
    """Where keys the emulator issued are checked (None: only the local issuer's keys are accepted)."""

    def __post_init__(self) -> None:
        check_range("port", self.port, 1, 65535)
        if self.local_port is not None:
            check_range("local_port", self.local_port, 1, 65535)
        if not self.proxy.endpoint:
            raise SettingsError("proxy.endpoint", self.proxy.endpoint, "the deployed proxy endpoint's host name")

    @classmethod
    def from_state(cls, state: Mapping[str, Any], **overrides: Any) -> IamAuthSettings:
        """From Terraform state (v4): the proxy resource, the functions' DB_PORT and every role's policies."""
        ports = {
            str(((attrs.get("environment") or [{}])[0].get("variables") or {}).get("DB_PORT", 3306))
            for resource in state.get("resources", [])
            if resource.get("mode") == "managed" and resource.get("type") == "aws_lambda_function"
            for attrs in (i.get("attributes", {}) for i in resource.get("instances", []))
        }
        if len(ports) > 1:
            raise SettingsError("aws_lambda_function DB_PORT", sorted(ports), "one proxy port for every function")
        port = int(ports.pop()) if ports else 3306
        return cls(proxy=proxy_identity(state), port=port, roles=deployed_roles(state), **overrides)

    @classmethod
    def from_state_file(cls, path: Path, **overrides: Any) -> IamAuthSettings:
        return cls.from_state(json.loads(Path(path).read_text()), **overrides)


@dataclass(frozen=True)
class Principal:
    """Who logged in: the DB user and the principal that signed the token."""

    db_user: str
    role_arn: str
    """The role behind the signer's session ("" for an IAM user's key)."""
    caller_arn: str
    """The signer's identity: ``…:assumed-role/<role>/<session>`` or ``…:user/<name>``."""
    access_key_id: str
    token_expires_at: int
    source: str
    """Who issued the signer's key: ``local issuer`` (runtime containers) or ``emulator``."""


class IamAuthenticator:
    def __init__(self, settings: IamAuthSettings) -> None:
        self.settings = settings
        self.issuer = CredentialIssuer(settings.issuer)
        self.emulator = EmulatorPrincipals(settings.emulator) if settings.emulator else None
        self._principals = PrincipalResolver(IssuerPrincipals(self.issuer, settings.roles), self.emulator)
        self._token = TokenCheckSettings(
            settings.proxy.endpoint, settings.port, settings.proxy.region, settings.clock_skew_s, settings.local_port
        )
        self._ca: LocalCa | None = None

    def check(
        self, user: str, password: str, host: str | None = None, port: int | None = None, now: float | None = None
    ) -> Principal:
        """Admit ``user`` with the IAM token ``password`` or raise AuthError naming the failed check.

        ``host``/``port``: the endpoint the client addressed when known (its TLS SNI, the deployed port it
        reached through the runtime's shim), else None.
        """
        if host is not None and host.lower().rstrip(".") not in (self._token.host, *LOOPBACK_NAMES):
            raise AuthError(WRONG_HOST, f"the client addressed {host}, this proxy is {self._token.host}")
        if port is not None and port not in (self._token.port, self._token.local_port):
            raise AuthError(WRONG_HOST, f"the client addressed port {port}, this proxy is on {self._token.port}")
        verified = verify_token(password, user, self._token, self._principals, time.time() if now is None else now)
        signer = verified.credentials
        decision = signer.policy.decide(self.settings.proxy.connect_arn(user))
        if not decision.allowed:
            raise AuthError(NOT_AUTHORIZED, decision.explanation)
        return Principal(
            user, signer.role_arn, signer.principal_arn, signer.access_key_id, verified.expires_at, signer.source
        )

    # -- TLS ----------------------------------------------------------------------------------------
    @property
    def local_ca(self) -> LocalCa:
        if self._ca is None:
            self._ca = LocalCa(self.settings.ca)
        return self._ca

    @property
    def ca_bundle_path(self) -> Path:
        """The function's ``DB_SSL_CA`` locally."""
        return self.local_ca.ca_bundle_path

    def server_ssl_context(self) -> ssl.SSLContext:
        """The stand-in's TLS context: a certificate for the deployed endpoint name and loopback."""
        return self.local_ca.server_ssl_context((self._token.host, *LOOPBACK_NAMES))


class RuntimeCredentials:
    """The execution role's credentials for each new runtime container (fresh keys per container, as Lambda)."""

    def __init__(self, issuer: CredentialIssuer, role_arn: str, function_name: str) -> None:
        self._issuer, self.role_arn, self.function_name = issuer, role_arn, function_name
        issuer.issue(role_arn, function_name)  # validate both now, not at the first cold start

    def environment(self) -> dict[str, str]:
        """AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN for one container."""
        return self._issuer.issue(self.role_arn, self.function_name).environment()


def clear_text_password(auth_response: bytes) -> str:
    """The token from a ``mysql_clear_password`` auth response (the password plus a NUL terminator)."""
    text = auth_response[:-1] if auth_response.endswith(b"\x00") else auth_response
    try:
        return text.decode("ascii")
    except UnicodeDecodeError:
        raise AuthError(MALFORMED, "the clear-text password is not ASCII") from None
