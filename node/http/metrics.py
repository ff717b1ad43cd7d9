"""GET /metrics: every metric of one node through prometheus-client, in its own registry.

Each node builds one CollectorRegistry (never the library's global one: tests run several nodes
in one process, and a global registry would mix them). It holds the process collectors and a
`NodeCollector`, which reads the counters the parts keep (the engine's EngineMetrics, the
service's creates, the store's status, the supervisor's task reports) at scrape time: nothing on
the hot paths knows about Prometheus but the engine's two histograms, which are the library's.

Names follow Prometheus' conventions: base units (seconds, bytes) in the name, `_total` on
counters. The Dapr scheduler's families appear under tock names (tock_jobs_created_total,
tock_jobs_triggered_total, tock_jobs_failed_total, tock_jobs_undelivered_total,
tock_trigger_latency_seconds). Per-app labels are capped: the first `APP_LABELS_MAX` apps by
(namespace, app) get labels of their own and the rest are summed under `OTHER_APP`, so the
number of series stays bounded whatever the number of apps.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from node.app_counter import OTHER_APP, AppCounter, AppKey
from node.engine.metrics import EngineMetrics, TriggerResult
from store.log import Role
from store.raft.store import RaftStatus
from store.shared_machine import SharedMachine
from store.supervision import TaskReport

METRICS_CONTENT_TYPE = CONTENT_TYPE_LATEST
APP_LABELS_MAX = 50
APP_LABELS = ("namespace", "app")
CREATED_FAMILY = ("tock_jobs_created", "Jobs this node created, overwrites included.")
# Dapr's scheduler families, under tock names: each counts triggers of one result, per app.
TRIGGER_FAMILIES = {
    TriggerResult.SUCCESS: ("tock_jobs_triggered", "Triggers the app answered with success."),
    TriggerResult.FAILED: ("tock_jobs_failed", "Trigger attempts that failed or timed out."),
    TriggerResult.SKIPPED: ("tock_jobs_skipped", "Occurrences skipped by a misfire policy."),
    TriggerResult.UNDELIVERED: (
        "tock_jobs_undelivered",
        "Triggers held back because their app had no URL and no watch stream.",
    ),
}


@dataclass(frozen=True)
class MetricsSources:
    """Where a node's metrics are read from at scrape time."""

    raft: Callable[[], RaftStatus]
    engine: EngineMetrics
    machine: SharedMachine
    tasks: Callable[[], list[TaskReport]]
    created: AppCounter


def node_registry(sources: MetricsSources) -> CollectorRegistry:
    """A registry of this node's metrics and of its process (CPU, memory, open files)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(NodeCollector(sources))
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    return registry


def render_metrics(registry: CollectorRegistry) -> bytes:
    """The registry in the Prometheus text exposition format."""
    return generate_latest(registry)


def capped_labels(apps: Iterable[AppKey], labels_max: int = APP_LABELS_MAX) -> dict[AppKey, AppKey]:
    """The label of each app: itself for the first `labels_max` by name, OTHER_APP after."""
    ordered = sorted(set(apps))
    return {app: app if k < labels_max else OTHER_APP for k, app in enumerate(ordered)}


class NodeCollector(Collector):
    def __init__(self, sources: MetricsSources) -> None:
        self._sources = sources

    def collect(self) -> Iterator[Metric]:
        sources = self._sources
        jobs, epoch = sources.machine.read(lambda m: (m.count(), m.epoch))
        yield _gauge("tock_jobs", "Jobs held by the cluster.", jobs)
        yield _gauge("tock_epoch", "Current membership epoch.", epoch)
        yield from self._per_app()
        yield from self._engine(sources.engine)
        yield from _raft(sources.raft())
        yield from _tasks(sources.tasks())

    def _per_app(self) -> Iterator[Metric]:
        engine, created = self._sources.engine, self._sources.created
        counts = {CREATED_FAMILY: created.by_app()}
        for result, family in TRIGGER_FAMILIES.items():
            counts[family] = engine.triggers[result].by_app()
        labels = capped_labels(app for by_app in counts.values() for app in by_app)
        for (name, documentation), by_app in counts.items():
            summed: dict[AppKey, int] = {}
            for app, n in by_app.items():
                label = labels[app]
                summed[label] = summed.get(label, 0) + n
            counter = CounterMetricFamily(name, documentation, labels=APP_LABELS)
            for label, n in sorted(summed.items()):
                counter.add_metric(label, n)
            yield counter

    @staticmethod
    def _engine(engine: EngineMetrics) -> Iterator[Metric]:
        yield from engine.latency.collect()
        yield from engine.delivery.collect()
        yield _gauge(
            "tock_deliveries_in_flight", "Deliveries running now.", engine.deliveries_in_flight
        )
        yield _gauge(
            "tock_jobs_in_flight",
            "Jobs fired whose outcome is not committed yet.",
            engine.jobs_in_flight,
        )
        yield _gauge(
            "tock_triggers_waiting_for_app",
            "Triggers waiting for their app to register a URL or open a watch stream.",
            engine.triggers_waiting_for_app,
        )
        yield _counter(
            "tock_ack_commands_proposed", "Ack commands proposed.", engine.ack_commands_proposed
        )
        yield _counter("tock_acks_proposed", "Trigger acks proposed.", engine.acks_proposed)
        yield _counter("tock_acks_ignored", "Trigger acks not applied.", engine.acks_ignored)
        yield _counter(
            "tock_acks_resent", "Acks proposed again in a newer epoch.", engine.acks_resent
        )
        yield _counter(
            "tock_acks_dropped",
            "Acks given up on: another node owns the job now, or no quorum.",
            engine.acks_dropped,
        )
        yield _counter(
            "tock_dead_letters_dropped",
            "Dead letters dropped to keep an app within its bound.",
            engine.dead_letters_dropped,
        )
        yield _counter(
            "tock_deliveries_abandoned",
            "Deliveries abandoned because this node's lease lapsed while they were in flight.",
            engine.deliveries_abandoned,
        )
        yield _counter(
            "tock_deliveries_spared",
            "Deliveries out on a watch stream when this node's lease lapsed, whose answers were "
            "awaited rather than dropped.",
            engine.deliveries_spared,
        )
        yield _counter(
            "tock_jobs_quarantined",
            "Jobs this node stopped because firing them raised an error.",
            engine.jobs_quarantined,
        )


def _raft(raft: RaftStatus) -> Iterator[Metric]:
    yield _gauge("tock_raft_term", "Raft term.", raft.term)
    yield _gauge("tock_raft_commit_index", "Raft commit index.", raft.commit_index)
    yield _gauge("tock_raft_applied_index", "Raft applied index.", raft.applied_index)
    yield _gauge("tock_raft_log_entries", "Entries in the Raft log.", raft.log_entries)
    yield _gauge("tock_raft_is_leader", "1 on the leader.", int(raft.role is Role.LEADER))
    yield _counter(
        "tock_raft_leader_changes", "Leader changes seen by this node.", raft.leader_changes
    )
    # Their rates' ratio is the mean batch size: commands per Raft entry.
    yield _counter(
        "tock_raft_entries_proposed", "Raft entries this node proposed.", raft.entries_proposed
    )
    yield _counter(
        "tock_raft_commands_proposed",
        "Commands this node proposed, batched into its Raft entries.",
        raft.commands_proposed,
    )
    yield _gauge(
        "tock_raft_entry_largest_bytes",
        "The largest Raft entry this node proposed.",
        raft.entry_bytes_largest,
    )
    yield _gauge("tock_raft_queued_commands", "Commands waiting for a batch.", raft.queued_commands)
    yield _gauge(
        "tock_raft_entries_in_flight",
        "Raft entries proposed and not applied yet.",
        raft.entries_in_flight,
    )
    yield _counter(
        "tock_raft_journal_syncs", "fsync calls on the Raft journal.", raft.transport.journal_syncs
    )
    yield _counter(
        "tock_raft_disk_failures",
        "Times the Raft journal could not be written (a full disk), each until it could again.",
        raft.transport.disk_failures,
    )
    yield _gauge(
        "tock_raft_disk_failing",
        "1 while the Raft journal cannot be written: the node acks nothing and stands still.",
        int(raft.disk_error is not None),
    )
    yield _counter(
        "tock_raft_leader_lost_campaigns",
        "Times this follower campaigned early because its connection to the leader closed.",
        raft.transport.leader_lost_campaigns,
    )
    yield _counter(
        "tock_raft_torn_tails_truncated",
        "Torn journal tails (a crash during a write) truncated at this node's start.",
        raft.transport.torn_tails_truncated,
    )


def _tasks(tasks: list[TaskReport]) -> Iterator[Metric]:
    restarts = CounterMetricFamily(
        "tock_task_restarts",
        "Crashes of a supervised task, each followed by a restart.",
        labels=("task",),
    )
    healthy = GaugeMetricFamily(
        "tock_task_healthy", "0 while a supervised task is crash looping, else 1.", labels=("task",)
    )
    for task in tasks:
        restarts.add_metric((task.name,), task.restarts)
        healthy.add_metric((task.name,), int(not task.crash_looping))
    yield restarts
    yield healthy


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def _counter(name: str, documentation: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, documentation, value=value)
