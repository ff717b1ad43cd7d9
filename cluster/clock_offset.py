"""How far this node's wall clock is from the cluster's: the median of the live members' clocks,
estimated from their heartbeats. Pure.

Every heartbeat carries its sender's wall time when it was sent. When a node applies one, the
difference between that stamp and its own wall clock at that moment is the sender's offset from
this node minus the delay from stamp to apply (commit and apply, a few milliseconds when all is
well, far more under load or for heartbeats replayed from the log at start). Delay only ever
makes the difference smaller, so of a member's recent samples the largest is the best estimate
(the minimum-delay filter of NTP). The node's own heartbeats give the same estimate with an
offset of zero. So this node's offset from the median clock is its own best difference minus the
median of the members' best differences (its own included): one member with a wild clock moves
the median by nothing. Every member that heartbeats counts, those standing by included (a node
whose clock is off goes on heartbeating, standing by): counting only the live members would let
a wrong clock that made the others stand by become the cluster's. With an even number of
samples the lower median is the reference, so that two nodes agree on which of them it is.

A node whose offset exceeds the bound stops firing, gives up leadership and is not ready
(cluster/membership.py): a trigger it fired would reach the app early (or late) by that offset.
"""

from __future__ import annotations

import statistics
from collections import deque

# Samples kept per member: more than a window's worth of heartbeats.
SAMPLES_PER_MEMBER_MAX = 64


class ClockOffsetEstimator:
    """Recent heartbeat samples of each member, and this node's offset from their median."""

    def __init__(self, me: str, sample_age_s_max: float) -> None:
        assert sample_age_s_max > 0
        self._me = me
        self._sample_age_s_max = sample_age_s_max
        # node -> (the sender's stamp minus this node's wall clock at apply (ms), when (s))
        self._samples: dict[str, deque[tuple[int, float]]] = {}
        # The last answer, its members, when it was worked out and until when it holds: the
        # engine asks before every trigger it fires and after every delivery (~20 us each
        # worked out), and the answer changes only with a sample taken or one aged out.
        self._answer: tuple[tuple[str, ...], float, float, int | None] | None = None

    def observe(self, node: str, stamp_ms: int, now_ms: int, now_s: float) -> None:
        """A heartbeat of `node` stamped `stamp_ms` applied here at wall `now_ms`, monotonic
        `now_s`."""
        samples = self._samples.setdefault(node, deque(maxlen=SAMPLES_PER_MEMBER_MAX))
        samples.append((stamp_ms - now_ms, now_s))
        self._answer = None

    def offset_ms(self, members: tuple[str, ...], now_s: float) -> int | None:
        """This node's clock minus the median clock of the members, in ms; None until fresh
        samples from this node and from more than half of the members are in."""
        answer = self._answer
        if answer is not None and answer[0] == members and answer[1] <= now_s < answer[2]:
            return answer[3]
        voters = set(members) | {self._me}
        best: dict[str, int] = {}
        # The answer holds until the first of the samples it counts ages out.
        holds_until = float("inf")
        for node in voters:
            recent = [
                (difference_ms, taken_s)
                for difference_ms, taken_s in self._samples.get(node, ())
                if now_s - taken_s <= self._sample_age_s_max
            ]
            if recent:
                best[node] = max(difference_ms for difference_ms, _ in recent)
                oldest_s = min(taken_s for _, taken_s in recent)
                holds_until = min(holds_until, oldest_s + self._sample_age_s_max)
        own = best.get(self._me)
        offset = None
        if own is not None and 2 * len(best) > len(voters):
            offset = round(own - statistics.median_low(best.values()))
        self._answer = (members, now_s, holds_until, offset)
        return offset
