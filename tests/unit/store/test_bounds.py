"""Every accepted job is safe for life, and apply is total and atomic, for any input at all.

Properties over extreme values: times at and past the ends of the range, every zone in the
database, durations and counts at and past each bound. A job either is refused with a
ValidationError or can be computed at any point of its life (next occurrence, retry, misfire
skipping, its JSON, its snapshot row) without an error. And `apply` of any bytes never raises,
and leaves the state exactly as it was whenever it refuses.
"""

from __future__ import annotations

import zoneinfo

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cluster.ring import Ring
from node.engine.misfire import skipped_occurrences
from store import job_row
from store.bounds import (
    DURATION_MS_MAX,
    PERIOD_MS_MIN,
    RETRY_INTERVAL_MS_MIN,
    TIME_MS_MAX,
    TIME_MS_MIN,
    UINT32_MAX,
)
from store.codec import (
    Ack,
    AckEntry,
    CommandTag,
    MachineState,
    Member,
    Outcome,
    Put,
    SetMembers,
    decode_snapshot,
    encode_command,
    encode_snapshot,
)
from store.errors import ValidationError
from store.failure_policy import FailureKind, FailurePolicy
from store.jobs import (
    Job,
    JobLimits,
    JobSpec,
    MisfirePolicy,
    advance,
    derive_job,
    job_to_json,
    record_failure,
    spec_from_request,
)
from store.machine import ErrorKind, JobMachine
from store.schedule import format_rfc3339_ms
from store.settlement import Settled, settle
from tests.unit.store.snapshot_layouts import unpacked

NOW_MS = 1_700_000_000_000
ZONES = sorted(zoneinfo.available_timezones())
LIMITS = JobLimits()

# Instants around each end of the range, and some anywhere inside it.
EDGE_MS = st.sampled_from(
    [TIME_MS_MIN - 1, TIME_MS_MIN, TIME_MS_MIN + 1, TIME_MS_MAX - 1, TIME_MS_MAX, TIME_MS_MAX + 1]
)
INSTANT_MS = st.one_of(EDGE_MS, st.integers(TIME_MS_MIN - 10**12, TIME_MS_MAX + 10**12))
DURATION_TEXT = st.one_of(
    st.sampled_from(
        [
            "1ms",
            "99ms",
            "100ms",
            f"{DURATION_MS_MAX}ms",
            f"{DURATION_MS_MAX + 1}ms",
            "2562047h",
            "-2562047h",
            "18446744073709551s",
            "0s",
            "1s",
        ]
    ),
    st.integers(-(10**15), 10**15).map(lambda ms: f"{ms}ms"),
)
CRON = st.sampled_from(
    ["0 * * * * *", "*/7 * * * * *", "0 30 2 * * *", "0 0 0 29 2 *", "0 0 0 31 12 *", "@yearly"]
)


@st.composite
def schedules(draw: st.DrawFn) -> str | None:
    kind = draw(st.sampled_from(["none", "cron", "every"]))
    if kind == "none":
        return None
    if kind == "every":
        return f"@every {draw(DURATION_TEXT)}"
    zone = draw(st.sampled_from(ZONES))
    return f"CRON_TZ={zone} {draw(CRON)}"


@st.composite
def specs(draw: st.DrawFn) -> JobSpec:
    schedule = draw(schedules())
    due = draw(st.one_of(st.none(), INSTANT_MS.map(format_rfc3339_ms_or_text), DURATION_TEXT))
    if schedule is None and due is None:
        due = "1s"
    ttl = draw(st.one_of(st.none(), INSTANT_MS.map(format_rfc3339_ms_or_text), DURATION_TEXT))
    repeats = draw(st.one_of(st.none(), st.sampled_from([1, 2, UINT32_MAX, UINT32_MAX + 1])))
    interval_ms = draw(
        st.sampled_from([0, 1, RETRY_INTERVAL_MS_MIN, DURATION_MS_MAX, DURATION_MS_MAX + 1])
    )
    policy = draw(
        st.sampled_from(
            [
                None,
                FailurePolicy(FailureKind.DROP),
                FailurePolicy(FailureKind.CONSTANT, interval_ms, None),
                FailurePolicy(FailureKind.CONSTANT, interval_ms, UINT32_MAX),
            ]
        )
    )
    return JobSpec(
        name="j",
        schedule=schedule,
        due_time=due,
        repeats=repeats if schedule is not None else None,
        ttl=ttl if schedule is not None else None,
        failure_policy=policy,
        misfire_policy=draw(st.sampled_from(list(MisfirePolicy))),
    )


def format_rfc3339_ms_or_text(ms: int) -> str:
    """An RFC3339 text for any instant, even one datetime cannot hold (written by hand)."""
    if TIME_MS_MIN <= ms <= TIME_MS_MAX:
        return format_rfc3339_ms(ms)
    return "0001-01-01T00:00:00Z" if ms < TIME_MS_MIN else "9999-12-31T23:59:59.9999Z"


def exercise(job: Job, point_ms: int, now_ms: int) -> None:
    """Every computation the job may need with its current occurrence at `point_ms`."""
    at = job._replace(next_ms=point_ms)
    assert TIME_MS_MIN <= at.next_ms <= TIME_MS_MAX
    following = advance(at, counted=True)
    assert following is None or point_ms < following.next_ms <= TIME_MS_MAX
    retried = record_failure(at, now_ms)
    assert retried is None or TIME_MS_MIN <= retried.fire_ms <= TIME_MS_MAX
    skipped_occurrences(at, now_ms, 0, 16)
    job_to_json(at)
    state = MachineState(1, 0, (), (), (), (), (), (), (), [job_row.pack(at)])
    assert list(map(job_row.unpack, decode_snapshot(encode_snapshot(state)).jobs)) == [at]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs(), st.integers(TIME_MS_MIN, TIME_MS_MAX), INSTANT_MS.filter(lambda ms: ms >= 0))
def test_a_job_is_refused_or_computable_for_its_whole_life(
    spec: JobSpec, point_ms: int, now_ms: int
) -> None:
    try:
        job = derive_job(spec, "ns", "app", "uid", NOW_MS, "UTC", 16)
    except ValidationError:
        return
    assert TIME_MS_MIN <= job.next_ms <= TIME_MS_MAX
    now_ms = min(now_ms, TIME_MS_MAX)
    for moment in (job.next_ms, max(point_ms, job.next_ms), TIME_MS_MAX):
        exercise(job, moment, now_ms)


@pytest.mark.parametrize("zone", ZONES)
def test_every_zone_ends_its_sequence_at_the_end_of_the_range(zone: str) -> None:
    spec = JobSpec("j", schedule=f"CRON_TZ={zone} 0 0 * * * *")
    job = derive_job(spec, "ns", "app", "uid", NOW_MS, "UTC", 16)
    for start_ms in (TIME_MS_MAX - 3 * 86_400_000, TIME_MS_MAX - 1000, TIME_MS_MAX):
        current: Job | None = job._replace(next_ms=start_ms)
        for _ in range(100):
            assert current is not None
            current = advance(current, counted=True)
            if current is None:
                break
            assert current.next_ms <= TIME_MS_MAX
        assert current is None, "the sequence ends before the end of year 9999"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (
            {"dueTime": "0001-01-01T00:00:00Z", "schedule": "CRON_TZ=America/New_York 0 * * * * *"},
            "dueTime",
        ),
        ({"dueTime": "1969-12-31T23:59:59.999Z"}, "dueTime"),
        ({"dueTime": "-2562047h"}, "dueTime"),
        ({"schedule": "@every 1s", "ttl": "10000-01-01T00:00:00Z"}, "ttl"),
        ({"schedule": "@every 1ms"}, "interval"),
        ({"schedule": "@every 99ms"}, "interval"),
        ({"schedule": "@every 1000000h"}, "interval"),
        (
            {"dueTime": "1s", "failurePolicy": {"constant": {"interval": "18446744073709551s"}}},
            "interval",
        ),
        ({"dueTime": "1s", "failurePolicy": {"constant": {"interval": "0s"}}}, "interval"),
        ({"dueTime": "1s", "failurePolicy": {"constant": {"interval": "50ms"}}}, "interval"),
        (
            {"dueTime": "1s", "failurePolicy": {"constant": {"interval": "9" * 5000 + "s"}}},
            "interval",
        ),
        ({"schedule": "@every 1s", "repeats": "9" * 5000}, "repeats"),
        (
            {"dueTime": "1s", "failurePolicy": {"constant": {"maxRetries": "9" * 5000}}},
            "maxRetries",
        ),
        ({"dueTime": "1s", "data": "\ud800"}, "data"),
    ],
)
def test_hostile_fields_are_refused_naming_the_field(body: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError, match=field):
        spec, _ = spec_from_request("j", body, LIMITS)
        derive_job(spec, "ns", "app", "uid", NOW_MS, "UTC", 16)


def test_the_smallest_period_and_retry_interval_are_accepted() -> None:
    body = {
        "schedule": f"@every {PERIOD_MS_MIN}ms",
        "failurePolicy": {"constant": {"interval": f"{RETRY_INTERVAL_MS_MIN}ms"}},
    }
    spec, _ = spec_from_request("j", body, LIMITS)
    job = derive_job(spec, "ns", "app", "uid", NOW_MS, "UTC", 16)
    assert job.next_ms == NOW_MS + PERIOD_MS_MIN


# ---- apply: total and atomic ----

MEMBERS = (Member("n1", "127.0.0.1:7500", "127.0.0.1:3500"),)


def seeded_machine() -> JobMachine:
    machine = JobMachine(16, Ring)
    assert machine.apply(SetMembers(1, MEMBERS, ("n1",))).ok
    for k, schedule in enumerate(["@every 1s", "CRON_TZ=Asia/Tokyo 0 * * * * *", None]):
        spec = JobSpec(f"j{k}", schedule=schedule, due_time=None if schedule else "5s")
        assert machine.apply(Put("ns", "app", spec, False, NOW_MS, f"uid{k}", "UTC")).ok
    return machine


MSGPACK_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.text(max_size=20)
    | st.binary(max_size=20),
    lambda inner: st.lists(inner, max_size=6),
    max_leaves=20,
)
TAGS = st.sampled_from([int(tag) for tag in CommandTag] + [0, 99])


@settings(max_examples=600, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=64),
        st.tuples(st.sampled_from([1, 2]), TAGS, st.lists(MSGPACK_VALUES, max_size=10)).map(
            lambda t: msgpack.packb([t[0], t[1], *t[2]], use_bin_type=True)
        ),
    )
)
def test_apply_of_any_bytes_never_raises_and_a_refusal_changes_nothing(data: bytes) -> None:
    machine = seeded_machine()
    before = machine.digest()
    result = machine.apply_command(data)
    if not result.ok:
        assert machine.digest() == before


def test_a_bad_item_in_a_batch_of_acks_is_refused_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    machine = seeded_machine()
    jobs = {name: machine.get("ns", "app", name) for name in ("j0", "j1")}
    assert all(jobs.values())
    real_settle = settle

    def settle_failing_for_j0(
        job: Job, entry: AckEntry, node: str, now_ms: int, history_max: int
    ) -> Settled:
        if job.name == "j0":
            raise OverflowError("date value out of range")
        return real_settle(job, entry, node, now_ms, history_max)

    monkeypatch.setattr("store.machine._settle", settle_failing_for_j0)
    entries = tuple(AckEntry(job.uid, job.next_ms, Outcome.SUCCESS) for job in jobs.values() if job)
    result = machine.apply(Ack(1, "n1", NOW_MS + 60_000, entries))
    assert result.ok
    stopped, moved = machine.get("ns", "app", "j0"), machine.get("ns", "app", "j1")
    assert stopped is not None and stopped.error == "OverflowError: date value out of range"
    assert job_to_json(stopped)["status"]["error"] == stopped.error  # type: ignore[index]
    assert moved is not None and moved.trigger_count == 1
    # A quarantined job takes no more acks, and an overwrite brings it back to life.
    again = machine.apply(
        Ack(1, "n1", NOW_MS, (AckEntry(stopped.uid, stopped.next_ms, Outcome.SUCCESS),))
    )
    assert again.ok and machine.get("ns", "app", "j0") == stopped
    fresh = JobSpec("j0", schedule="@every 1s")
    assert machine.apply(Put("ns", "app", fresh, True, NOW_MS, "uid-new", "UTC")).ok
    revived = machine.get("ns", "app", "j0")
    assert revived is not None and revived.error is None


def test_an_unexpected_error_in_apply_is_a_refusal_that_changes_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    machine = seeded_machine()
    before = machine.digest()

    def broken(*_args: object) -> Job:
        raise RuntimeError("a defect")

    monkeypatch.setattr("store.machine.derive_job", broken)
    spec = JobSpec("new", due_time="1s")
    result = machine.apply_command(
        encode_command(Put("ns", "app", spec, False, NOW_MS, "uid-x", "UTC"))
    )
    assert (result.ok, result.error) == (False, ErrorKind.INVALID)
    assert "RuntimeError: a defect" in result.message
    assert machine.digest() == before


def test_version_1_commands_and_snapshots_still_decode() -> None:
    from store.codec import decode_command

    v1_put = msgpack.packb(
        [
            1,
            int(CommandTag.PUT),
            "ns",
            "app",
            ["n", None, "1s", None, None, b"", "", None, "all"],
            False,
            NOW_MS,
            "uid",
            "UTC",
        ],
        use_bin_type=True,
    )
    put = decode_command(v1_put)
    assert isinstance(put, Put) and (put.jobs_max, put.data_bytes_max) == (0, 0)
    machine = seeded_machine()
    state = machine.export_state()
    v2 = unpacked(encode_snapshot(state))
    assert JobMachine.from_bytes(msgpack.packb(v2, use_bin_type=True), Ring).digest() == (
        machine.digest()
    )
    # Version 1 has no dead letters and no app tokens (the fields after the jobs).
    v1 = v2[:11]
    v1[0] = 1
    v1[8] = [row[:4] for row in v1[8]]
    v1[10] = [[*row[:5], row[5][:9], *row[6:15]] for row in v1[10]]
    restored = JobMachine.from_bytes(msgpack.packb(v1, use_bin_type=True), Ring)
    assert restored.digest() == machine.digest()
