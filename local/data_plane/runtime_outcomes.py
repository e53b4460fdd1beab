"""What an invocation of the Lambda-like runtime (`local.data_plane.runtime`) can end in, and its counters.

Kept apart from the runtime so the HTTP API can map outcomes to API Gateway's statuses without the pool's code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class InvocationError(Exception):
    """An invocation that produced no function result; `payload` is Lambda's error document."""

    def __init__(self, payload: dict[str, Any]):
        super().__init__(payload.get("errorMessage", "invocation failed"))
        self.payload = payload

    @property
    def error_type(self) -> str:
        return str(self.payload.get("errorType", type(self).__name__))


class FunctionError(InvocationError):
    """The handler raised, or its init failed, or its result was not JSON (Lambda's 'Unhandled')."""


class FunctionTimeout(InvocationError):
    """The handler ran past the function timeout; the container was killed, as Lambda does."""


class ContainerCrashed(InvocationError):
    """The worker process died during the invocation (e.g. os._exit, segfault, OOM kill)."""


class Throttled(InvocationError):
    """All `max_concurrency` containers are busy (Lambda's 429 TooManyRequestsException)."""


@dataclass(frozen=True)
class RuntimeStats:
    containers_created: int
    cold_starts: int
    invocations: int
    errors: int
    throttles: int
    timeouts: int
    retired: int
    """Containers retired at `max_container_age_s`."""
    live_containers: int
    busy_containers: int
    peak_concurrency: int
    first_invocation_at: float | None = None
    """Wall-clock time the first invocation arrived."""
    last_cold_start_done_at: float | None = None
    """Wall-clock time the latest cold start (init + first invocation) finished: from then on every container is
    warm until a new one is needed."""
