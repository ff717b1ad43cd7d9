"""Random but realistic command streams for the job machine's property tests.

Hypothesis draws intents ("ack the third job, as its owner, FAILED"); `materialize` turns them
into concrete commands by playing them against a machine, so acks name real uids and current
occurrences often enough to move jobs along, and stale or foreign ones often enough to be
ignored.
"""

from __future__ import annotations

from typing import NamedTuple

from hypothesis import strategies as st

from cluster.ring import Ring
from store import job_row
from store.codec import (
    Ack,
    AckEntry,
    Barrier,
    Command,
    Delete,
    DeletePrefix,
    Heartbeat,
    Member,
    Outcome,
    Put,
    RegisterApp,
    Release,
    SetMembers,
    UnregisterApp,
    WatchersChanged,
)
from store.failure_policy import FAILURE_POLICY_DROP, FailureKind, FailurePolicy
from store.jobs import JobSpec, MisfirePolicy
from store.machine import JobMachine

START_MS = 1_700_000_000_000
PARTITIONS = 64
NAMES = ("a", "ab", "abc", "b", "ba", "c")
APPS = ("app1", "app2")
NODES = ("n1", "n2", "n3")
SCHEDULES = (None, "@every 1s", "@every 7s", "*/2 * * * * *", "CRON_TZ=Europe/Paris 0 * * * * *")
DUE_TIMES = (None, "0s", "3s", "2023-11-14T22:13:30Z")
POLICIES = (None, FAILURE_POLICY_DROP, FailurePolicy(FailureKind.CONSTANT, 500, 1))


class PutIntent(NamedTuple):
    name: int
    app: int
    schedule: int
    due_time: int
    repeats: int | None
    ttl: str | None
    overwrite: bool
    policy: int
    data: bytes


class AckIntent(NamedTuple):
    job: int
    outcome: Outcome
    as_owner: bool
    current: bool
    later_ms: int


class Other(NamedTuple):
    kind: str
    which: int


Intent = PutIntent | AckIntent | Other

_puts = st.builds(
    PutIntent,
    name=st.integers(0, len(NAMES) - 1),
    app=st.integers(0, len(APPS) - 1),
    schedule=st.integers(0, len(SCHEDULES) - 1),
    due_time=st.integers(0, len(DUE_TIMES) - 1),
    repeats=st.one_of(st.none(), st.integers(1, 4), st.just(0)),
    ttl=st.sampled_from([None, "5s", "20s", "1h"]),
    overwrite=st.booleans(),
    policy=st.integers(0, len(POLICIES) - 1),
    data=st.sampled_from([b"", b'{"k":1}']),
)
_acks = st.builds(
    AckIntent,
    job=st.integers(0, 50),
    outcome=st.sampled_from(Outcome),
    as_owner=st.integers(0, 5).map(bool),
    current=st.integers(0, 5).map(bool),
    later_ms=st.integers(0, 5_000),
)
_others = st.builds(
    Other,
    kind=st.sampled_from(
        [
            *("delete", "prefix", "register", "unregister"),
            *("heartbeat", "members", "barrier", "watchers", "release"),
        ]
    ),
    which=st.integers(0, 7),
)
intents = st.lists(st.one_of(_puts, _acks, _acks, _others), min_size=10, max_size=80)


def materialize(stream: list[Intent]) -> list[Command]:
    """The commands the intents stand for, made against a machine that applies them as it goes."""
    machine = JobMachine(PARTITIONS, Ring)
    commands: list[Command] = [SetMembers(1, _members(), NODES)]
    machine.apply(commands[0])
    now_ms = START_MS
    for number, intent in enumerate(stream):
        now_ms += 250
        command = _command(machine, intent, now_ms, f"uid-{number}")
        machine.apply(command)
        commands.append(command)
    return commands


def _command(machine: JobMachine, intent: Intent, now_ms: int, uid: str) -> Command:
    if isinstance(intent, PutIntent):
        return _put(intent, now_ms, uid)
    if isinstance(intent, AckIntent):
        return _ack(machine, intent, now_ms)
    return _other(machine, intent, now_ms)


def _put(intent: PutIntent, now_ms: int, uid: str) -> Put:
    spec = JobSpec(
        name=NAMES[intent.name],
        schedule=SCHEDULES[intent.schedule],
        due_time=DUE_TIMES[intent.due_time],
        repeats=intent.repeats,
        ttl=intent.ttl,
        data=intent.data,
        data_type="application/json" if intent.data else "",
        failure_policy=POLICIES[intent.policy],
        misfire_policy=MisfirePolicy.ALL,
    )
    return Put("default", APPS[intent.app], spec, intent.overwrite, now_ms, uid, "UTC")


def _ack(machine: JobMachine, intent: AckIntent, now_ms: int) -> Ack:
    every = map(job_row.unpack, machine.rows_in_partitions(range(PARTITIONS)))
    flat = sorted(every, key=lambda job: job.key)
    if not flat:
        return Ack(machine.epoch, "n1", now_ms, ())
    job = flat[intent.job % len(flat)]
    owner = machine.owner(job.partition) or "n1"
    node = owner if intent.as_owner else next(n for n in NODES if n != owner)
    scheduled_ms = job.next_ms if intent.current else job.next_ms - 1
    entry = AckEntry(job.uid, scheduled_ms, intent.outcome)
    # Now and then an ack stamped with the epoch before: a delivery started before a handoff.
    epoch = machine.epoch - 1 if intent.later_ms % 3 == 0 else machine.epoch
    return Ack(epoch, node, now_ms + intent.later_ms, (entry,))


def _other(machine: JobMachine, intent: Other, now_ms: int) -> Command:
    app = APPS[intent.which % len(APPS)]
    match intent.kind:
        case "delete":
            return Delete("default", app, NAMES[intent.which % len(NAMES)])
        case "prefix":
            return DeletePrefix("default", app, NAMES[intent.which % len(NAMES)][:1])
        case "register":
            token = f"token-{intent.which}" if intent.which % 2 else ""
            return RegisterApp("default", app, f"http://127.0.0.1:{8000 + intent.which}", token)
        case "unregister":
            return UnregisterApp("default", app)
        case "heartbeat":
            node = NODES[intent.which % len(NODES)]
            return Heartbeat(node, now_ms, f"127.0.0.1:{7500 + len(node)}", "127.0.0.1:3500")
        case "members":
            live = NODES[: 1 + intent.which % len(NODES)]
            return SetMembers(machine.epoch + 1, _members(), live)
        case "watchers":
            # Counts 0..3 on any node, live or not: the machine must refuse the dead ones.
            return WatchersChanged("default", app, NODES[intent.which % 3], intent.which // 2)
        case "release":
            # For the current epoch or, now and then, a stale one.
            epoch = machine.epoch - intent.which % 2
            return Release(epoch, NODES[intent.which % len(NODES)])
    return Barrier()


def _members() -> tuple[Member, ...]:
    return tuple(
        Member(node, f"127.0.0.1:{7500 + i}", f"127.0.0.1:{3500 + i}")
        for i, node in enumerate(NODES)
    )
