"""API Gateway's throttling: a token bucket per stage, checked before the integration is called.

https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-throttling.html: "API Gateway throttles
requests to your API using the token bucket algorithm, where a token counts for a request"; the burst limit is
the bucket size and the rate limit its refill per second. A request that finds the bucket empty gets 429
``{"message":"Too Many Requests"}`` and the function is not invoked. The bucket starts full.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


def check_limits(rate_per_s: object, burst: object) -> None:
    """Raise ValueError naming the setting and its allowed range (API Gateway accepts 0, which refuses all)."""
    if isinstance(rate_per_s, bool) or not isinstance(rate_per_s, (int, float)) or not 0 <= rate_per_s < float("inf"):
        raise ValueError(f"invalid setting throttling_rate_limit={rate_per_s!r}: allowed a number >= 0")
    if isinstance(burst, bool) or not isinstance(burst, int) or burst < 0:
        raise ValueError(f"invalid setting throttling_burst_limit={burst!r}: allowed an integer >= 0")


class TokenBucket:
    """Thread-safe: requests are admitted from the server's event loop and from direct `HttpApi.handle` calls."""

    def __init__(self, rate_per_s: float, burst: int, clock: Callable[[], float] = time.monotonic):
        check_limits(rate_per_s, burst)
        self.rate_per_s = float(rate_per_s)
        self.burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._updated = clock()
        self._lock = threading.Lock()
        self.throttled = 0
        """Requests refused so far."""

    def take(self) -> bool:
        """Admit one request (True) or refuse it (False) without waiting."""
        with self._lock:
            now = self._clock()
            self._tokens = min(float(self.burst), self._tokens + (now - self._updated) * self.rate_per_s)
            self._updated = now
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return True
            self.throttled += 1
            return False
