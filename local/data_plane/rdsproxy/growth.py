"""When the pool opens a new database connection rather than wait for a busy one to come back.

What RDS Proxy documents (Amazon RDS User Guide and API Reference; addresses in the stand-in's README):

- ``MaxConnectionsPercent`` is a ceiling, not a target: "The proxy doesn't create all of these connections in
  advance. This setting allows the proxy to establish these connections as the workload needs them"
  (*RDS Proxy connection considerations*); "The proxy opens back-end connections as needed, so the actual number
  of connections at any given time might be lower than the configured maximum" (*Configuration guidelines*).
- It protects the database from "new connections being created at a fast rate": it "queues or throttles
  application connections that can't be served immediately from the connection pool. Although latencies might
  increase, your application can continue to scale" (*Amazon RDS Proxy*).
- ``ConnectionBorrowTimeout`` "only applies when the proxy has opened its maximum number of connections and all
  connections are busy with client sessions" (*ConnectionPoolConfiguration*), and 0 means no limit.
- ``DatabaseConnectionsBorrowLatency`` (the time to get a pooled connection) is a metric to watch, not a promise
  of zero: waiting for a connection is part of how the proxy works.

AWS publishes no formula for "as the workload needs them". The stand-in takes the least greedy reading that keeps
every documented promise:

1. A borrow is served from an idle connection that fits.
2. If none fits and nothing is busy or opening, a connection is opened at once (nothing would come back).
3. Otherwise the borrow queues, first come first served: a connection running one short statement comes back in
   about a millisecond, far sooner than a new one is opened and logged in.
4. The pool grows by one connection when the head of the queue has waited ``patience`` (``pool_growth_patience``,
   20 ms by default, at most a quarter of the borrow timeout) without a connection coming back, one at a time and
   at most one per ``patience``: a bounded rate of new connections.
5. ...but not while the database is oversubscribed: when borrows hold their connections more than twice as long
   as the quickest recent ones, more connections only queue the same work inside the database (measured: 100
   clients calling a short procedure got as many calls per second from 3 connections as from 45, whose borrows
   each took 6 ms instead of 1), unless every busy connection is overdue (held four typical hold times, at least
   ``patience``: long queries, transactions held across client round trips, stalled clients), so nothing would
   come back soon anyway. This is how TCP Vegas and adaptive concurrency limits tell a full pipe from a slow one.
6. Never above the cap; at the cap a borrow waits up to ``connection_borrow_timeout``, then error 9501.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

#: Default seconds the head of the queue waits for a returning connection before the pool grows by one.
DEFAULT_PATIENCE_S = 0.020
#: Weight of a new hold time in the running mean; seconds over which the quickest-hold floor drifts up to the mean
#: (so a lasting change in the work, such as longer queries, is learnt, however many borrows a second there are).
HOLD_WEIGHT = 0.05
FLOOR_HORIZON_S = 10.0
#: The database counts as oversubscribed when the mean hold exceeds this many times the floor...
CONGESTION_RATIO = 2.0
#: ...and the floor by more than this (sub-millisecond differences are the event loop's noise).
NOISE_S = 0.0005
#: A busy connection is overdue after this many mean hold times (and at least ``patience``).
OVERDUE_HOLDS = 4.0


class GrowthPolicy:
    """The pool's growth rule, without I/O: fed hold times, asked whether to open now or grow for a waiting borrow."""

    __slots__ = ("cap", "patience", "hold_mean", "hold_floor", "_observed_at")

    def __init__(self, cap: int, borrow_timeout: float, patience: float = DEFAULT_PATIENCE_S) -> None:
        if cap < 1:
            raise ValueError(f"cap={cap}: must be at least 1")
        if not patience > 0:
            raise ValueError(f"patience={patience}: must be above 0")
        self.cap = cap
        #: Seconds before the pool grows for a waiting borrow; a quarter of the borrow timeout at most, so a borrow
        #: below the cap is never refused for want of growth.
        self.patience = patience if borrow_timeout <= 0 else min(patience, borrow_timeout / 4)
        #: Running mean of how long borrows keep their connection, and the floor of the quickest ones (None before
        #: the first connection came back).
        self.hold_mean: float | None = None
        self.hold_floor: float | None = None
        self._observed_at = 0.0

    def observe_hold(self, seconds: float, now: float) -> None:
        """A connection came back for reuse at ``now`` (the loop's clock) after ``seconds`` in a client's hands."""
        if not math.isfinite(seconds) or seconds < 0:
            return
        if self.hold_mean is None or self.hold_floor is None:
            self.hold_mean = self.hold_floor = seconds
            self._observed_at = now
            return
        self.hold_mean += HOLD_WEIGHT * (seconds - self.hold_mean)
        if seconds < self.hold_floor:
            self.hold_floor = seconds
        else:
            rise = min(1.0, max(0.0, now - self._observed_at) / FLOOR_HORIZON_S)
            self.hold_floor += rise * (self.hold_mean - self.hold_floor)
        self._observed_at = now

    @property
    def congested(self) -> bool:
        """Borrows hold their connections much longer than the quickest recent ones: the database is the queue."""
        mean, floor = self.hold_mean, self.hold_floor
        if mean is None or floor is None:
            return False
        return mean > CONGESTION_RATIO * floor and mean - floor > NOISE_S

    @property
    def overdue_after(self) -> float:
        """Seconds after which a busy connection is not expected back soon."""
        return max(self.patience, OVERDUE_HOLDS * (self.hold_mean or 0.0))

    def open_at_once(self, *, slots: int, idle: int) -> bool:
        """Open without queueing: below the cap, and no connection busy or opening (``slots`` = open + opening)."""
        return slots < self.cap and slots - idle <= 0

    def may_grow(self, *, slots: int, growing: bool, waited: float, busy_ages: Iterable[float] = ()) -> bool:
        """Open one more for the head of the queue, which has waited ``waited`` seconds, while the busy connections
        have been held ``busy_ages`` seconds."""
        if slots >= self.cap or growing or waited < self.patience:
            return False
        if not self.congested:
            return True
        overdue = self.overdue_after
        return all(age >= overdue for age in busy_ages)
