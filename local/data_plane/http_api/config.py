"""Settings of the local HTTP API, bounded by API Gateway HTTP API's own quotas.

Quotas (https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-quotas.html): payload 10 MB,
request line plus header values 10240 bytes, integration timeout at most 30 s. None of these can be raised
on AWS, so the local endpoint refuses anything above them too.
"""

from __future__ import annotations

from dataclasses import dataclass

from local.data_plane.http_api.throttle import check_limits

MAX_PAYLOAD_BYTES = 10 * 1024 * 1024
MAX_HEADER_BYTES = 10240
MAX_INTEGRATION_TIMEOUT_S = 30.0
INTEGRATION_TIMEOUT_MARGIN_S = 1.0
"""Above the function timeout, so a function that times out is Lambda's error (502), as on AWS."""
MAX_INVOCATIONS = 1000  # Lambda's default account concurrency
DEFAULT_INVOCATIONS = 100
MAX_CLIENT_TIMEOUT_S = 300.0


def integration_timeout_for(function_timeout_s: float) -> float:
    """API Gateway waits for the function, but never longer than its 30 s maximum."""
    return min(MAX_INTEGRATION_TIMEOUT_S, function_timeout_s + INTEGRATION_TIMEOUT_MARGIN_S)


@dataclass(frozen=True)
class HttpApiConfig:
    """Where to listen, which routes exist and the limits; `route_keys` use API Gateway's syntax ("$default",
    "GET /", "ANY /x").

    `integration_timeout_s` and `max_invocations` left at None come from the runtime when `HttpApi` is given a
    `LambdaRuntime.invoke` (function timeout + 1 s capped at 30 s; its container limit), else 30 s and 100.
    """

    host: str = "127.0.0.1"
    port: int = 0
    route_keys: tuple[str, ...] = ("$default",)
    stage: str = "$default"
    api_id: str = "local"
    max_body_bytes: int = MAX_PAYLOAD_BYTES
    max_header_bytes: int = MAX_HEADER_BYTES
    header_timeout_s: float = 20.0
    """A connection must complete each request's headers within this (and is closed after this long idle)."""
    body_timeout_s: float = 30.0
    """A request's body must arrive within this after its headers, else 408 and no invocation."""
    integration_timeout_s: float | None = None
    max_invocations: int | None = None
    throttling_rate_limit: float | None = None
    """Requests per second the ``$default`` stage admits (the token bucket's refill); None: no throttling."""
    throttling_burst_limit: int | None = None
    """The token bucket's size: requests admitted at once from a full bucket; None: no throttling."""

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port={self.port}: must be in 0..65535 (0 picks a free port)")
        if not self.route_keys:
            raise ValueError("route_keys=(): need at least one route")
        for key in self.route_keys:
            if key != "$default" and len(key.split(" ")) != 2:
                raise ValueError(f"route_keys entry {key!r}: expected '$default' or 'METHOD /path'")
        if not 0 < self.max_body_bytes <= MAX_PAYLOAD_BYTES:
            raise ValueError(f"max_body_bytes={self.max_body_bytes}: must be in 1..{MAX_PAYLOAD_BYTES}")
        if not 1024 <= self.max_header_bytes <= MAX_HEADER_BYTES:
            raise ValueError(f"max_header_bytes={self.max_header_bytes}: must be in 1024..{MAX_HEADER_BYTES}")
        for name in ("header_timeout_s", "body_timeout_s"):
            value = getattr(self, name)
            if not 0 < value <= MAX_CLIENT_TIMEOUT_S:
                raise ValueError(f"{name}={value}: must be in (0, {MAX_CLIENT_TIMEOUT_S}]")
        timeout = self.integration_timeout_s
        if timeout is not None and not 0 < timeout <= MAX_INTEGRATION_TIMEOUT_S:
            raise ValueError(
                f"integration_timeout_s={timeout}: must be in (0, {MAX_INTEGRATION_TIMEOUT_S}] (API Gateway's maximum)"
            )
        if self.max_invocations is not None and not 1 <= self.max_invocations <= MAX_INVOCATIONS:
            raise ValueError(f"max_invocations={self.max_invocations}: must be in 1..{MAX_INVOCATIONS}")
        if (self.throttling_rate_limit is None) != (self.throttling_burst_limit is None):
            raise ValueError(
                f"throttling_rate_limit={self.throttling_rate_limit} and throttling_burst_limit="
                f"{self.throttling_burst_limit}: set both (a token bucket) or neither"
            )
        if self.throttled:
            check_limits(self.throttling_rate_limit, self.throttling_burst_limit)

    @property
    def throttled(self) -> bool:
        return self.throttling_rate_limit is not None
