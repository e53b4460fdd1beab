"""Verify an RDS IAM auth token (a SigV4-presigned ``connect`` URL) the way RDS Proxy does.

The token is what ``rds.generate_db_auth_token`` returns and the client sends as its
``mysql_clear_password`` password: ``<host>:<port>/?Action=connect&DBUser=<user>&X-Amz-...``.
The signature is recomputed with botocore's own SigV4 query signer (service ``rds-db``) from the
secret key the credential resolver finds for the token's access key (the local issuer derives it, the emulator
knows it), so the stand-in accepts exactly what botocore produces.
"""

from __future__ import annotations

import datetime as dt
import hmac
import re
import time
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar
from urllib.parse import parse_qsl, urlsplit

from botocore.auth import SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from modules.validation import check_pattern, check_range

from .errors import BAD_SIGNATURE, EXPIRED, MALFORMED, WRONG_HOST, WRONG_USER, AuthError

SERVICE = "rds-db"
ALGORITHM = "AWS4-HMAC-SHA256"
MAX_EXPIRES_S = 900  # RDS auth tokens live 15 minutes at most
MAX_TOKEN_CHARS = 8192
_REQUIRED = (
    "Action",
    "DBUser",
    "X-Amz-Algorithm",
    "X-Amz-Credential",
    "X-Amz-Date",
    "X-Amz-Expires",
    "X-Amz-SignedHeaders",
    "X-Amz-Signature",
)
_ALLOWED = frozenset(_REQUIRED) | {"X-Amz-Security-Token"}
_SIGNATURE = re.compile(r"^[0-9a-f]{64}$")
_DATE = "%Y%m%dT%H%M%SZ"
_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d$")
_HOST = re.compile(r"^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$")


class SigningKey(Protocol):
    """What a signature is recomputed from."""

    @property
    def access_key_id(self) -> str: ...
    @property
    def secret_access_key(self) -> str: ...
    @property
    def session_token(self) -> str: ...


K = TypeVar("K", bound=SigningKey, covariant=True)


class CredentialResolver(Protocol[K]):
    """Finds the key behind (access key id, session token); AuthError when there is none or it is not valid."""

    def resolve(self, access_key_id: str, session_token: str, now: float | None = None) -> K: ...


@dataclass(frozen=True)
class TokenCheckSettings:
    """What a token must be for: the proxy endpoint (as deployed) and its region."""

    host: str
    port: int
    """The deployed port: what the function signs for (its ``DB_PORT``), reaching the stand-in through the shim."""
    region: str
    clock_skew_s: int = 300
    """How far in the future X-Amz-Date may be (a client clock running ahead), like AWS's 5 minutes."""
    local_port: int | None = None
    """The stand-in's own port (None: unknown). Clients outside the runtime reach the endpoint name at this port
    through the hosts line, and sign for the address they connect to, as RDS Proxy's clients do."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "host", self.host.strip().lower())
        check_pattern("host", self.host, _HOST, "a DNS name or IPv4 address of a-z, 0-9, '.', '-'")
        check_range("port", self.port, 1, 65535)
        if self.local_port is not None:
            check_range("local_port", self.local_port, 1, 65535)
        check_pattern("region", self.region, _REGION, "an AWS region name such as ap-northeast-1")
        check_range("clock_skew_s", self.clock_skew_s, 0, MAX_EXPIRES_S)


@dataclass(frozen=True)
class VerifiedToken(Generic[K]):
    """Who signed an accepted token, and for what."""

    db_user: str
    credentials: K
    signed_at: int
    expires_at: int


@dataclass(frozen=True)
class _Parsed:
    netloc: str
    host: str
    port: int
    params: dict[str, str]
    access_key_id: str
    region: str
    signed_at: int
    expires_s: int


def verify_token(
    token: str, user: str, settings: TokenCheckSettings, resolver: CredentialResolver[K], now: float | None = None
) -> VerifiedToken[K]:
    """Accept ``token`` for ``user`` or raise AuthError naming the failed check."""
    now = time.time() if now is None else now
    parsed = parse_token(token)
    credentials = resolver.resolve(parsed.access_key_id, parsed.params.get("X-Amz-Security-Token", ""), now)
    if not hmac.compare_digest(_expected_signature(parsed, credentials), parsed.params["X-Amz-Signature"]):
        raise AuthError(BAD_SIGNATURE, "the signature does not match the request and the credentials")
    if now < parsed.signed_at - settings.clock_skew_s:
        raise AuthError(EXPIRED, "the token is not valid yet (X-Amz-Date is in the future)")
    expires_at = parsed.signed_at + parsed.expires_s
    if now >= expires_at:
        raise AuthError(EXPIRED, f"the token expired {int(now - expires_at)} s ago")
    if parsed.host != settings.host or parsed.port not in (settings.port, settings.local_port):
        local = f" (or :{settings.local_port} locally)" if settings.local_port else ""
        raise AuthError(
            WRONG_HOST, f"signed for {parsed.host}:{parsed.port}, this proxy is {settings.host}:{settings.port}{local}"
        )
    if parsed.region != settings.region:
        raise AuthError(WRONG_HOST, f"signed for region {parsed.region}, this proxy is in {settings.region}")
    if parsed.params["DBUser"] != user:
        raise AuthError(WRONG_USER, f"signed for DB user {parsed.params['DBUser']!r}, logging in as {user!r}")
    return VerifiedToken(parsed.params["DBUser"], credentials, parsed.signed_at, expires_at)


def parse_token(token: str) -> _Parsed:
    """Split a token into its parts; AuthError(MALFORMED) for anything botocore would not have produced."""
    if not isinstance(token, str) or not 0 < len(token) <= MAX_TOKEN_CHARS or not token.isascii():
        raise AuthError(MALFORMED, "not an RDS auth token (empty, too long or not ASCII)")
    if "://" in token or any(c.isspace() for c in token):
        raise AuthError(MALFORMED, "expected <host>:<port>/?Action=connect&..., without a scheme")
    try:
        url = urlsplit("https://" + token)
        host, port = url.hostname or "", url.port
        pairs = parse_qsl(url.query, keep_blank_values=True, strict_parsing=True)
    except ValueError as exc:
        raise AuthError(MALFORMED, f"not a URL: {exc}") from None
    if not host or port is None or url.path != "/" or url.fragment or url.username or url.password:
        raise AuthError(MALFORMED, "expected <host>:<port>/?<query>")
    params = dict(pairs)
    if len(params) != len(pairs):
        raise AuthError(MALFORMED, "a query parameter appears twice")
    missing = [name for name in _REQUIRED if name not in params]
    unknown = sorted(set(params) - _ALLOWED)
    if missing or unknown:
        raise AuthError(MALFORMED, f"missing parameters {missing}, unexpected parameters {unknown}")
    if params["Action"] != "connect" or not params["DBUser"]:
        raise AuthError(MALFORMED, "Action must be connect and DBUser must be set")
    if params["X-Amz-Algorithm"] != ALGORITHM or params["X-Amz-SignedHeaders"] != "host":
        raise AuthError(MALFORMED, f"expected X-Amz-Algorithm={ALGORITHM} and X-Amz-SignedHeaders=host")
    if not _SIGNATURE.match(params["X-Amz-Signature"]):
        raise AuthError(MALFORMED, "X-Amz-Signature must be 64 lower-case hex digits")
    scope = params["X-Amz-Credential"].split("/")
    if len(scope) != 5 or scope[3] != SERVICE or scope[4] != "aws4_request" or not scope[0] or not scope[2]:
        raise AuthError(MALFORMED, f"X-Amz-Credential must be <key>/<date>/<region>/{SERVICE}/aws4_request")
    try:
        signed = dt.datetime.strptime(params["X-Amz-Date"], _DATE).replace(tzinfo=dt.UTC)
    except ValueError:
        raise AuthError(MALFORMED, "X-Amz-Date must be YYYYMMDDTHHMMSSZ") from None
    if scope[1] != params["X-Amz-Date"][:8]:
        raise AuthError(MALFORMED, "the credential scope's date differs from X-Amz-Date")
    expires = params["X-Amz-Expires"]
    if not (expires.isdigit() and 1 <= int(expires) <= MAX_EXPIRES_S):
        raise AuthError(MALFORMED, f"X-Amz-Expires={expires!r}: allowed 1 to {MAX_EXPIRES_S} seconds")
    netloc = url.netloc
    return _Parsed(netloc, host, port, params, scope[0], scope[2], int(signed.timestamp()), int(expires))


def _expected_signature(parsed: _Parsed, credentials: SigningKey) -> str:
    """botocore's SigV4 query signature of the same request (all params but the signature, same date)."""
    signer = SigV4QueryAuth(
        Credentials(credentials.access_key_id, credentials.secret_access_key, credentials.session_token),
        SERVICE,
        parsed.region,
        expires=parsed.expires_s,
    )
    params = {k: v for k, v in parsed.params.items() if k != "X-Amz-Signature"}
    request = AWSRequest(method="GET", url=f"https://{parsed.netloc}/", params=params)
    request.context["timestamp"] = parsed.params["X-Amz-Date"]
    canonical = signer.canonical_request(request)
    return str(signer.signature(signer.string_to_sign(request, canonical), request))
