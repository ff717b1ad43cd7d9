"""Commands and snapshots to bytes and back: exact round trips, and CodecError on bad bytes."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given, settings

from cluster.ring import Ring
from store import job_row
from store.codec import (
    COMMAND_VERSION,
    JOB_FIELDS,
    SNAPSHOT_VERSION,
    SPEC_FIELDS,
    Ack,
    AckEntry,
    Barrier,
    Command,
    CommandTag,
    Delete,
    DeletePrefix,
    EntryKind,
    ForgetDeadLetter,
    Heartbeat,
    ImportJobs,
    IssueAppToken,
    Member,
    Outcome,
    Pause,
    Put,
    Quarantine,
    Redrive,
    RegisterApp,
    Release,
    Resume,
    RevokeAppToken,
    RunNow,
    SetMembers,
    UnregisterApp,
    WatchersChanged,
    WithAppToken,
    decode_command,
    decode_snapshot,
    encode_command,
    encode_snapshot,
)
from store.errors import CodecError
from store.failure_policy import FAILURE_POLICY_DEFAULT, FailureKind, FailurePolicy
from store.history import Attempt, AttemptOutcome
from store.jobs import JobSpec, MisfirePolicy, derive_job
from store.machine import JobMachine
from tests.unit.store.machine_streams import intents, materialize
from tests.unit.store.snapshot_layouts import JOBS_FIELD, old_handoff, unpacked

SPEC = JobSpec(
    name="j",
    schedule="@every 1s",
    due_time="10s",
    repeats=3,
    ttl="1h",
    data=b'{"a":1}',
    data_type="application/json",
    failure_policy=FAILURE_POLICY_DEFAULT,
    misfire_policy=MisfirePolicy.SKIP,
)
COMMANDS: list[Command] = [
    Put("ns", "app", SPEC, True, 1_700_000_000_000, "uid-1", "Europe/Paris"),
    Put("ns", "app", JobSpec("k", due_time="1s"), False, 5, "uid-2", "UTC"),
    Put("ns", "app", JobSpec("q", due_time="1s"), False, 5, "uid-3", "UTC", 10, 1 << 20),
    Delete("ns", "app", "j"),
    DeletePrefix("ns", "app", ""),
    DeletePrefix("ns", "app", "p", 500),
    RegisterApp("ns", "app", "grpc://127.0.0.1:50051"),
    RegisterApp("ns", "app", "http://127.0.0.1:6000", "s3cret"),
    UnregisterApp("ns", "app"),
    Ack(
        3, "n1", 42, (AckEntry("uid-1", 7, Outcome.SUCCESS), AckEntry("uid-2", 8, Outcome.SKIPPED))
    ),
    Ack(3, "n1", 42, ()),
    Heartbeat("n2", 99, "127.0.0.1:7501", "127.0.0.1:3501"),
    Heartbeat("n2", 99, "127.0.0.1:7501", "127.0.0.1:3501", "2026.1"),
    SetMembers(4, (Member("n1", "127.0.0.1:7500", "127.0.0.1:3500"),), ("n1",)),
    SetMembers(
        4,
        (Member("n1", "127.0.0.1:7500", "127.0.0.1:3500"),),
        ("n1",),
        1_700_000_000_000,
        0,
        (("n2", 1_699_999_998_900), ("n3", 1_699_999_998_800)),
    ),
    SetMembers(4, (), (), 1_700_000_000_000, 0, ()),
    Barrier(),
    WatchersChanged("ns", "app", "n2", 3),
    WatchersChanged("ns", "app", "n2", 0),
    Release(4, "n1"),
    Quarantine("uid-1", 7, "n1", "OverflowError: date value out of range"),
    Pause("ns", "app", "j"),
    Resume("ns", "app", "j", 1_700_000_000_000),
    RunNow("ns", "app", "j", 1_700_000_000_000),
    Redrive("ns", "app", "7:uid-1", 1_700_000_000_000),
    ForgetDeadLetter("ns", "app", "7:uid-1"),
    Ack(
        3,
        "n1",
        42,
        (AckEntry("uid-1", 7, Outcome.FAILED, EntryKind.MANUAL, 40, 2, 503, True),),
        20,
        100,
    ),
    IssueAppToken("ns", "app", "0123456789abcdef", bytes(32), 1_700_000_000_000),
    RevokeAppToken("ns", "app", "0123456789abcdef"),
    WithAppToken("ns", "app", "0123456789abcdef", encode_command(Delete("ns", "app", "job"))),
]


# A job with its whole state, history included, as an export carries it.
EXPORTED = derive_job(SPEC, "ns", "app", "uid-9", 1_700_000_000_000, "UTC", 8)._replace(
    paused=True,
    manual_ms=1_700_000_000_500,
    history=(
        Attempt(
            1_700_000_000_000, 1, AttemptOutcome.TIMEOUT, "n2", 1_700_000_000_001, 5000, 0, False
        ),
        Attempt(
            1_700_000_000_500, 1, AttemptOutcome.SUCCESS, "n1", 1_700_000_000_502, 3, 200, True
        ),
    ),
)
COMMANDS.append(ImportJobs((EXPORTED,), True))


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: type(c).__name__)
def test_every_command_round_trips_exactly(command: Command) -> None:
    decoded = decode_command(encode_command(command))
    assert decoded == command and type(decoded) is type(command)


def test_every_tag_has_an_example() -> None:
    tags = {msgpack.unpackb(encode_command(c))[1] for c in COMMANDS}
    assert tags == set(CommandTag)


def raw(*fields: object) -> bytes:
    packed: bytes = msgpack.packb(list(fields), use_bin_type=True)
    return packed


def ack_with_entry(entry: list[object]) -> bytes:
    return raw(COMMAND_VERSION, CommandTag.ACK, 1, "n1", 5, [entry], 0, 0)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "undecodable command"),
        (b"\xc1", "undecodable command"),
        (raw(), "missing version"),
        (raw(COMMAND_VERSION + 1, 1), "command version 3 is not 2"),
        (raw(COMMAND_VERSION, 99), "unknown command tag 99"),
        (raw(COMMAND_VERSION, True), "tag must be int"),
        (raw(COMMAND_VERSION, CommandTag.DELETE, "ns", "app"), "missing name"),
        (raw(COMMAND_VERSION, CommandTag.DELETE, "ns", "app", "j", "x"), "1 extra fields"),
        (raw(COMMAND_VERSION, CommandTag.DELETE, "ns", 5, "j"), "app must be str"),
        (raw(COMMAND_VERSION, CommandTag.HEARTBEAT, "n1", True, "r", "h"), "now_ms must be int"),
        (raw(COMMAND_VERSION, CommandTag.HEARTBEAT, "n1", 1.5, "r", "h"), "now_ms must be int"),
        (raw(COMMAND_VERSION, CommandTag.HEARTBEAT, "n1", 5, "r"), "missing http"),
        (raw(COMMAND_VERSION, CommandTag.ACK, 1, "n1", 5, [["u", 1, 7]]), "unknown outcome"),
        (raw(COMMAND_VERSION, CommandTag.ACK, 1, "n1", 5, "entries"), "entries must be tuple"),
        # Entries of a version 2 ack's full width, each wrong in one field.
        (ack_with_entry(["u", 1, 9, 0, 0, 0, 0, False]), "unknown outcome"),
        (ack_with_entry(["u", 1, 0, 9, 0, 0, 0, False]), "unknown kind"),
        (ack_with_entry(["u", True, 0, 0, 0, 0, 0, False]), "scheduled_ms must be int"),
        (ack_with_entry(["u", 1, 0, 0, 0, 0, 0, 1]), "timed_out must be bool"),
        (ack_with_entry([b"u", 1, 0, 0, 0, 0, 0, False]), "uid must be str"),
        (ack_with_entry(["u", 1, 0, 0, 0, 0.5, 0, False]), "duration_ms must be int"),
        (ack_with_entry(["u", 1, 0, 0, 0, 0, 0, False, 1]), "1 extra fields"),
        (raw(COMMAND_VERSION, CommandTag.SET_MEMBERS, 1, [], [3]), "expected a string"),
        (raw(COMMAND_VERSION, CommandTag.SET_MEMBERS, 1, [], [], 5, 0, 7), "judged must be"),
        (raw(COMMAND_VERSION, CommandTag.SET_MEMBERS, 1, [], [], 5, 0, [["n2"]]), "missing stamp"),
        (
            raw(COMMAND_VERSION, CommandTag.SET_MEMBERS, 1, [], [], 5, 0, [["n2", "1"]]),
            "stamp_ms must be int",
        ),
        (
            raw(COMMAND_VERSION, CommandTag.SET_MEMBERS, 1, [], [], 5, 0, [["n2", 1, 2]]),
            "1 extra fields",
        ),
        (msgpack.packb({"a": 1}), "expected an array"),
    ],
)
def test_malformed_commands_are_codec_errors(data: bytes, message: str) -> None:
    with pytest.raises(CodecError, match=message):
        decode_command(data)


def test_a_set_members_from_before_the_judged_stamps_decodes_without_them() -> None:
    before = raw(COMMAND_VERSION, CommandTag.SET_MEMBERS, 4, [], [], 1_700_000_000_000, 1300)
    assert decode_command(before) == SetMembers(4, (), (), 1_700_000_000_000, 1300, None)


def put_with_spec_row(spec_row: list[object]) -> bytes:
    return raw(COMMAND_VERSION, CommandTag.PUT, "ns", "app", spec_row, False, 1, "u", "UTC")


@pytest.mark.parametrize(
    ("spec_row", "message"),
    [
        (["j", None, "1s", None, None, b"", "", None, "sometimes"], "unknown misfire policy"),
        (["j", None, "1s", None, None, "text", "", None, "all"], "data must be bytes"),
        (["j", None, "1s", None, None, b"", "", ["linear", 1, None], "all"], "bad failure policy"),
        (
            ["j", None, "1s", None, None, b"", "", ["constant", -1, None], "all"],
            "bad failure policy",
        ),
        (["j", None, "1s", None, None, b"", "", None], "missing misfire_policy"),
    ],
)
def test_malformed_job_specs_in_a_put_are_codec_errors(
    spec_row: list[object], message: str
) -> None:
    with pytest.raises(CodecError, match=message):
        decode_command(put_with_spec_row(spec_row))


@settings(deadline=None, max_examples=40)
@given(intents)
def test_snapshot_restore_snapshot_is_identical(stream: list[object]) -> None:
    machine = JobMachine(64, Ring)
    for command in materialize(stream):  # type: ignore[arg-type]
        assert decode_command(encode_command(command)) == command
        machine.apply(command)
    snapshot = machine.to_bytes()
    restored = JobMachine.from_bytes(snapshot, Ring)
    assert restored.to_bytes() == snapshot
    assert decode_snapshot(snapshot) == machine.export_state()
    for partition in range(64):
        assert sorted(restored.rows_in_partitions([partition])) == sorted(
            machine.rows_in_partitions([partition])
        )
    assert (restored.epoch, restored.members, restored.app_routes(), restored.watchers()) == (
        machine.epoch,
        machine.members,
        machine.app_routes(),
        machine.watchers(),
    )


def test_load_bytes_replaces_the_state_in_place() -> None:
    source = JobMachine(8, Ring)
    source.apply(COMMANDS[0])
    target = JobMachine(8, Ring)
    target.apply(COMMANDS[1])
    target.load_bytes(source.to_bytes())
    assert target.digest() == source.digest()
    assert target.get("ns", "app", "k") is None and target.get("ns", "app", "j") is not None


def snapshot_with_jobs(rows: list[object], partitions: int = 8) -> bytes:
    """A snapshot of version 2, whose jobs are rows."""
    return raw(2, partitions, 0, [], [], [], [], [], [], [], rows, [], [])


def snapshot_with_columns(*blocks: list[object], partitions: int = 8) -> bytes:
    return raw(SNAPSHOT_VERSION, partitions, 0, [], [], [], [], [], [], [], list(blocks), [], [])


def snapshot_with(apps: list[object], watchers: list[object], live: list[str]) -> bytes:
    return raw(SNAPSHOT_VERSION, 8, 1, [], live, [], [], apps, [], watchers, [], [], [])


def snapshot_with_handoff(past_live: list[object], released: list[object]) -> bytes:
    """A snapshot of epoch 1 with these past epochs and releases."""
    return raw(SNAPSHOT_VERSION, 8, 1, [], ["n1"], past_live, released, [], [], [], [], [], [])


def test_bad_snapshots_are_codec_errors_and_leave_the_machine_alone() -> None:
    source = JobMachine(8, Ring)
    source.apply(COMMANDS[0])
    source.apply(Put("ns", "app", JobSpec("a", due_time="1s"), False, 5, "uid-3", "UTC"))
    rows = unpacked(source.to_bytes())[JOBS_FIELD]
    assert isinstance(rows, list)
    [columns] = msgpack.unpackb(source.to_bytes())[JOBS_FIELD]
    target = JobMachine(8, Ring)
    target.apply(COMMANDS[1])
    before = target.digest()
    bad = [
        b"\x00",
        source.to_bytes() + b"\x00",
        source.to_bytes()[:-3],
        raw(SNAPSHOT_VERSION + 1),
        snapshot_with_jobs(rows[::-1]),
        snapshot_with_jobs([rows[0], rows[0]]),
        snapshot_with_jobs(rows, partitions=0),
        snapshot_with_jobs([[*rows[0][:4], 99, *rows[0][5:]]]),
        snapshot_with_jobs([[*rows[0][:5], ["other", *rows[0][5][1:]], *rows[0][6:]]]),
        snapshot_with_jobs([rows[0][:-1]]),
        # Columns: a count that is not theirs, a column short of a value or one too many, a
        # value of the wrong type, a spec's name not its job's, unknown enum values, a map
        # where a failure policy's array belongs, and blocks out of order.
        snapshot_with_columns([3, *columns[1:]]),
        snapshot_with_columns([columns[0], columns[1][:1], *columns[2:]]),
        snapshot_with_columns([*columns[:-1]]),
        snapshot_with_columns([*columns, []]),
        snapshot_with_columns([columns[0], [1, 2], *columns[2:]]),
        snapshot_with_columns(with_column(columns, "spec.name", ["x", "y"])),
        snapshot_with_columns(with_column(columns, "spec.misfire_policy", ["all", "some"])),
        snapshot_with_columns(with_column(columns, "spec.failure_policy", [None, {"a": 1}])),
        snapshot_with_columns(with_column(columns, "history", [[], [["bad"]]])),
        snapshot_with_columns([columns[0], *columns[1:][::-1]]),
        snapshot_with_columns([0, *[[] for _ in columns[1:]]]),
        snapshot_with_columns(columns, columns),
        # An apps row without its token, and watchers of a dead node or with no streams.
        snapshot_with([["ns", "app", "http://h"]], [], []),
        snapshot_with([], [["ns", "app", "n9", 1]], []),
        snapshot_with([], [["ns", "app", "n1", 0]], ["n1"]),
        snapshot_with([], [["ns", "app", "n1", "1"]], ["n1"]),
        # Past epochs out of order, not before the snapshot's epoch, or too far back; a past
        # epoch or a release that is not a pair of its fields.
        snapshot_with_handoff([[0, ["n1"]], [0, ["n2"]]], []),
        snapshot_with_handoff([[1, ["n1"]]], []),
        snapshot_with_handoff([[-8, ["n1"]]], []),
        snapshot_with_handoff([["n1"]], []),
        snapshot_with_handoff([], [["n1"]]),
        snapshot_with_handoff([], [["n1", 1, 2]]),
    ]
    for data in bad:
        with pytest.raises(CodecError):
            target.load_bytes(data)
    assert target.digest() == before


def with_column(columns: list[object], name: str, values: list[object]) -> list[object]:
    """`columns` with the column `name` (a Job field, or "spec." and a JobSpec field) replaced."""
    job_fields = [field for field in JOB_FIELDS if field != "spec"]
    names = job_fields + [f"spec.{field}" for field in SPEC_FIELDS]
    replaced = list(columns)
    replaced[1 + names.index(name)] = values
    return replaced


def test_jobs_decode_from_columns_and_from_rows_alike() -> None:
    machine = JobMachine(8, Ring)
    for command in COMMANDS[:3]:
        machine.apply(command)
    policy = FailurePolicy(FailureKind.CONSTANT, 1000, 3, 0, 1.0)
    spec = JobSpec("p", schedule="@every 1s", failure_policy=policy)
    machine.apply(Put("ns", "app", spec, False, 5, "uid-p", "UTC"))
    machine.apply(Put("ns", "other", JobSpec("o", due_time="2s"), False, 6, "uid-o", "UTC"))
    snapshot = machine.to_bytes()
    as_rows = msgpack.packb(unpacked(snapshot), use_bin_type=True)
    assert decode_snapshot(as_rows) == decode_snapshot(snapshot) == machine.export_state()
    # The rows read back are the jobs the machine holds, policy and all.
    jobs = {job.name: job for job in map(job_row.unpack, decode_snapshot(snapshot).jobs)}
    assert jobs["p"] == machine.get("ns", "app", "p") and jobs["p"].spec.failure_policy == policy
    assert jobs["o"] == machine.get("ns", "other", "o")


def test_app_tokens_and_watchers_survive_a_snapshot() -> None:
    source = JobMachine(8, Ring)
    source.apply(SetMembers(1, (Member("n1", "r1", "h1"), Member("n2", "r2", "h2")), ("n1", "n2")))
    source.apply(RegisterApp("ns", "app", "http://127.0.0.1:6000", "s3cret"))
    source.apply(WatchersChanged("ns", "app", "n2", 2))
    source.apply(WatchersChanged("ns", "other", "n1", 1))
    restored = JobMachine.from_bytes(source.to_bytes(), Ring)
    assert restored.app_route("ns", "app") == ("http://127.0.0.1:6000", "s3cret")
    assert restored.watchers() == {("ns", "app"): {"n2": 2}, ("ns", "other"): {"n1": 1}}
    assert restored.digest() == source.digest()


def test_snapshots_before_version_4_keep_the_epoch_before_and_its_releases() -> None:
    members = (Member("n1", "r1", "h1"), Member("n2", "r2", "h2"))
    machine = JobMachine(8, Ring)
    machine.apply(SetMembers(1, members, ("n1", "n2")))
    machine.apply(SetMembers(2, members, ("n1",)))
    machine.apply(Release(2, "n1"))
    state = decode_snapshot(machine.to_bytes())
    assert (state.past_live, state.released) == (((1, ("n1", "n2")),), (("n1", 2),))
    as_v2 = unpacked(machine.to_bytes())
    as_v3 = msgpack.unpackb(machine.to_bytes(), use_list=True, raw=False)
    as_v3[0] = 3
    as_v3[5:7] = old_handoff(as_v3[2], as_v3[5], as_v3[6])
    assert as_v3[5:7] == [["n1", "n2"], ["n1"]]
    for fields in (as_v2, as_v3):
        restored = JobMachine.from_bytes(msgpack.packb(fields, use_bin_type=True), Ring)
        assert restored.digest() == machine.digest()
        assert [restored.acking_former_owners(p) for p in range(8)] == [
            machine.acking_former_owners(p) for p in range(8)
        ]


def test_an_empty_machine_round_trips() -> None:
    machine = JobMachine(16, Ring)
    assert JobMachine.from_bytes(machine.to_bytes(), Ring).digest() == machine.digest()
    assert encode_snapshot(decode_snapshot(machine.to_bytes())) == machine.to_bytes()
