"""Named fault points: a test hook that makes a supervised task raise, to prove it is supervised.

Each supervised piece of work calls `fault_point(name)` at the top of every iteration of its
loop (or every call, for work that runs as callbacks). Nothing is armed in production, and then
a fault point is one truth test of an empty dict. Tests arm points in-process with `arm()`, and
tests of real node processes through the environment, which a node reads once at start
(`arm_from_environment`):

    TOCK_TEST_FAULTS=engine:3,announcer:1,membership:always

`NAME:N` makes the next N calls of point NAME raise `InjectedFault`; `NAME:always` makes every
call raise (a crash loop). The names are those the tasks are supervised under: `engine`,
`acks`, `membership`, `announcer`, `forward`, `batcher`, `dump`.
"""

from __future__ import annotations

import os

from store.errors import ValidationError

ENVIRONMENT_VARIABLE = "TOCK_TEST_FAULTS"
ALWAYS = -1

# Point name -> calls left to fail (ALWAYS: every call). Empty unless a test armed something.
_armed: dict[str, int] = {}


class InjectedFault(RuntimeError):
    """Raised by an armed fault point. Deliberately not a TockError: the tasks treat TockErrors
    as expected conditions, and an injected fault must look like an unexpected bug."""


def fault_point(name: str) -> None:
    """Raise InjectedFault if the point `name` is armed; otherwise do nothing."""
    if _armed:
        _fire(name)


def _fire(name: str) -> None:
    left = _armed.get(name)
    if left is None:
        return
    if left != ALWAYS:
        if left <= 1:
            del _armed[name]
        else:
            _armed[name] = left - 1
    raise InjectedFault(f"fault injected at {name!r} (test hook {ENVIRONMENT_VARIABLE})")


def arm(spec: str) -> None:
    """Arm the points of a `NAME:N,NAME:always` spec, replacing whatever was armed before."""
    armed: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, sep, count = item.partition(":")
        if not sep or not name:
            raise ValidationError(f"{ENVIRONMENT_VARIABLE}: {item!r} is not NAME:N or NAME:always")
        if count == "always":
            armed[name] = ALWAYS
        elif count.isdigit() and int(count) > 0:
            armed[name] = int(count)
        else:
            raise ValidationError(f"{ENVIRONMENT_VARIABLE}: the count of {name!r} must be >= 1")
    _armed.clear()
    _armed.update(armed)


def disarm() -> None:
    _armed.clear()


def arm_from_environment() -> None:
    """Arm what TOCK_TEST_FAULTS names; a node calls this once at start."""
    arm(os.environ.get(ENVIRONMENT_VARIABLE, ""))
