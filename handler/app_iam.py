"""RDS IAM authentication tokens, signed locally with the function's role credentials.

boto3 is imported on first use only: it costs ~150 ms of cold start, and password mode never needs it.
The Lambda Python runtime ships boto3, so the deployment zip does not bundle it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class IamTokenProvider:
    """Creates a fresh 15-minute token per new connection (tokens are only checked at login)."""

    def __init__(self, host: str, port: int, user: str, region: str) -> None:
        self._host, self._port, self._user, self._region = host, port, user, region
        self._client: Any = None

    def __call__(self) -> str:
        if self._client is None:
            import boto3

            self._client = boto3.client("rds", region_name=self._region)
        return str(
            self._client.generate_db_auth_token(
                DBHostname=self._host, Port=self._port, DBUsername=self._user, Region=self._region
            )
        )


def password_provider_for(settings: Any) -> Callable[[], str]:
    """What to send as the password: a fresh IAM token (``DB_AUTH=iam``) or the configured password."""
    if settings.auth == "iam":
        assert settings.region is not None  # guaranteed by Settings validation
        return IamTokenProvider(settings.host, settings.port, settings.user, settings.region)
    password = settings.password or ""
    return lambda: password
