"""The job machine: every command's effect, what it ignores, and determinism across replicas."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from cluster.ring import Ring
from store import job_row
from store.codec import (
    Ack,
    AckEntry,
    Barrier,
    Delete,
    DeletePrefix,
    Heartbeat,
    Member,
    Outcome,
    Put,
    RegisterApp,
    SetMembers,
    UnregisterApp,
    WatchersChanged,
    encode_command,
)
from store.failure_policy import FAILURE_POLICY_DROP
from store.jobs import Job, JobSpec
from store.machine import (
    APP_TOKEN_CHARS_MAX,
    AckCounts,
    AppRoute,
    ErrorKind,
    JobChange,
    JobMachine,
    Result,
)
from store.partition import PARTITIONS_DEFAULT
from store.schedule import parse_schedule
from tests.unit.store.machine_streams import intents, materialize

NOW_MS = 1_700_000_000_000
NODES = ("n1", "n2")
MEMBERS = tuple(
    Member(n, f"127.0.0.1:{7500 + i}", f"127.0.0.1:{3500 + i}") for i, n in enumerate(NODES)
)


def machine_with_members(partitions: int = 16) -> JobMachine:
    machine = JobMachine(partitions, Ring)
    assert machine.apply(SetMembers(1, MEMBERS, NODES)).ok
    return machine


def put(
    machine: JobMachine,
    spec: JobSpec | str,
    uid: str,
    overwrite: bool = False,
    app: str = "app",
) -> Result:
    """Put `spec`; a bare name is a job every second."""
    if isinstance(spec, str):
        spec = JobSpec(spec, schedule="@every 1s")
    return machine.apply(Put("ns", app, spec, overwrite, NOW_MS, uid, "UTC"))


def ack(
    machine: JobMachine, job: Job, outcome: Outcome, now_ms: int = NOW_MS, node: str | None = None
) -> Result:
    owner = node or machine.owner(job.partition)
    assert owner is not None
    return machine.apply(
        Ack(machine.epoch, owner, now_ms, (AckEntry(job.uid, job.next_ms, outcome),))
    )


def current(machine: JobMachine, name: str = "j", app: str = "app") -> Job:
    job = machine.get("ns", app, name)
    assert job is not None
    return job


# ---- put, overwrite, delete ----


def test_put_stores_the_derived_job_and_reports_the_change() -> None:
    machine = JobMachine(PARTITIONS_DEFAULT, Ring)
    result = put(machine, "j", "u1")
    job = current(machine)
    assert result == Result(value=job, changes=(JobChange(("ns", "app", "j"), job),))
    assert (job.uid, job.next_ms, machine.count(), machine.get_by_uid("u1")) == (
        "u1",
        NOW_MS + 1000,
        1,
        job,
    )
    assert machine.rows_in_partitions([job.partition]) == [job_row.pack(job)]
    assert machine.rows_in_partitions([job.partition + 1, job.partition - 1]) == []


def test_put_of_an_existing_name_without_overwrite_is_a_conflict_that_changes_nothing() -> None:
    machine = JobMachine(PARTITIONS_DEFAULT, Ring)
    put(machine, "j", "u1")
    before = machine.digest()
    result = put(machine, JobSpec("j", due_time="1s"), "u2")
    assert (result.ok, result.error, result.message) == (
        False,
        ErrorKind.CONFLICT,
        "job already exists: 'j'",
    )
    assert machine.digest() == before
    assert machine.get_by_uid("u2") is None


def test_overwrite_replaces_the_job_resets_its_count_and_forgets_the_old_uid() -> None:
    machine = machine_with_members()
    put(machine, "j", "u1")
    ack(machine, current(machine), Outcome.SUCCESS)
    assert current(machine).trigger_count == 1
    result = put(machine, JobSpec("j", due_time="5s"), "u2", overwrite=True)
    job = current(machine)
    assert result.ok and (job.uid, job.trigger_count, job.next_ms) == ("u2", 0, NOW_MS + 5000)
    assert machine.get_by_uid("u1") is None and machine.count() == 1
    assert result.changes == (JobChange(job.key, job, ended="u1"),)


def test_a_reused_uid_is_refused() -> None:
    machine = JobMachine(PARTITIONS_DEFAULT, Ring)
    put(machine, "j", "u1")
    result = put(machine, "k", "u1")
    assert (result.ok, result.error) == (False, ErrorKind.INVALID)
    assert machine.get("ns", "app", "k") is None


def test_an_invalid_job_is_an_invalid_result_and_changes_nothing() -> None:
    machine = JobMachine(PARTITIONS_DEFAULT, Ring)
    before = machine.digest()
    result = put(machine, JobSpec("j", due_time="1s", repeats=3), "u1")
    assert result == Result(
        ok=False, error=ErrorKind.INVALID, message="job must have a schedule to repeat"
    )
    bad_cron = put(machine, JobSpec("j", schedule="* * *"), "u1")
    assert (bad_cron.ok, bad_cron.error) == (False, ErrorKind.INVALID)
    assert machine.digest() == before and machine.count() == 0


def test_delete_removes_the_job_and_deleting_a_missing_one_is_fine() -> None:
    machine = JobMachine(PARTITIONS_DEFAULT, Ring)
    put(machine, "j", "u1")
    key = current(machine).key
    assert machine.apply(Delete("ns", "app", "j")) == Result(
        value=1, changes=(JobChange(key, None, ended="u1"),)
    )
    assert machine.apply(Delete("ns", "app", "j")) == Result(value=0)
    assert machine.count() == 0 and machine.get_by_uid("u1") is None
    assert machine.rows_in_partitions(range(machine.partitions)) == []


def test_stored_uid_is_the_machines_own_string() -> None:
    """A job read from its row carries a copy of its uid; stored_uid gives the machine's, so a
    timer keyed by it adds no copy. A version no longer stored (deleted, or overwritten by
    another uid) keeps its own."""
    machine = JobMachine(PARTITIONS_DEFAULT, Ring)
    put(machine, "job-name", "".join(["u", "1"]))
    copy = current(machine, "job-name")
    shared = machine.stored_uid(copy)
    assert shared == copy.uid and shared is not copy.uid
    assert machine.stored_uid(current(machine, "job-name")) is shared
    by_uid = machine.get_by_uid("u1")
    assert by_uid is not None and machine.stored_uid(by_uid) is shared
    put(machine, "job-name", "u2", overwrite=True)
    assert machine.stored_uid(copy) is copy.uid
    machine.apply(Delete("ns", "app", "job-name"))
    assert machine.stored_uid(by_uid) is by_uid.uid


def test_delete_prefix_deletes_only_that_apps_matching_names() -> None:
    machine = JobMachine(PARTITIONS_DEFAULT, Ring)
    for i, name in enumerate(["a1", "a2", "b1", "a3"]):
        put(machine, name, f"u{i}")
    put(machine, "a9", "other", app="other")
    result = machine.apply(DeletePrefix("ns", "app", "a"))
    assert result.value == 3 and {c.key[2] for c in result.changes} == {"a1", "a2", "a3"}
    assert [job.name for job in machine.list_jobs("ns", "app")[0]] == ["b1"]
    assert machine.count_app("ns", "other") == 1
    assert machine.apply(DeletePrefix("ns", "app", "")).value == 1
    assert machine.apply(DeletePrefix("ns", "nobody", "")).value == 0


def test_list_pages_by_name_with_prefix_and_cursor() -> None:
    machine = JobMachine(PARTITIONS_DEFAULT, Ring)
    names = [f"job-{i:03d}" for i in range(25)] + ["other"]
    for i, name in enumerate(reversed(names)):
        put(machine, name, f"u{i}")
    seen: list[str] = []
    cursor: str | None = None
    while True:
        page, cursor = machine.list_jobs("ns", "app", prefix="job-", limit=10, cursor=cursor)
        seen += [job.name for job in page]
        if cursor is None:
            break
        assert cursor == seen[-1]
    assert seen == names[:25]
    assert machine.list_jobs("ns", "app", limit=100)[0][-1].name == "other"
    assert machine.list_jobs("ns", "nobody") == ([], None)
    assert machine.list_jobs("ns", "app", prefix="job-", limit=25) == (
        machine.list_jobs("ns", "app", limit=25)[0],
        None,
    )


# ---- apps, heartbeats, members ----


def test_apps_register_and_unregister() -> None:
    machine = JobMachine(PARTITIONS_DEFAULT, Ring)
    assert machine.apply(RegisterApp("ns", "app", "http://127.0.0.1:6000")).apps_changed
    assert machine.app_url("ns", "app") == "http://127.0.0.1:6000"
    assert machine.apps() == {("ns", "app"): "http://127.0.0.1:6000"}
    bad = machine.apply(RegisterApp("ns", "app", "ftp://x"))
    assert (bad.ok, bad.error) == (
        False,
        ErrorKind.INVALID,
    ) and "app url must start with" in bad.message
    assert machine.apply(RegisterApp("", "app", "http://x")).message == "namespace is empty"
    assert machine.apply(UnregisterApp("ns", "app")) == Result(value=True, apps_changed=True)
    assert machine.apply(UnregisterApp("ns", "app")) == Result(value=False)
    assert machine.app_url("ns", "app") is None


def test_an_app_token_is_kept_with_the_url_and_checked() -> None:
    machine = JobMachine(PARTITIONS_DEFAULT, Ring)
    assert machine.apply(RegisterApp("ns", "app", "http://127.0.0.1:6000", "s3cret")).ok
    assert machine.app_route("ns", "app") == AppRoute("http://127.0.0.1:6000", "s3cret")
    assert machine.app_routes() == {("ns", "app"): AppRoute("http://127.0.0.1:6000", "s3cret")}
    # Registering again without a token clears it.
    assert machine.apply(RegisterApp("ns", "app", "http://127.0.0.1:6000")).ok
    assert machine.app_route("ns", "app") == AppRoute("http://127.0.0.1:6000", "")
    for bad_token in ("has space", "line\nbreak", "é", "x" * (APP_TOKEN_CHARS_MAX + 1)):
        result = machine.apply(RegisterApp("ns", "app", "http://h", bad_token))
        assert (result.ok, result.error) == (False, ErrorKind.INVALID), bad_token
        assert "app token" in result.message
    assert machine.apply(RegisterApp("ns", "app", "http://h", "x" * APP_TOKEN_CHARS_MAX)).ok


def test_watchers_are_recorded_per_app_and_node() -> None:
    machine = machine_with_members()
    changed = machine.apply(WatchersChanged("ns", "app", "n1", 1))
    assert changed == Result(watchers_changed=True)
    machine.apply(WatchersChanged("ns", "app", "n2", 3))
    machine.apply(WatchersChanged("ns", "other", "n2", 1))
    assert machine.watchers() == {("ns", "app"): {"n1": 1, "n2": 3}, ("ns", "other"): {"n2": 1}}
    assert machine.watchers_on("n2") == {("ns", "app"): 3, ("ns", "other"): 1}
    # A count of 0 removes the node, and the app once no node is left.
    machine.apply(WatchersChanged("ns", "app", "n1", 0))
    machine.apply(WatchersChanged("ns", "other", "n2", 0))
    assert machine.watchers() == {("ns", "app"): {"n2": 3}}
    assert machine.watchers_on("n1") == {}


def test_watchers_of_nodes_that_are_not_live_are_refused_and_forgotten() -> None:
    machine = machine_with_members()
    refused = machine.apply(WatchersChanged("ns", "app", "n9", 1))
    assert (refused.ok, refused.error) == (False, ErrorKind.STALE)
    for bad in (WatchersChanged("ns", "app", "n1", -1), WatchersChanged("", "app", "n1", 1)):
        assert machine.apply(bad).error is ErrorKind.INVALID
    machine.apply(WatchersChanged("ns", "app", "n1", 1))
    machine.apply(WatchersChanged("ns", "app", "n2", 2))
    # n2 leaves the live set: its watchers go with it, and the result says so.
    assert machine.apply(SetMembers(2, MEMBERS, ("n1",))).watchers_changed
    assert machine.watchers() == {("ns", "app"): {"n1": 1}}
    assert not machine.apply(SetMembers(3, MEMBERS, ("n1",))).watchers_changed
    assert machine.apply(WatchersChanged("ns", "app", "n2", 1)).error is ErrorKind.STALE


def test_set_members_moves_to_the_next_epoch_only() -> None:
    machine = JobMachine(16, Ring)
    assert machine.owner(0) is None
    stale = machine.apply(SetMembers(2, MEMBERS, NODES))
    assert (stale.ok, stale.error, machine.epoch) == (False, ErrorKind.STALE, 0)
    assert machine.apply(SetMembers(1, MEMBERS, NODES)) == Result(members_changed=True)
    assert (machine.epoch, machine.members, machine.live) == (1, MEMBERS, NODES)
    assert {machine.owner(p) for p in range(16)} == set(NODES)
    assert machine.partitions_of("n1") | machine.partitions_of("n2") == frozenset(range(16))
    assert not machine.apply(SetMembers(1, MEMBERS, NODES)).ok


def test_set_members_refuses_bad_member_lists() -> None:
    machine = JobMachine(16, Ring)
    for members, live in [
        (MEMBERS + MEMBERS[:1], NODES),
        ((Member("", "r", "h"),), ()),
        (MEMBERS, ("n1", "n9")),
        (MEMBERS, ("n1", "n1")),
    ]:
        result = machine.apply(SetMembers(1, members, live))
        assert (result.ok, result.error, machine.epoch) == (False, ErrorKind.INVALID, 0)


def test_heartbeats_are_recorded_and_those_of_former_members_dropped() -> None:
    machine = machine_with_members()
    machine.apply(Heartbeat("n1", NOW_MS, "h:1", "h:2"))
    machine.apply(Heartbeat("n2", NOW_MS + 5, "h:3", "h:4"))
    machine.apply(Heartbeat("n1", NOW_MS + 9, "h:1", "h:2"))
    assert machine.heartbeats() == {"n1": NOW_MS + 9, "n2": NOW_MS + 5}
    assert machine.announced()["n2"] == Member("n2", "h:3", "h:4")
    assert not machine.apply(Heartbeat("", NOW_MS, "h:1", "h:2")).ok
    machine.apply(SetMembers(2, MEMBERS[:1], ("n1",)))
    assert machine.heartbeats() == {"n1": NOW_MS + 9}


def test_barrier_changes_nothing() -> None:
    machine = machine_with_members()
    put(machine, "j", "u1")
    before = machine.digest()
    assert machine.apply(Barrier()) == Result()
    assert machine.digest() == before


# ---- acks ----


def test_success_advances_the_occurrence_and_finishes_a_due_time_job() -> None:
    machine = machine_with_members()
    put(machine, JobSpec("j", schedule="@every 2s", due_time="1s"), "u1")
    job = current(machine)
    result = ack(machine, job, Outcome.SUCCESS)
    after = current(machine)
    assert result.value == AckCounts(1, 0) and result.changes == (JobChange(job.key, after),)
    assert (after.trigger_count, after.last_ms, after.next_ms) == (1, NOW_MS + 1000, NOW_MS + 3000)
    put(machine, JobSpec("once", due_time="1s"), "u2")
    once = current(machine, "once")
    assert ack(machine, once, Outcome.SUCCESS).changes == (JobChange(once.key, None, "u2"),)
    assert machine.get("ns", "app", "once") is None and machine.get_by_uid("u2") is None


def test_failures_retry_per_policy_then_count_the_occurrence() -> None:
    machine = machine_with_members()
    put(machine, JobSpec("j", schedule="@every 10s"), "u1")
    for attempt in range(1, 4):
        ack(machine, current(machine), Outcome.FAILED, now_ms=NOW_MS + attempt)
        assert (current(machine).attempts, current(machine).retry_ms) == (
            attempt,
            NOW_MS + attempt + 1000,
        )
    ack(machine, current(machine), Outcome.FAILED)
    job = current(machine)
    assert (job.attempts, job.retry_ms, job.trigger_count, job.next_ms) == (
        0,
        None,
        1,
        NOW_MS + 20_000,
    )
    put(machine, JobSpec("drop", due_time="1s", failure_policy=FAILURE_POLICY_DROP), "u2")
    ack(machine, current(machine, "drop"), Outcome.FAILED)
    assert machine.get("ns", "app", "drop") is None


def test_skipped_moves_on_without_counting() -> None:
    machine = machine_with_members()
    put(machine, JobSpec("j", schedule="@every 1s", repeats=1), "u1")
    ack(machine, current(machine), Outcome.SKIPPED)
    assert (current(machine).trigger_count, current(machine).next_ms) == (0, NOW_MS + 2000)
    ack(machine, current(machine), Outcome.SUCCESS)
    assert machine.count() == 0


def test_acks_that_are_not_for_the_current_occurrence_by_its_owner_are_ignored() -> None:
    machine = machine_with_members()
    put(machine, "j", "u1")
    job = current(machine)
    owner = machine.owner(job.partition)
    stranger = next(n for n in NODES if n != owner)
    before = machine.digest()
    entries = (
        AckEntry("nobody", job.next_ms, Outcome.SUCCESS),
        AckEntry("u1", job.next_ms - 1000, Outcome.SUCCESS),
        AckEntry("u1", job.next_ms + 1000, Outcome.FAILED),
    )
    assert machine.apply(Ack(1, str(owner), NOW_MS, entries)) == Result(value=AckCounts(0, 3))
    foreign = machine.apply(
        Ack(1, stranger, NOW_MS, (AckEntry("u1", job.next_ms, Outcome.SUCCESS),))
    )
    assert foreign == Result(value=AckCounts(0, 1))
    stale = machine.apply(
        Ack(0, str(owner), NOW_MS, (AckEntry("u1", job.next_ms, Outcome.SUCCESS),))
    )
    assert (stale.ok, stale.error, stale.value) == (False, ErrorKind.STALE, AckCounts(0, 1))
    assert machine.digest() == before


def test_a_repeated_ack_in_one_batch_applies_once() -> None:
    machine = machine_with_members()
    put(machine, "j", "u1")
    job = current(machine)
    entry = AckEntry("u1", job.next_ms, Outcome.SUCCESS)
    result = machine.apply(Ack(1, str(machine.owner(job.partition)), NOW_MS, (entry, entry)))
    assert result.value == AckCounts(1, 1) and len(result.changes) == 1
    assert current(machine).trigger_count == 1


def test_an_ack_after_the_owner_changes_is_ignored() -> None:
    machine = machine_with_members()
    put(machine, "j", "u1")
    job = current(machine)
    survivor = next(n for n in NODES if n != machine.owner(job.partition))
    machine.apply(SetMembers(2, MEMBERS, (survivor,)))
    late = machine.apply(
        Ack(
            2,
            "n1" if survivor == "n2" else "n2",
            NOW_MS,
            (AckEntry("u1", job.next_ms, Outcome.SUCCESS),),
        )
    )
    assert late.value == AckCounts(0, 1)
    assert ack(machine, job, Outcome.SUCCESS).value == AckCounts(1, 0)


# ---- bytes in ----


def test_malformed_command_bytes_are_an_invalid_result() -> None:
    machine = JobMachine(PARTITIONS_DEFAULT, Ring)
    for data in (b"", b"\xc1", b"\x93\x01\x63\x00", encode_command(Barrier())[:-1] + b"\x05"):
        result = machine.apply_command(data)
        assert (result.ok, result.error) == (False, ErrorKind.INVALID)
    assert machine.apply_command(encode_command(RegisterApp("ns", "a", "http://h"))).ok
    assert machine.app_url("ns", "a") == "http://h"


# ---- properties ----


@settings(deadline=None, max_examples=60)
@given(intents, st.integers(0, 60))
def test_replicas_fed_the_same_commands_end_identical(stream: list[object], cut: int) -> None:
    commands = materialize(stream)  # type: ignore[arg-type]
    first, second = JobMachine(64, Ring), JobMachine(64, Ring)
    for command in commands:
        assert first.apply(command) == second.apply(command)
    assert first.digest() == second.digest()
    # A replica that joins from a snapshot taken part way through converges too.
    cut = min(cut, len(commands))
    early = JobMachine(64, Ring)
    for command in commands[:cut]:
        early.apply(command)
    joined = JobMachine.from_bytes(early.to_bytes(), Ring)
    for command in commands[cut:]:
        joined.apply(command)
    assert joined.digest() == first.digest()
    assert joined.count() == first.count()


SCHEDULES = ("@every 1s", "@every 7s", "*/5 * * * * *", "0 * * * * *")


@settings(deadline=None, max_examples=80)
@given(
    schedule=st.sampled_from(SCHEDULES),
    due_s=st.one_of(st.none(), st.integers(0, 100)),
    repeats=st.one_of(st.none(), st.integers(1, 12)),
    ttl_s=st.one_of(st.none(), st.integers(0, 120)),
    failures=st.lists(st.integers(0, 4), max_size=20),
)
def test_successful_acks_trigger_exactly_what_repeats_and_ttl_allow(
    schedule: str, due_s: int | None, repeats: int | None, ttl_s: int | None, failures: list[int]
) -> None:
    machine = machine_with_members()
    due_time = None if due_s is None else f"{due_s}s"
    ttl = None if ttl_s is None else f"{ttl_s}s"
    spec = JobSpec("j", schedule=schedule, due_time=due_time, repeats=repeats, ttl=ttl)
    if not put(machine, spec, "u1").ok:
        # Only a first trigger past the ttl is refused here; the rules say so.
        assert ttl_s is not None and due_s is None
        return
    job = current(machine)
    expected = expected_triggers(job, schedule, repeats)
    fired: list[int] = []
    for step in range(200):
        live = machine.get("ns", "app", "j")
        if live is None:
            break
        # Fail a few attempts first (within the default policy's three retries): still one trigger.
        for _ in range(min(failures[step] if step < len(failures) else 0, 3)):
            ack(machine, live, Outcome.FAILED)
        fired.append(live.next_ms)
        ack(machine, current(machine), Outcome.SUCCESS)
    assert fired == expected
    assert repeats is None or len(fired) <= repeats
    assert job.expiry_ms is None or all(t <= job.expiry_ms for t in fired)


def expected_triggers(job: Job, schedule: str, repeats: int | None) -> list[int]:
    """The sequence by the rules, computed independently of the machine, at most 200 long."""
    times = [
        job.due_ms
        if job.due_ms is not None
        else parse_schedule(schedule, "UTC").next_after(job.created_ms)
    ]
    while len(times) < 200 and (repeats is None or len(times) < repeats):
        following = parse_schedule(schedule, "UTC").next_after(times[-1])
        if job.expiry_ms is not None and following > job.expiry_ms:
            break
        times.append(following)
    return times


def test_a_member_whose_heartbeat_landed_after_the_leaders_read_is_not_dropped() -> None:
    machine = machine_with_members()
    assert machine.apply(Heartbeat("n2", NOW_MS, "r2", "h2")).ok
    # The leader read an older heartbeat and decided n2 was dead; n2's fresh one landed first.
    late = machine.apply(SetMembers(2, MEMBERS, ("n1",), NOW_MS + 1000, 1500))
    assert (late.ok, late.error) == (False, ErrorKind.STALE)
    assert machine.live == NODES and machine.epoch == 1
    # Once the heartbeat is dead_ms old at the command's time, the member may go.
    assert machine.apply(SetMembers(2, MEMBERS, ("n1",), NOW_MS + 1500, 1500)).ok
    assert list(machine.live) == ["n1"]


def test_a_member_is_dropped_only_with_the_heartbeat_the_leader_judged_dead() -> None:
    machine = machine_with_members()
    assert machine.apply(Heartbeat("n2", NOW_MS, "r2", "h2")).ok
    # The leader judged n2's heartbeat of NOW_MS - 200 dead; the one of NOW_MS landed since.
    late = machine.apply(SetMembers(2, MEMBERS, ("n1",), NOW_MS, 0, (("n2", NOW_MS - 200),)))
    assert (late.ok, late.error) == (False, ErrorKind.STALE)
    # A member dropped without a judged heartbeat (the command names another) stays.
    unjudged = machine.apply(SetMembers(2, MEMBERS, ("n1",), NOW_MS, 0, (("n3", NOW_MS),)))
    assert (unjudged.ok, unjudged.error) == (False, ErrorKind.STALE)
    twice = machine.apply(SetMembers(2, MEMBERS, ("n1",), NOW_MS, 0, (("n2", NOW_MS),) * 2))
    assert (twice.ok, twice.error) == (False, ErrorKind.INVALID)
    assert machine.live == NODES and machine.epoch == 1
    # The judged heartbeat is still the last: how old its wall stamp is does not matter.
    assert machine.apply(SetMembers(2, MEMBERS, ("n1",), NOW_MS, 0, (("n2", NOW_MS),))).ok
    assert list(machine.live) == ["n1"]
