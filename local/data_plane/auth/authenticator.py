"""The one object the RDS Proxy stand-in and the runtime use for IAM auth over TLS, built from deployed state.

``IamAuthenticator.check`` runs RDS Proxy's checks on a ``mysql_clear_password`` login: token shape,
SigV4 signature (botocore), expiry, endpoint, DB user, then ``rds-db:connect`` on this proxy's
``prx-`` id from the role's deployed policies (moto's IAM engine). ``RuntimeCredentials`` gives each
runtime container its role credentials, and ``server_ssl_context`` / ``ca_bundle_path`` the TLS halves.
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
from .errors import MALFORMED, NOT_AUTHORIZED, WRONG_HOST, WRONG_USER, AuthError
from .local_ca import LocalCa, LocalCaSettings
from .policies import ConnectAuthorizer, ProxyIdentity, RolePolicies, function_role_arn, proxy_identity, role_policies
from .rds_token import TokenCheckSettings, verify_token

LOOPBACK_NAMES = ("localhost", "127.0.0.1")


@dataclass(frozen=True)
class IamAuthSettings:
    """Everything a check needs, as deployed: the proxy, its client port and DB user, the role's policies."""

    proxy: ProxyIdentity
    port: int
    db_user: str
    policies: RolePolicies
    ca: LocalCaSettings = field(default_factory=LocalCaSettings)
    issuer: IssuerSettings = field(default_factory=IssuerSettings)
    clock_skew_s: int = 300

    def __post_init__(self) -> None:
        check_range("port", self.port, 1, 65535)
        if not self.db_user or len(self.db_user) > 32:
            raise SettingsError("db_user", self.db_user, "1-32 characters (the proxy secret's user)")
        if not self.proxy.endpoint:
            raise SettingsError("proxy.endpoint", self.proxy.endpoint, "the deployed proxy endpoint's host name")

    @classmethod
    def from_state(cls, state: Mapping[str, Any], **overrides: Any) -> IamAuthSettings:
        """From Terraform state (v4): the proxy resource, the function's DB_PORT/DB_USER and role policies."""
        functions = [
            i.get("attributes", {})
            for r in state.get("resources", [])
            if r.get("mode") == "managed" and r.get("type") == "aws_lambda_function"
            for i in r.get("instances", [])
        ]
        environment = ((functions[0].get("environment") or [{}])[0].get("variables") or {}) if functions else {}
        role_arn = function_role_arn(state)
        return cls(
            proxy=proxy_identity(state),
            port=int(environment.get("DB_PORT", 3306)),
            db_user=str(environment.get("DB_USER", "")),
            policies=role_policies(state, role_arn),
            **overrides,
        )

    @classmethod
    def from_state_file(cls, path: Path, **overrides: Any) -> IamAuthSettings:
        return cls.from_state(json.loads(Path(path).read_text()), **overrides)


@dataclass(frozen=True)
class Principal:
    """Who logged in: the DB user and the role session that signed the token."""

    db_user: str
    role_arn: str
    caller_arn: str
    access_key_id: str
    token_expires_at: int


class IamAuthenticator:
    def __init__(self, settings: IamAuthSettings) -> None:
        self.settings = settings
        self.issuer = CredentialIssuer(settings.issuer)
        self._authorizer = ConnectAuthorizer(settings.policies)
        self._token = TokenCheckSettings(
            settings.proxy.endpoint, settings.port, settings.proxy.region, settings.clock_skew_s
        )
        self._ca: LocalCa | None = None

    def check(
        self, user: str, password: str, host: str | None = None, port: int | None = None, now: float | None = None
    ) -> Principal:
        """Admit ``user`` with the IAM token ``password`` or raise AuthError naming the failed check.

        ``host``/``port``: the endpoint the client addressed when known (its TLS SNI, its port), else None.
        """
        if host is not None and host.lower().rstrip(".") not in (self._token.host, *LOOPBACK_NAMES):
            raise AuthError(WRONG_HOST, f"the client addressed {host}, this proxy is {self._token.host}")
        if port is not None and port != self._token.port:
            raise AuthError(WRONG_HOST, f"the client addressed port {port}, this proxy is on {self._token.port}")
        if user != self.settings.db_user:
            raise AuthError(WRONG_USER, f"this proxy has credentials for {self.settings.db_user!r} only")
        verified = verify_token(password, user, self._token, self.issuer, time.time() if now is None else now)
        credentials = verified.credentials
        if credentials.role_arn != self._authorizer.role_arn:
            raise AuthError(NOT_AUTHORIZED, f"{credentials.role_arn} is not the function's role")
        decision = self._authorizer.decide(self.settings.proxy.connect_arn(user))
        if not decision.allowed:
            raise AuthError(NOT_AUTHORIZED, decision.explanation)
        return Principal(
            user, credentials.role_arn, credentials.assumed_role_arn, credentials.access_key_id, verified.expires_at
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
