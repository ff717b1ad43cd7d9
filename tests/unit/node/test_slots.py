"""Slots: the bound holds, waiters are served in order, and no cancellation loses or leaks a
slot; a property drives random holders, releases and cancellations against a model."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.slots import Slots


def run(test: Coroutine[Any, Any, None]) -> None:
    async def bounded() -> None:
        async with asyncio.timeout(10):
            await test

    asyncio.run(bounded())


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


class Holder:
    """A task that takes a slot and holds it until told to let go."""

    def __init__(self, slots: Slots, order: list[int], number: int) -> None:
        self.holding = False
        self.go = asyncio.Event()
        self.task = asyncio.ensure_future(self._hold(slots, order, number))

    async def _hold(self, slots: Slots, order: list[int], number: int) -> None:
        async with slots:
            order.append(number)
            self.holding = True
            try:
                await self.go.wait()
            finally:
                self.holding = False


def test_waiters_are_served_first_come_first_served_within_the_bound() -> None:
    async def go() -> None:
        slots, order = Slots(2), list[int]()
        holders = [Holder(slots, order, n) for n in range(6)]
        await settle()
        assert order == [0, 1] and slots.free == 0
        holders[1].go.set()
        await settle()
        assert order == [0, 1, 2]
        for holder in holders:
            holder.go.set()
        await asyncio.gather(*(h.task for h in holders))
        assert order == [0, 1, 2, 3, 4, 5] and slots.free == 2

    run(go())


def test_a_waiter_cancelled_before_or_after_its_turn_costs_no_slot() -> None:
    async def go() -> None:
        slots, order = Slots(1), list[int]()
        first, waiting, handed = (Holder(slots, order, n) for n in range(3))
        await settle()
        waiting.task.cancel()  # cancelled while it waits: skipped at its turn
        await settle()
        first.go.set()
        # The slot goes past the cancelled waiter to the next one; cancel that one in the same
        # step, after the hand-over and before it runs: it passes the slot on.
        await asyncio.sleep(0)
        handed.task.cancel()
        await settle()
        assert order == [0] and slots.free == 1
        late = Holder(slots, order, 3)
        await settle()
        assert order == [0, 3]
        late.go.set()
        await late.task
        assert slots.free == 1

    run(go())


def test_zero_or_fewer_slots_is_refused() -> None:
    with pytest.raises(ValueError, match="slots must be positive"):
        Slots(0)


@settings(max_examples=150, deadline=None)
@given(
    size=st.integers(1, 4),
    steps=st.lists(st.tuples(st.sampled_from(["add", "release", "cancel"]), st.integers(0, 30))),
)
def test_the_bound_holds_and_every_slot_comes_back(size: int, steps: list[tuple[str, int]]) -> None:
    async def go() -> None:
        slots, order = Slots(size), list[int]()
        holders: list[Holder] = []
        for action, pick in steps:
            if action == "add":
                holders.append(Holder(slots, order, len(holders)))
            elif holders:
                holder = holders[pick % len(holders)]
                if action == "release":
                    holder.go.set()
                else:
                    holder.task.cancel()
            if pick % 2:
                await asyncio.sleep(0)  # one step: hand-overs and cancellations interleave
            else:
                await settle()
            held = sum(h.holding for h in holders)
            assert held <= size
            # Served in arrival order: whoever got a slot came before every one still waiting.
            assert order == sorted(order)
        for holder in holders:
            holder.go.set()
        await asyncio.gather(*(h.task for h in holders), return_exceptions=True)
        assert slots.free == size

    run(go())
