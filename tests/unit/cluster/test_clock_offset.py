"""cluster/clock_offset.py: a node's offset from the median clock of the live members, from
heartbeat samples: named situations, then a property over random clocks and latencies."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from cluster.clock_offset import ClockOffsetEstimator

LIVE = ("n1", "n2", "n3")
LATENCY_MS = 7


def estimator_with(
    clocks_ms: dict[str, int], me: str = "n1", now_s: float = 100.0
) -> ClockOffsetEstimator:
    """Samples as node `me` sees them: each member's heartbeat sent at true time 0 on its own
    clock, applied LATENCY_MS later on ours."""
    estimator = ClockOffsetEstimator(me, sample_age_s_max=2.0)
    for node, clock_ms in clocks_ms.items():
        estimator.observe(node, stamp_ms=clock_ms, now_ms=clocks_ms[me] + LATENCY_MS, now_s=now_s)
    return estimator


def test_agreeing_clocks_give_no_offset_whatever_the_latency() -> None:
    assert estimator_with({"n1": 0, "n2": 0, "n3": 0}).offset_ms(LIVE, 100.0) == 0


def test_a_node_ahead_sees_itself_ahead() -> None:
    assert estimator_with({"n1": 3000, "n2": 0, "n3": 0}).offset_ms(LIVE, 100.0) == 3000
    assert estimator_with({"n1": -3000, "n2": 0, "n3": 0}).offset_ms(LIVE, 100.0) == -3000


def test_another_nodes_wild_clock_does_not_move_the_median() -> None:
    assert estimator_with({"n1": 0, "n2": 3000, "n3": 0}).offset_ms(LIVE, 100.0) == 0


def test_delayed_and_replayed_heartbeats_do_not_make_a_clock_look_behind() -> None:
    estimator = estimator_with({"n1": 0, "n2": 0, "n3": 0})
    # n2's heartbeats from the log's replay, and one delayed by a slow commit, in the window.
    for late_ms in (12_000, 9_000, 400):
        estimator.observe("n2", stamp_ms=0, now_ms=late_ms, now_s=100.0)
        estimator.observe("n1", stamp_ms=0, now_ms=late_ms, now_s=100.0)
    assert estimator.offset_ms(LIVE, 100.0) == 0


def test_two_nodes_agree_on_which_of_them_is_the_reference() -> None:
    pair = ("n1", "n2")
    early = estimator_with({"n1": 0, "n2": 600}, me="n1").offset_ms(pair, 100.0)
    late = estimator_with({"n1": 0, "n2": 600}, me="n2").offset_ms(pair, 100.0)
    assert (early, late) == (0, 600)


def test_no_verdict_without_fresh_samples_from_a_majority() -> None:
    alone = estimator_with({"n1": 0})
    assert alone.offset_ms(LIVE, 100.0) is None
    assert alone.offset_ms(("n1",), 100.0) == 0
    stale = estimator_with({"n1": 0, "n2": 0, "n3": 0}, now_s=90.0)
    assert stale.offset_ms(LIVE, 100.0) is None


@given(
    st.dictionaries(st.sampled_from(["n2", "n3", "n4", "n5"]), st.integers(-200, 200), min_size=2),
    st.integers(-10_000, 10_000),
)
def test_the_offset_is_this_clock_minus_the_median_of_the_live_clocks(
    others: dict[str, int], mine: int
) -> None:
    clocks = {"n1": mine, **others}
    live = tuple(sorted(clocks))
    offset = estimator_with(clocks).offset_ms(live, 100.0)
    ordered = sorted(clocks.values())
    # The lower median with an even count: two nodes agree on which of them is the reference.
    assert offset == mine - ordered[(len(ordered) - 1) // 2]


def test_an_answer_is_worked_out_again_once_a_sample_it_counted_ages_out() -> None:
    estimator = estimator_with({"n1": 50, "n2": 0, "n3": 0}, now_s=100.0)
    assert estimator.offset_ms(LIVE, 101.0) == 50
    estimator.observe("n1", stamp_ms=50, now_ms=50 + LATENCY_MS, now_s=101.5)
    assert estimator.offset_ms(LIVE, 101.9) == 50
    # n2's and n3's samples are older than 2 s: only this node's is fresh.
    assert estimator.offset_ms(LIVE, 102.1) is None


# A step: a sample (node, its difference in ms) taken, or a question asked of `members`; either
# after `advance_s` more seconds.
Step = tuple[float, tuple[str, int] | tuple[str, ...]]


@given(
    st.lists(
        st.tuples(
            st.floats(0.0, 3.0),
            st.one_of(
                st.tuples(st.sampled_from(["n1", "n2", "n3"]), st.integers(-300, 300)),
                st.sampled_from([LIVE, ("n1", "n2"), ("n2", "n3")]),
            ),
        ),
        max_size=60,
    )
)
def test_a_remembered_answer_is_the_answer_worked_out_afresh(steps: list[Step]) -> None:
    """The estimator answers again without working it out until a sample is taken or one it
    counted ages out: every answer equals that of an estimator fed the same samples and asked
    once."""
    estimator = ClockOffsetEstimator("n1", sample_age_s_max=2.0)
    taken: list[tuple[str, int, float]] = []
    now_s = 100.0
    for advance_s, what in steps:
        now_s += advance_s
        if len(what) == 2 and isinstance(what[1], int):
            node, difference_ms = what
            estimator.observe(node, stamp_ms=difference_ms, now_ms=0, now_s=now_s)
            taken.append((node, difference_ms, now_s))
            continue
        members = tuple(m for m in what if isinstance(m, str))
        afresh = ClockOffsetEstimator("n1", sample_age_s_max=2.0)
        for node, difference_ms, at_s in taken:
            afresh.observe(node, stamp_ms=difference_ms, now_ms=0, now_s=at_s)
        assert estimator.offset_ms(members, now_s) == afresh.offset_ms(members, now_s)
