"""Prometheus text for GET /metrics: jobs, triggers by outcome, lateness, delivery time, Raft,
and the restarts and health of every supervised task.

Rendered on demand from the counters the parts keep (the engine's EngineMetrics, the store's
status); nothing here keeps state of its own, so a scrape costs one pass over a few dozen numbers.
"""

from __future__ import annotations

from node.engine.metrics import EngineMetrics, Histogram
from store.log import LogStatus, Role
from store.shared_machine import SharedMachine
from store.supervision import TaskReport


def render_metrics(
    raft: LogStatus,
    engine: EngineMetrics,
    machine: SharedMachine,
    tasks: list[TaskReport],
) -> str:
    jobs, epoch = machine.read(lambda m: (m.count(), m.epoch))
    lines: list[str] = []
    _gauge(lines, "tock_jobs", "Jobs held by the cluster.", jobs)
    _gauge(lines, "tock_epoch", "Current membership epoch.", epoch)
    lines += [
        "# HELP tock_triggers_total Trigger attempts by outcome.",
        "# TYPE tock_triggers_total counter",
    ]
    for outcome, count in sorted(engine.triggers.items()):
        lines.append(f'tock_triggers_total{{outcome="{outcome.name.lower()}"}} {count}')
    _histogram(
        lines,
        "tock_trigger_lateness_ms",
        "Delivery start minus scheduled time, in ms.",
        engine.lateness_ms,
    )
    _histogram(
        lines, "tock_delivery_ms", "Duration of one delivery attempt, in ms.", engine.delivery_ms
    )
    _gauge(
        lines, "tock_deliveries_in_flight", "Deliveries running now.", engine.deliveries_in_flight
    )
    _counter(lines, "tock_acks_proposed_total", "Trigger acks proposed.", engine.acks_proposed)
    _counter(lines, "tock_acks_ignored_total", "Trigger acks not applied.", engine.acks_ignored)
    _counter(
        lines,
        "tock_jobs_quarantined_total",
        "Jobs this node stopped because firing them raised an error.",
        engine.jobs_quarantined,
    )
    _counter(
        lines,
        "tock_dead_letters_dropped_total",
        "Dead letters dropped to keep an app within its bound.",
        engine.dead_letters_dropped,
    )
    _gauge(lines, "tock_raft_term", "Raft term.", raft.term)
    _gauge(lines, "tock_raft_commit_index", "Raft commit index.", raft.commit_index)
    _gauge(lines, "tock_raft_applied_index", "Raft applied index.", raft.applied_index)
    _gauge(lines, "tock_raft_log_entries", "Entries in the Raft log.", raft.log_entries)
    _gauge(lines, "tock_raft_is_leader", "1 on the leader.", int(raft.role is Role.LEADER))
    _counter(
        lines,
        "tock_raft_leader_changes_total",
        "Leader changes seen by this node.",
        raft.leader_changes,
    )
    lines += [
        "# HELP tock_task_restarts_total Crashes of a supervised task, each followed by a restart.",
        "# TYPE tock_task_restarts_total counter",
        *(f'tock_task_restarts_total{{task="{t.name}"}} {t.restarts}' for t in tasks),
        "# HELP tock_task_healthy 0 while a supervised task is crash looping, else 1.",
        "# TYPE tock_task_healthy gauge",
        *(f'tock_task_healthy{{task="{t.name}"}} {int(not t.crash_looping)}' for t in tasks),
    ]
    return "\n".join(lines) + "\n"


def _gauge(lines: list[str], name: str, help_text: str, value: int) -> None:
    lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge", f"{name} {value}"]


def _counter(lines: list[str], name: str, help_text: str, value: int) -> None:
    lines += [f"# HELP {name} {help_text}", f"# TYPE {name} counter", f"{name} {value}"]


def _histogram(lines: list[str], name: str, help_text: str, histogram: Histogram) -> None:
    lines += [f"# HELP {name} {help_text}", f"# TYPE {name} histogram"]
    for bound, count in histogram.cumulative():
        le = "+Inf" if bound == float("inf") else str(int(bound))
        lines.append(f'{name}_bucket{{le="{le}"}} {count}')
    lines += [f"{name}_sum {histogram.total}", f"{name}_count {histogram.count}"]
