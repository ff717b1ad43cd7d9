"""cluster/membership.py: a clock offset stops firing at once, and stands the node by (its
partitions move, it is not ready) only once it has lasted `clock_offset_persist_s`.

Method: a Membership on a fake clock, its heartbeat samples fed as the store would, by applying
real Heartbeat commands to a real machine and handing the results to the membership. The other
members' heartbeats arrive late for a while (a busy node applies them late), which reads as an
offset; the node must not fire meanwhile, and must not stand by unless it lasts.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from cluster.membership import Membership, MembershipConfig
from cluster.ring import Ring
from store.clock import FakeClock
from store.codec import Heartbeat, Member, SetMembers, encode_command
from store.log import Applied
from store.machine import JobMachine
from store.schedule import ZONE_DATA_VERSION
from store.shared_machine import SharedMachine

MEMBERS = tuple(
    Member(f"n{k}", f"127.0.0.1:{7500 + k}", f"127.0.0.1:{3500 + k}") for k in (1, 2, 3)
)
CONFIG = MembershipConfig()
LATE_MS = 1000


class ReadyStore:
    """What the membership reads of its store here: ready, and nothing else called."""

    ready = True

    def subscribe(self, _subscriber: object) -> Callable[[], None]:
        return lambda: None


class Node:
    def __init__(self) -> None:
        self.clock = FakeClock()
        self.machine = SharedMachine(JobMachine(8, Ring))
        self._index = 0
        self._apply(SetMembers(1, MEMBERS, tuple(m.id for m in MEMBERS)))
        self.membership = Membership(
            MEMBERS[0],
            ReadyStore(),  # type: ignore[arg-type]
            self.machine,
            self.clock,
            CONFIG,
            spawn=_no_spawn,
            healthy=lambda: True,
        )

    def _apply(self, command: object) -> Applied:
        self._index += 1
        data = encode_command(command)  # type: ignore[arg-type]
        return Applied(self._index, data, self.machine.apply_command(data))

    def beat(self, others_late_ms: int) -> None:
        """One round of heartbeats applied now: this node's on time, the others' late."""
        now_ms = self.clock.wall_ms()
        for member in MEMBERS:
            late = 0 if member is MEMBERS[0] else others_late_ms
            heartbeat = Heartbeat(
                member.id, now_ms - late, member.raft, member.http, ZONE_DATA_VERSION, False
            )
            self.membership._on_applied(self._apply(heartbeat))
        self.membership._check_clock()

    def run(self, seconds: float, others_late_ms: int) -> list[tuple[bool, bool]]:
        """Heartbeat rounds for `seconds`; per round, (fires by its clock, standing by)."""
        seen = []
        for _ in range(round(seconds / CONFIG.heartbeat_s)):
            self.clock.advance(CONFIG.heartbeat_s)
            self.beat(others_late_ms)
            standing_by = self.membership.clock_not_ready_reason() is not None
            seen.append((self.membership._clock_known_good(), standing_by))
        return seen


def _no_spawn(_name: str, _run: Callable[[], Coroutine[Any, Any, None]]) -> asyncio.Task[None]:
    raise AssertionError("not started in this test")


def test_a_short_spell_of_late_heartbeats_stops_firing_but_moves_nothing() -> None:
    node = Node()
    assert all(good and not by for good, by in node.run(3.0, others_late_ms=0))
    # Two seconds of late heartbeats: once the good samples have aged out, the estimate says
    # +1000 ms; the node does not fire by its clock, and does not stand by.
    spell = node.run(2.0 + CONFIG.clock_sample_age_s_max, others_late_ms=LATE_MS)
    assert not spell[-1][0], "a clock read as off must stop firing at once"
    assert not any(by for _, by in spell)
    after = node.run(1.0, others_late_ms=0)
    assert after[-1] == (True, False)


def test_an_offset_that_lasts_stands_the_node_by_and_ends_when_the_clock_is_back() -> None:
    node = Node()
    node.run(3.0, others_late_ms=0)
    beyond = node.run(CONFIG.clock_sample_age_s_max + CONFIG.clock_offset_persist_s + 1.0, LATE_MS)
    first_off = next(k for k, (good, _) in enumerate(beyond) if not good)
    first_standing_by = next(k for k, (_, by) in enumerate(beyond) if by)
    waited_s = (first_standing_by - first_off) * CONFIG.heartbeat_s
    assert CONFIG.clock_offset_persist_s <= waited_s <= CONFIG.clock_offset_persist_s + 0.5
    reason = node.membership.clock_not_ready_reason()
    assert reason is not None and "+1000 ms" in reason
    back = node.run(CONFIG.clock_sample_age_s_max + 0.5, others_late_ms=0)
    assert back[-1] == (True, False)
