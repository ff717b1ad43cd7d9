"""The trigger engine's counters, in the shape the admin API renders as Prometheus text.

Plain integers, written only on the event loop: a reader on the loop sees a consistent value
without a lock. The lateness histogram has fixed millisecond buckets, so observing a sample is a
bisect and an increment whatever the number of samples.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

from store.codec import Outcome

# Upper bounds (inclusive) of the lateness and delivery-time buckets, in ms; a last, unbounded
# bucket follows.
LATENESS_BUCKETS_MS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10_000, 60_000)
DELIVERY_BUCKETS_MS = LATENESS_BUCKETS_MS


class Histogram:
    """Counts of non-negative samples per bucket, plus their number and sum."""

    __slots__ = ("bounds", "count", "counts", "total")

    def __init__(self, bounds: tuple[int, ...]) -> None:
        assert bounds and list(bounds) == sorted(set(bounds)), "bounds must strictly increase"
        self.bounds = bounds
        # counts[i] holds samples in (bounds[i-1], bounds[i]]; the last one those above all.
        self.counts = [0] * (len(bounds) + 1)
        self.count = 0
        self.total = 0

    def observe(self, value: int) -> None:
        assert value >= 0, f"a negative sample: {value}"
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.count += 1
        self.total += value

    def cumulative(self) -> list[tuple[float, int]]:
        """(upper bound, samples at or below it) per bucket, ending at +inf: Prometheus' `le`."""
        running = 0
        rows: list[tuple[float, int]] = []
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += count
            rows.append((bound, running))
        assert running == self.count
        return rows


@dataclass
class EngineMetrics:
    # Attempts by outcome: SUCCESS and FAILED from deliveries, SKIPPED from misfire policies.
    triggers: dict[Outcome, int] = field(default_factory=lambda: dict.fromkeys(Outcome, 0))
    # Delivery start (wall ms) minus the time the attempt was due: never negative.
    lateness_ms: Histogram = field(default_factory=lambda: Histogram(LATENESS_BUCKETS_MS))
    # How long one delivery attempt took, answer or timeout included.
    delivery_ms: Histogram = field(default_factory=lambda: Histogram(DELIVERY_BUCKETS_MS))
    # HTTP deliveries running right now.
    deliveries_in_flight: int = 0
    # Jobs fired whose outcome is not yet committed (delivery plus ack): the back-pressure gauge.
    jobs_in_flight: int = 0
    # Triggers waiting for their app to register a URL.
    triggers_waiting_for_app: int = 0
    ack_commands_proposed: int = 0
    acks_proposed: int = 0
    # Ack entries the machine did not apply (an older occurrence, a former owner, ...).
    acks_ignored: int = 0
    # Acks re-sent with a newer epoch after a STALE answer (the delivery happened).
    acks_resent: int = 0
    # Acks given up on: the epoch moved on and another node owns the job now, or no quorum.
    acks_dropped: int = 0
    # Jobs this node stopped because computing, encoding or delivering them raised (Job.error).
    jobs_quarantined: int = 0
    # Dead letters the cluster dropped to keep an app within its bound, seen in this node's log.
    dead_letters_dropped: int = 0
