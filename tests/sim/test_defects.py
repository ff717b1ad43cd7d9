"""The simulation finds defects that were once in the real code, each put back for one test.

Each test re-introduces one fixed defect with monkeypatch (never a switch in the product) and
asserts that some seed among a bounded number breaks a guarantee.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import pytest

from node.engine import verdicts
from node.engine.acks import PendingAck
from node.engine.verdicts import Settlement
from store.machine import JobMachine
from tests.sim import simulation
from tests.sim.node import SimNode
from tests.sim.simulation import simulate

SEEDS_MAX = 1000


@pytest.fixture(autouse=True)
def _quiet() -> None:
    logging.disable(logging.CRITICAL)


def _first_violation(kind: str) -> tuple[int, str]:
    """The first seed whose run has a violation starting with `kind`, and that violation."""
    for seed in range(SEEDS_MAX):
        outcome = simulate(seed)
        found = [v for v in outcome.violations if v.startswith(kind)]
        if found:
            print(f"sim: seed {seed} found it: {found[0]}")
            return seed, found[0]
    raise AssertionError(f"no seed of {SEEDS_MAX} found a {kind!r} violation")


def test_firing_before_the_previous_owner_released(monkeypatch: pytest.MonkeyPatch) -> None:
    # The new owner of a partition no longer waits for the previous owner's Release: hand-off
    # (cluster/handoff.py) reads every former owner as released.
    monkeypatch.setattr(JobMachine, "acking_former_owners", lambda self, partition: frozenset())
    _first_violation("duplicate without a fault")


def test_ending_the_holds_of_acks_of_unknown_outcome(monkeypatch: pytest.MonkeyPatch) -> None:
    # An ack whose outcome is unknown ends its job's hold (re-read, fired again), not re-sent.
    def end_every_hold(pendings: Sequence[PendingAck], epoch: int) -> Settlement:
        return Settlement(end=tuple(pendings))

    monkeypatch.setattr(verdicts, "resend_idempotent", end_every_hold)
    _first_violation("duplicate without a fault")


def test_stopping_the_cluster_without_quiescing_first(monkeypatch: pytest.MonkeyPatch) -> None:
    # A clean stop of the whole cluster stops each node in turn, none quiesced beforehand.
    async def no_quiesce_first(nodes: list[SimNode]) -> None:
        return None

    monkeypatch.setattr(simulation, "quiesce_all", no_quiesce_first)
    _first_violation("duplicate without a fault")
