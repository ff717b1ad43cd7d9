"""The fault-point test hook: armed from a spec, it raises as many times as told, then never."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from store import fault_points
from store.errors import ValidationError
from store.fault_points import InjectedFault, arm, arm_from_environment, disarm, fault_point


@pytest.fixture(autouse=True)
def disarmed() -> Iterator[None]:
    disarm()
    yield
    disarm()


def raises(name: str) -> bool:
    try:
        fault_point(name)
    except InjectedFault:
        return True
    return False


def test_an_unarmed_point_does_nothing() -> None:
    assert not raises("engine")


def test_a_counted_point_raises_that_many_times_then_never() -> None:
    arm("engine:2, announcer:1")
    assert [raises("engine") for _ in range(4)] == [True, True, False, False]
    assert [raises("announcer") for _ in range(2)] == [True, False]
    assert not raises("membership")


def test_an_always_point_raises_every_time() -> None:
    arm("engine:always")
    assert all(raises("engine") for _ in range(50))


def test_the_environment_arms_points_and_an_empty_one_disarms(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(fault_points.ENVIRONMENT_VARIABLE, "dump:1")
    arm_from_environment()
    assert raises("dump") and not raises("dump")
    arm("engine:always")
    monkeypatch.delenv(fault_points.ENVIRONMENT_VARIABLE)
    arm_from_environment()
    assert not raises("engine")


@pytest.mark.parametrize("spec", ["engine", "engine:0", "engine:-1", ":3", "engine:often"])
def test_a_malformed_spec_is_refused_and_arms_nothing(spec: str) -> None:
    with pytest.raises(ValidationError):
        arm(spec)
    assert not raises("engine")
