"""The trigger engine's counters: what node/http/metrics.py exports and GET /admin/stats shows.

Plain integers, written only on the event loop: a reader on the loop sees a consistent value
without a lock. Triggers are counted per app and result (node/app_counter.py bounds the apps).
The two time histograms are prometheus-client's own, created outside any registry (the node's
collector yields them); observing a sample costs under a microsecond.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from prometheus_client import Histogram

from node.app_counter import AppCounter
from store.codec import Outcome

# Upper bounds of the lateness and delivery-time buckets, in seconds; prometheus-client adds
# the last, unbounded bucket.
TIME_BUCKETS_S = (0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0)


class TriggerResult(StrEnum):
    """What became of one trigger, as the metrics count it: an attempt's outcome (success,
    failure, skipped by a misfire policy), or undelivered because nobody could be asked."""

    SUCCESS = "success"
    FAILED = "failed"
    SKIPPED = "skipped"
    UNDELIVERED = "undelivered"


RESULT_OF_OUTCOME = {
    Outcome.SUCCESS: TriggerResult.SUCCESS,
    Outcome.FAILED: TriggerResult.FAILED,
    Outcome.SKIPPED: TriggerResult.SKIPPED,
}


def time_histogram(name: str, documentation: str) -> Histogram:
    """A histogram of durations in seconds, registered nowhere: its owner's collector yields it."""
    return Histogram(name, documentation, buckets=TIME_BUCKETS_S, registry=None)


@dataclass
class EngineMetrics:
    # Triggers per app, by what became of them.
    triggers: dict[TriggerResult, AppCounter] = field(
        default_factory=lambda: {result: AppCounter() for result in TriggerResult}
    )
    # Delivery start minus the time the attempt was due, in seconds: never negative. Dapr's
    # scheduler calls this its trigger latency.
    latency: Histogram = field(
        default_factory=lambda: time_histogram(
            "tock_trigger_latency_seconds", "Delivery start minus the time the attempt was due."
        )
    )
    # How long one delivery attempt took, answer or timeout included.
    delivery: Histogram = field(
        default_factory=lambda: time_histogram(
            "tock_delivery_duration_seconds",
            "Duration of one delivery attempt, answer or timeout included.",
        )
    )
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
    # Deliveries dropped because the lease lapsed while they were in flight (fencing).
    deliveries_abandoned: int = 0
    # Deliveries whose trigger was out on a watch stream when the lease lapsed: their answers
    # were awaited rather than dropped (node/delivery/sending.py).
    deliveries_spared: int = 0
    # Jobs this node stopped because computing, encoding or delivering them raised (Job.error).
    jobs_quarantined: int = 0
    # Dead letters the cluster dropped to keep an app within its bound, seen in this node's log.
    dead_letters_dropped: int = 0

    def count(self, namespace: str, app: str, result: TriggerResult, n: int = 1) -> None:
        """Count `n` triggers of an app that ended as `result`."""
        self.triggers[result].count(namespace, app, n)
