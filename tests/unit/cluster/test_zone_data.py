"""A member computing times with other time-zone data is named in the log, once per version."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any, cast

import pytest

from cluster.membership import Membership, MembershipConfig
from cluster.ring import Ring
from store.clock import FakeClock
from store.codec import Heartbeat, Member
from store.machine import JobMachine
from store.raft.store import RaftStore
from store.schedule import ZONE_DATA_VERSION
from store.shared_machine import SharedMachine

ME = Member("n1", "127.0.0.1:7500", "127.0.0.1:3500")


def never_spawn(name: str, factory: Callable[[], Coroutine[Any, Any, None]]) -> asyncio.Task[None]:
    raise AssertionError(f"the zone-data comparison starts no task ({name})")


def test_other_zone_data_is_reported_once(caplog: pytest.LogCaptureFixture) -> None:
    machine = JobMachine(16, Ring)
    for node, version in (("n1", ZONE_DATA_VERSION), ("n2", ZONE_DATA_VERSION), ("n3", "2019.1")):
        assert machine.apply(Heartbeat(node, 1, f"{node}:7500", f"{node}:3500", version)).ok
    # The comparison reads only the machine: no store is needed.
    membership = Membership(
        ME,
        cast(RaftStore, None),
        SharedMachine(machine),
        FakeClock(),
        MembershipConfig(heartbeat_s=0.25, lease_s=1.0, dead_s=1.5),
        spawn=never_spawn,
        healthy=lambda: True,
    )
    with caplog.at_level(logging.WARNING, logger="cluster.membership"):
        membership._compare_zone_data()
        membership._compare_zone_data()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "n3 uses time-zone data 2019.1" in warnings[0] and ZONE_DATA_VERSION in warnings[0]


def test_every_node_reads_the_pinned_zone_data_not_the_hosts() -> None:
    import zoneinfo

    assert zoneinfo.TZPATH == ()
    assert zoneinfo.ZoneInfo("Europe/Berlin").key == "Europe/Berlin"
