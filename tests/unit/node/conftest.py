"""The apps an engine test's harness delivers to (test_engine.py, test_engine_operations.py).

`sink` answers as the requesting test module's `SCRIPTS` say: per job name, a function from the
call's number (1-based) to its HTTP status; 200 for a job without a script. `slow_sink` answers
200 after `SLOW_S`, so that a delivery to it stays in flight that long. A module that defines a
fixture of the same name uses its own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.support.sink import Sink
from tests.unit.node.engine_harness import SLOW_S


@pytest.fixture(scope="module")
def sink(request: pytest.FixtureRequest) -> Iterator[Sink]:
    scripts: dict[str, Callable[[int], int]] = request.module.SCRIPTS

    def scripted(name: str, call_number: int) -> int:
        script = scripts.get(name)
        return 200 if script is None else script(call_number)

    app = Sink(status_for=scripted).start()
    yield app
    app.stop()


@pytest.fixture(scope="module")
def slow_sink() -> Iterator[Sink]:
    app = Sink(delay_s=SLOW_S).start()
    yield app
    app.stop()
