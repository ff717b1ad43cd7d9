"""check_writes, the verdict of the fault tests, rejects each kind of damage it names."""

from __future__ import annotations

import pytest

from tests.integration.raft_writer import WriteLog, check_writes


def a_log() -> WriteLog:
    """Write 0 acked, 1 refused, 2 of unknown outcome, two keys each."""
    keys = {w: [f"w{w}k0", f"w{w}k1"] for w in range(3)}
    return WriteLog(keys=keys, acked={0}, refused={1}, unknown={2})


def test_acked_writes_and_wholly_applied_unknown_ones_pass() -> None:
    with_unknown = {"w0k0": 0, "w0k1": 0, "w2k0": 2, "w2k1": 2}
    without = {"w0k0": 0, "w0k1": 0}
    check_writes(a_log(), {"n0": with_unknown, "n1": dict(with_unknown)})
    check_writes(a_log(), {"n0": without, "n1": dict(without)})


@pytest.mark.parametrize(
    ("data", "complaint"),
    [
        ({"w0k0": 0}, "lost 1 acked writes"),
        ({"w0k0": 0, "w0k1": 2}, "lost 1 acked writes"),
        ({"w0k0": 0, "w0k1": 0, "w1k0": 1, "w1k1": 1}, "applied 1 refused writes"),
        ({"w0k0": 0, "w0k1": 0, "w2k0": 2}, "holds half of writes"),
        ({"w0k0": 0, "w0k1": 0, "w7k0": 7, "w7k1": 7}, "never issued"),
    ],
)
def test_each_kind_of_damage_is_named(data: dict[str, int], complaint: str) -> None:
    with pytest.raises(AssertionError, match=complaint):
        check_writes(a_log(), {"n0": data})


def test_nodes_that_differ_are_told_apart() -> None:
    acked_only = {"w0k0": 0, "w0k1": 0}
    with pytest.raises(AssertionError, match="n1 diverged from n0"):
        check_writes(a_log(), {"n0": acked_only, "n1": {**acked_only, "w2k0": 2, "w2k1": 2}})
