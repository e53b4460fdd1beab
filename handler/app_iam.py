"""RDS IAM authentication tokens, signed locally with the function's role credentials.

boto3 is imported on first use only: it costs ~150 ms of cold start, and password mode never needs it.
The Lambda Python runtime ships boto3, so the deployment zip does not bundle it.
"""

from __future__ import annotations

from typing import Any


class IamTokenProvider:
    """Creates a fresh 15-minute token per new connection (tokens are only checked at login)."""

    def __init__(self, host: str, port: int, user: str, region: str) -> None:
        self._host, self._port, self._user, self._region = host, port, user, region
        self._client: Any = None

    def __call__(self) -> str:
        if self._client is None:
            import boto3  # noqa: PLC0415 - deliberately lazy, see module docstring

            self._client = boto3.client("rds", region_name=self._region)
        return str(
            self._client.generate_db_auth_token(
                DBHostname=self._host, Port=self._port, DBUsername=self._user, Region=self._region
            )
        )
