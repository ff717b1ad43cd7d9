"""The trigger engine end to end on real parts: a single-node Raft store, HTTP sinks, real time.

Every scenario uses jobs of its own names, on one store and engine shared by the module (a Raft
node takes a second to elect itself). Schedules are short (1 s); "exactly N calls" is checked
once the job is gone from the machine, after which no further trigger can exist.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from itertools import pairwise
from pathlib import Path

import pytest

from cluster.ring import Ring
from node.engine.acks import AckBatcher, AckConfig, AckVerdict, PendingAck
from node.engine.engine import EngineConfig
from node.engine.metrics import EngineMetrics, TriggerResult
from node.engine.misfire import skipped_occurrences
from store.clock import SystemClock
from store.codec import AckEntry, DeletePrefix, Outcome, Put, RegisterApp, SetMembers
from store.failure_policy import FAILURE_POLICY_DROP
from store.jobs import Job, JobSpec, MisfirePolicy
from store.log import Applied, Restored
from store.machine import JobMachine
from store.partition import PARTITIONS_DEFAULT
from store.raft.config import RaftConfig
from store.raft.store import RaftStore
from store.schedule import format_rfc3339_ms
from store.shared_machine import SharedMachine
from tests.support.cluster_secret import TEST_CLUSTER_SECRET
from tests.support.metrics import histogram_count_and_sum
from tests.support.sink import Call, Sink
from tests.unit.node.engine_harness import NAMESPACE, NODE, PARTITIONS, SLOW_S, Harness

IN_FLIGHT_MAX = 4
# How long a settled ack may take to reach the engine's holds once the machine shows it.
SETTLE_S = 5.0
# Wide enough for a loaded machine's scheduling delays, below the 500 ms the misfire tests use.
GRACE_MS = 300

# Per job name: the HTTP status for its n-th call (1-based); 200 when absent (conftest.py).
SCRIPTS: dict[str, Callable[[int], int]] = {}


@pytest.fixture(scope="module")
def harness(
    tmp_path_factory: pytest.TempPathFactory, sink: Sink, slow_sink: Sink
) -> Iterator[Harness]:
    config = EngineConfig(deliveries_in_flight_max=IN_FLIGHT_MAX, misfire_grace_ms=GRACE_MS)
    node = Harness(tmp_path_factory.mktemp("engine"), config).start()
    node.register("app", sink.url)
    node.register("slow", slow_sink.url)
    yield node
    node.close()


def scheduled_ms(call: Call) -> int:
    return int(datetime.fromisoformat(call.headers["tock-scheduled-time"]).timestamp() * 1000)


def assert_never_early(calls: list[Call]) -> None:
    for call in calls:
        assert call.received_ms >= scheduled_ms(call), call.headers


def test_every_second_with_three_repeats_fires_exactly_three_times_never_early(
    harness: Harness, sink: Sink
) -> None:
    job = harness.put("every", schedule="@every 1s", repeats=3)
    harness.wait_gone("every")
    calls = sink.calls_for("every")
    assert len(calls) == 3
    assert_never_early(calls)
    times = [scheduled_ms(call) for call in calls]
    assert times == [job.next_ms, job.next_ms + 1000, job.next_ms + 2000]
    assert [call.headers["tock-attempt"] for call in calls] == ["1", "1", "1"]
    assert [call.headers["tock-trigger-id"] for call in calls] == [f"{t}:{job.uid}" for t in times]
    assert calls[0].body == b'{"job":"every"}'
    assert calls[0].headers["dapr-app-id"] == "app"
    assert calls[0].headers["dapr-namespace"] == NAMESPACE


def test_a_due_time_job_fires_once_then_is_deleted(harness: Harness, sink: Sink) -> None:
    job = harness.put("once", due_time="1s")
    harness.wait_gone("once")
    (call,) = sink.calls_for("once")
    assert scheduled_ms(call) == job.next_ms <= call.received_ms


def test_failure_policies_retry_through_the_machine(harness: Harness, sink: Sink) -> None:
    SCRIPTS["broken"] = lambda n: 500
    SCRIPTS["dropped"] = lambda n: 500
    SCRIPTS["flaky"] = lambda n: 500 if n <= 2 else 200
    SCRIPTS["missing"] = lambda n: 404
    harness.put("broken", due_time="500ms")
    harness.put("dropped", due_time="500ms", failure_policy=FAILURE_POLICY_DROP)
    harness.put("flaky", due_time="500ms")
    harness.put("missing", due_time="500ms")
    for name in ("broken", "dropped", "flaky", "missing"):
        harness.wait_gone(name)
    broken = sink.calls_for("broken")
    # The default policy: constant 1 s, 3 retries; every attempt of one occurrence, one id.
    assert [call.headers["tock-attempt"] for call in broken] == ["1", "2", "3", "4"]
    assert len({call.headers["tock-trigger-id"] for call in broken}) == 1
    gaps = [later.received_ms - earlier.received_ms for earlier, later in pairwise(broken)]
    assert all(1000 <= gap < 2500 for gap in gaps), gaps
    assert len(sink.calls_for("dropped")) == 1
    assert len(sink.calls_for("flaky")) == 3
    assert len(sink.calls_for("missing")) == 1


def test_a_trigger_waits_for_its_app_to_register(harness: Harness, sink: Sink) -> None:
    harness.put("patient", app="late", due_time="200ms")
    assert sink.wait_for("patient", 1, timeout_s=1.0) == []
    assert harness.engine.metrics.triggers_waiting_for_app == 1
    job = harness.job("patient", app="late")
    assert job is not None and job.trigger_count == 0 and job.attempts == 0
    harness.register("late", sink.url)
    harness.wait_gone("patient", app="late")
    (call,) = sink.calls_for("patient")
    assert call.headers["dapr-app-id"] == "late"
    assert harness.engine.metrics.triggers_waiting_for_app == 0


def test_a_job_deleted_before_it_is_due_never_fires(harness: Harness, sink: Sink) -> None:
    harness.put("doomed", due_time="500ms")
    harness.delete("doomed")
    assert sink.wait_for("doomed", 1, timeout_s=1.2) == []


def test_overwrite_resets_the_job_and_its_count(harness: Harness, sink: Sink) -> None:
    first = harness.put("rewritten", schedule="@every 1s", repeats=2)
    sink.wait_for("rewritten", 1, timeout_s=3)
    second = harness.put("rewritten", schedule="@every 1s", repeats=2, overwrite=True)
    harness.wait_gone("rewritten")
    calls = sink.calls_for("rewritten")
    uids = [call.headers["tock-trigger-id"].split(":")[1] for call in calls]
    # One call of the first version, then the full count of the second.
    assert uids == [first.uid, second.uid, second.uid]
    assert_never_early(calls)


def test_without_a_lease_nothing_fires_until_it_is_back(harness: Harness, sink: Sink) -> None:
    harness.lease_held = False
    try:
        job = harness.put("leased", due_time="200ms")
        assert sink.wait_for("leased", 1, timeout_s=1.0) == []
    finally:
        harness.lease_held = True
    (call,) = sink.wait_for("leased", 1, timeout_s=3)
    assert scheduled_ms(call) == job.next_ms


def deliver_slowly(harness: Harness, slow_sink: Sink, name: str) -> int:
    """Put a job of the slow app due at once; return, with its delivery in flight (the app has
    it and answers SLOW_S later), the count of deliveries abandoned so far."""
    abandoned = harness.engine.metrics.deliveries_abandoned
    harness.put(name, app="slow", due_time="200ms")
    assert len(slow_sink.wait_for(name, 1, timeout_s=5)) == 1
    return abandoned


def test_a_clock_not_trusted_fires_nothing_new_and_lets_deliveries_in_flight_finish(
    harness: Harness, sink: Sink, slow_sink: Sink
) -> None:
    # A clock read beyond the bound (a busy node's heartbeats apply late and read as an offset
    # for a moment) keeps the lease: abandoning the delivery in flight would only make it go
    # out again.
    abandoned = deliver_slowly(harness, slow_sink, "in-flight")
    harness.clock_trusted = False
    try:
        harness.put("held-back", due_time="100ms")
        harness.wait_gone("in-flight", app="slow")
        assert sink.wait_for("held-back", 1, timeout_s=1.0) == []
    finally:
        harness.clock_trusted = True
    assert len(sink.wait_for("held-back", 1, timeout_s=5)) == 1
    assert len(slow_sink.calls_for("in-flight")) == 1
    assert harness.engine.metrics.deliveries_abandoned == abandoned


def test_a_lease_lapse_abandons_the_deliveries_in_flight(harness: Harness, slow_sink: Sink) -> None:
    # Without its lease another node may fire the partition: nothing of this node's attempt may
    # reach the app later, and its answer is not waited for. The occurrence goes out again.
    abandoned = deliver_slowly(harness, slow_sink, "fenced")
    harness.lease_held = False
    try:
        deadline = time.monotonic() + 5
        while harness.engine.metrics.deliveries_abandoned == abandoned:
            assert time.monotonic() < deadline, "the delivery in flight was not abandoned"
            time.sleep(0.02)
        job = harness.job("fenced", app="slow")
        assert job is not None and job.trigger_count == 0
    finally:
        harness.lease_held = True
    harness.wait_gone("fenced", app="slow")
    assert len(slow_sink.calls_for("fenced")) == 2


def test_misfire_all_replays_every_missed_occurrence_oldest_first(
    harness: Harness, sink: Sink
) -> None:
    past_ms = harness.clock.wall_ms() - 10_500
    harness.put("replay", schedule="@every 1s", due_time=format_rfc3339_ms(past_ms), repeats=5)
    harness.wait_gone("replay", timeout_s=5)
    calls = sink.calls_for("replay")
    assert [scheduled_ms(call) for call in calls] == [past_ms + 1000 * k for k in range(5)]
    assert_never_early(calls)


def test_missed_occurrences_go_out_one_at_a_time(harness: Harness, slow_sink: Sink) -> None:
    """One trigger per job in flight: the next replayed occurrence waits for the previous
    one's answer (SLOW_S) and its ack."""
    past_ms = harness.clock.wall_ms() - 10_500
    harness.put(
        "one-by-one",
        app="slow",
        schedule="@every 1s",
        due_time=format_rfc3339_ms(past_ms),
        repeats=3,
    )
    harness.wait_gone("one-by-one", app="slow")
    calls = slow_sink.calls_for("one-by-one")
    assert [scheduled_ms(call) for call in calls] == [past_ms + 1000 * k for k in range(3)]
    gaps = [later.received_ms - earlier.received_ms for earlier, later in pairwise(calls)]
    assert all(gap >= SLOW_S * 1000 for gap in gaps), gaps


def test_misfire_latest_delivers_only_the_most_recent_missed_occurrence(
    harness: Harness, sink: Sink
) -> None:
    put_ms = harness.clock.wall_ms()
    past_ms = put_ms - 10_500
    skipped_before = harness.engine.metrics.triggers[TriggerResult.SKIPPED].total()
    harness.put(
        "latest",
        schedule="@every 1s",
        due_time=format_rfc3339_ms(past_ms),
        repeats=3,
        misfire_policy=MisfirePolicy.LATEST,
    )
    harness.wait_gone("latest")
    times = [scheduled_ms(call) for call in sink.calls_for("latest")]
    # Occurrences at -10.5 s .. -1.5 s are skipped; -0.5 s goes out late; then on schedule.
    assert times == [put_ms - 500, put_ms + 500, put_ms + 1500]
    assert harness.engine.metrics.triggers[TriggerResult.SKIPPED].total() - skipped_before == 10


def test_misfire_skip_delivers_from_the_next_future_occurrence(
    harness: Harness, sink: Sink
) -> None:
    put_ms = harness.clock.wall_ms()
    harness.put(
        "skipper",
        schedule="@every 1s",
        due_time=format_rfc3339_ms(put_ms - 10_500),
        repeats=2,
        misfire_policy=MisfirePolicy.SKIP,
    )
    harness.wait_gone("skipper")
    times = [scheduled_ms(call) for call in sink.calls_for("skipper")]
    assert times == [put_ms + 500, put_ms + 1500]


def test_deliveries_in_flight_are_bounded(harness: Harness, slow_sink: Sink) -> None:
    # Twice the bound, all due at one instant well after the last put: the app sees exactly
    # the bound at once (so the bound was reached), never more, and every job still fires once.
    names = [f"crowd-{k}" for k in range(2 * IN_FLIGHT_MAX)]
    slow_sink.in_flight_max = 0
    due = format_rfc3339_ms(harness.clock.wall_ms() + 2000)
    for name in names:
        harness.put(name, app="slow", due_time=due)
    for name in names:
        harness.wait_gone(name, app="slow")
    assert slow_sink.in_flight_max == IN_FLIGHT_MAX
    # The slow app is shared by the module's tests: count this test's jobs only.
    crowd = sorted(call.name for call in slow_sink.calls if call.name.startswith("crowd-"))
    assert crowd == sorted(names)
    # The machine drops a job when its last ack applies, on the tick thread; the engine ends
    # its hold when the ack's result reaches the loop, a moment later.
    deadline = time.monotonic() + SETTLE_S
    while harness.engine.metrics.jobs_in_flight and time.monotonic() < deadline:
        time.sleep(0.01)
    assert harness.engine.metrics.jobs_in_flight == 0


def test_an_ack_made_stale_by_a_new_epoch_is_resent_while_the_node_still_owns_the_job(
    harness: Harness, slow_sink: Sink
) -> None:
    resent_before = harness.engine.metrics.acks_resent
    harness.put("stale", app="slow", due_time="200ms")
    assert len(slow_sink.wait_for("stale", 1, timeout_s=3)) == 1
    # The delivery is in flight (the sink answers in SLOW_S): move the epoch on under it.
    harness.set_live((NODE,))
    harness.wait_gone("stale", app="slow")
    assert len(slow_sink.calls_for("stale")) == 1
    assert harness.engine.metrics.acks_resent - resent_before == 1


def test_a_node_without_partitions_fires_nothing_and_resumes_when_it_gets_them_back(
    harness: Harness, slow_sink: Sink, sink: Sink
) -> None:
    in_flight = harness.put("orphan", app="slow", due_time="200ms")
    assert len(slow_sink.wait_for("orphan", 1, timeout_s=3)) == 1
    harness.set_live(("n2",))
    try:
        assert harness.engine.owned_partitions == frozenset()
        harness.put("unowned", due_time="200ms")
        assert sink.wait_for("unowned", 1, timeout_s=1.0) == []
        assert harness.engine.timers == 0
        # The delivery in flight when the partition moved still counts: the machine takes the
        # previous owner's ack (stamped with the epoch it fired in), so nobody delivers it again.
        harness.wait_gone("orphan", app="slow")
    finally:
        harness.set_live((NODE,))
    harness.wait_gone("unowned")
    assert len(sink.calls_for("unowned")) == 1
    ids = [call.headers["tock-trigger-id"] for call in slow_sink.calls_for("orphan")]
    assert ids == [in_flight.trigger_id]


def test_acks_are_batched_and_stale_epochs_are_refused(harness: Harness) -> None:
    verdicts: list[tuple[int, AckVerdict]] = []
    metrics = EngineMetrics()

    async def scenario() -> None:
        batcher = AckBatcher(
            node_id=NODE,
            propose=harness.store.propose,
            clock=harness.clock,
            config=AckConfig(acks_per_command_max=4),
            settle=lambda pendings, verdict: verdicts.append((len(pendings), verdict)),
            metrics=metrics,
        )
        epoch = harness.machine.read(lambda m: m.epoch)
        for k in range(10):
            entry = AckEntry(f"no-such-uid-{k}", 1, Outcome.SUCCESS)
            batcher.add(PendingAck(("default", "app", f"ghost-{k}"), epoch, (entry,)))
        batcher.add(PendingAck(("default", "app", "old"), epoch - 1, (entry,)))
        await batcher.drain(10)

    harness.run(scenario())
    assert sorted(verdicts) == [
        (1, AckVerdict.STALE),
        (2, AckVerdict.COMMITTED),
        (4, AckVerdict.COMMITTED),
        (4, AckVerdict.COMMITTED),
    ]
    assert (metrics.ack_commands_proposed, metrics.acks_proposed) == (4, 11)
    # Acks for uids the machine does not hold are late echoes: ignored, not errors.
    assert metrics.acks_ignored == 10


def test_an_ack_that_cannot_be_proposed_is_reported_unavailable(tmp_path: Path) -> None:
    """A store that is not running refuses the proposal outright: certainly not applied."""
    machine = SharedMachine(JobMachine(PARTITIONS_DEFAULT, Ring))
    config = RaftConfig(
        self_address="127.0.0.1:1", peer_addresses=(), data_dir=tmp_path, secret=TEST_CLUSTER_SECRET
    )
    store = RaftStore(config, machine)
    verdicts: list[AckVerdict] = []

    async def scenario() -> None:
        batcher = AckBatcher(
            node_id=NODE,
            propose=store.propose,
            clock=SystemClock(),
            config=AckConfig(),
            settle=lambda pendings, verdict: verdicts.append(verdict),
            metrics=EngineMetrics(),
        )
        entry = AckEntry("uid", 1, Outcome.FAILED)
        batcher.add(PendingAck(("default", "app", "job"), 1, (entry,)))
        await batcher.drain(5)

    asyncio.run(scenario())
    assert verdicts == [AckVerdict.UNAVAILABLE]


def test_stop_waits_for_the_delivery_in_flight_and_commits_its_ack(
    tmp_path: Path, slow_sink: Sink
) -> None:
    node = Harness(tmp_path, EngineConfig()).start()
    try:
        node.register("slow", slow_sink.url)
        node.put("last", app="slow", due_time="100ms")
        assert len(slow_sink.wait_for("last", 1, timeout_s=3)) == 1
        node.stop_engine()
        assert node.job("last", app="slow") is None
        metrics = node.engine.metrics
        assert metrics.triggers[TriggerResult.SUCCESS].by_app() == {("default", "slow"): 1}
        count, total_s = histogram_count_and_sum(metrics.delivery)
        assert count == 1 and total_s >= SLOW_S
        assert metrics.deliveries_in_flight == metrics.jobs_in_flight == 0
    finally:
        node.close()


def test_the_change_that_ends_a_job_drops_its_timer(tmp_path: Path, sink: Sink) -> None:
    """Timers are keyed by uid: a delete, a delete by prefix and an overwrite (a new uid) each
    drop the ended job's timer, and the overwrite arms its successor's."""
    node = Harness(tmp_path, EngineConfig()).start()
    try:
        node.register("app", sink.url)
        for name in ("kept", "deleted", "pre-1", "pre-2"):
            node.put(name, schedule="@every 30m")
        wait_for_timers(node, 4)
        node.put("kept", schedule="@every 20m", overwrite=True)
        node.delete("deleted")
        node.propose(DeletePrefix(NAMESPACE, "app", "pre-", 0))
        wait_for_timers(node, 1)
        time.sleep(0.3)  # a timer left behind would still be counted, not on its way out
        assert node.engine.timers == 1
    finally:
        node.close()


def wait_for_timers(node: Harness, count: int, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while node.engine.timers != count and time.monotonic() < deadline:
        time.sleep(0.02)
    assert node.engine.timers == count


def test_jobs_beyond_the_timer_horizon_hold_no_timer_and_still_fire_on_time(
    tmp_path: Path, sink: Sink
) -> None:
    """With a 1 s horizon, jobs due 2.5 s and more ahead are armed by the refills (every 0.5 s),
    not when created; each fires once, never early."""
    node = Harness(tmp_path, EngineConfig(timer_horizon_ms=1000)).start()
    try:
        node.register("app", sink.url)
        far = [node.put(f"far-{index}", due_time=f"{2500 + 300 * index}ms") for index in range(3)]
        repeating = node.put("far-every", schedule="@every 3s", repeats=2)
        assert node.engine.timers == 0
        for job in (*far, repeating):
            node.wait_gone(job.name, timeout_s=15)
        for job in far:
            (call,) = sink.calls_for(job.name)
            assert scheduled_ms(call) == job.next_ms
        calls = sink.calls_for("far-every")
        assert [scheduled_ms(call) for call in calls] == [
            repeating.next_ms,
            repeating.next_ms + 3000,
        ]
        assert_never_early([*calls, *(sink.calls_for(job.name)[0] for job in far)])
    finally:
        node.close()


def test_a_job_that_cannot_be_fired_is_quarantined_and_the_others_go_on(
    harness: Harness, sink: Sink, monkeypatch: pytest.MonkeyPatch
) -> None:
    import node.engine.engine

    real = skipped_occurrences

    def failing_for_poison(job: Job, now_ms: int, grace_ms: int, skips_max: int) -> list[int]:
        if job.name == "poison":
            raise OverflowError("date value out of range")
        return real(job, now_ms, grace_ms, skips_max)

    monkeypatch.setattr(node.engine.engine, "skipped_occurrences", failing_for_poison)
    before = harness.engine.metrics.jobs_quarantined
    harness.put("poison", schedule="@every 1s")
    harness.put("bystander", schedule="@every 1s", repeats=3)
    harness.wait_until(
        lambda m: (j := m.get(NAMESPACE, "app", "poison")) is not None and bool(j.error)
    )
    stopped = harness.job("poison")
    assert stopped is not None and stopped.error == "OverflowError: date value out of range"
    assert harness.engine.metrics.jobs_quarantined == before + 1
    harness.wait_gone("bystander")
    assert len(sink.calls_for("bystander")) == 3
    assert sink.calls_for("poison") == []
    # Overwritten, it is a new job: it fires again once nothing makes it fail.
    monkeypatch.setattr(node.engine.engine, "skipped_occurrences", real)
    harness.put("poison", due_time="0s", overwrite=True)
    harness.wait_gone("poison")
    assert len(sink.calls_for("poison")) == 1


def test_a_state_restored_from_a_snapshot_fires_as_the_snapshot_holds_it(
    tmp_path: Path, sink: Sink
) -> None:
    """A lagging node installs its leader's snapshot, which no change event describes: here an
    app registered and a job created while it lagged. The store's Restored event makes the
    engine read both again, and the job fires (it stayed parked, unarmed, before)."""
    node = Harness(tmp_path, EngineConfig()).start()
    try:
        leader = JobMachine(PARTITIONS, Ring)
        spec = JobSpec("restored", due_time="500ms")
        now_ms = node.clock.wall_ms()
        for command in (
            SetMembers(epoch=1, members=(node.member,), live=(NODE,)),
            RegisterApp(NAMESPACE, "app", sink.url),
            Put(NAMESPACE, "app", spec, False, now_ms, uuid.uuid4().hex, "UTC"),
        ):
            assert leader.apply(command).ok

        async def install(snapshot: bytes) -> None:
            node.machine.load_bytes(snapshot)
            node.engine.on_applied(Applied(0, b"", Restored()))

        node.run(install(leader.to_bytes()))
        node.wait_gone("restored", timeout_s=15)
        (call,) = sink.calls_for("restored")
        assert scheduled_ms(call) == now_ms + 500
    finally:
        node.close()
