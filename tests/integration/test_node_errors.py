"""The Jobs API's errors and read-your-writes, across the nodes of a real 3-process cluster.

tests/unit/node/test_api.py checks every message against one node; here the question is the
cluster's: a request refused on one node leaves no trace on any node and takes none down, a
write acknowledged by one node is seen at once on every other, and the answers that need a
cluster to happen (409 across nodes, 503 without a quorum) come over HTTP; the 401s and 403s
of token mode are in test_access.py.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.node_helpers import (
    Answer,
    App,
    Rig,
    call,
    running_rig,
)

NODES = (1, 2, 3)
DATA_BYTES_MAX = 1024 * 1024
BODY_BYTES_MAX = 4 * 1024 * 1024
# A write without a quorum gives up after the node's propose timeout (5 s) and answers 503.
NO_QUORUM_ANSWER_S_MAX = 8.0


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    with running_rig(tmp_path_factory.mktemp("errors")) as rig:
        yield rig


@pytest.fixture
def app(rig: Rig) -> App:
    return rig.app()


def assert_error(answer: Answer, status: int, code: str, message: str) -> None:
    assert answer.status == status, answer
    assert answer.json["errorCode"] == code, answer.json
    assert message in answer.json["message"], answer.json


def assert_no_trace(app: App, name: str) -> None:
    """No node holds the job or any other job of the app, and every node still serves."""
    for node in NODES:
        assert app.names(node) == [], f"n{node} holds a job"
        assert app.get(name, node).status in (400, 404)
        assert app.call(node, "GET", "/v1.0/healthz").status == 204


BAD_CREATES: list[tuple[str, object, int, str, str]] = [
    ("", {"dueTime": "1h"}, 400, "DAPR_SCHEDULER_JOB_NAME_EMPTY", "Name is empty"),
    ("..", {"dueTime": "1h"}, 400, "DAPR_SCHEDULER_SCHEDULE_JOB", "must not be"),
    ("x", {}, 400, "DAPR_SCHEDULER_SCHEDULE_EMPTY", "either a due time or a schedule"),
    ("x", {"schedule": "61 * * * * *"}, 400, "DAPR_SCHEDULER_SCHEDULE_JOB", ""),
    ("x", {"schedule": "@every 1x"}, 400, "DAPR_SCHEDULER_SCHEDULE_JOB", ""),
    ("x", {"dueTime": "tomorrow"}, 400, "DAPR_SCHEDULER_SCHEDULE_JOB", "due time"),
    ("x", {"dueTime": "1h", "repeats": 3}, 400, "DAPR_SCHEDULER_SCHEDULE_JOB", "schedule"),
    (
        "x",
        {"dueTime": "2030-01-02T00:00:00Z", "ttl": "2030-01-01T00:00:00Z", "schedule": "@daily"},
        400,
        "DAPR_SCHEDULER_SCHEDULE_JOB",
        "ttl must be greater than due time",
    ),
    ("x", {"name": "x", "dueTime": "1h"}, 400, "DAPR_SCHEDULER_JOB_NAME", "in the url only"),
    ("x", b'{"dueTime": ', 400, "ERR_MALFORMED_REQUEST", "failed deserializing HTTP body"),
    (
        "x",
        {"dueTime": "1h", "data": "d" * DATA_BYTES_MAX},
        400,
        "DAPR_SCHEDULER_SCHEDULE_JOB",
        "data is too large",
    ),
    ("x", {"dueTime": "1h", "data": "d" * BODY_BYTES_MAX}, 413, "ERR_REQUEST_TOO_LARGE", ""),
]


@pytest.mark.parametrize(
    ("index", "name", "body", "status", "code", "message"),
    [(i, *case) for i, case in enumerate(BAD_CREATES)],
)
def test_a_refused_create_leaves_no_trace_on_any_node(
    app: App, index: int, name: str, body: object, status: int, code: str, message: str
) -> None:
    node = NODES[index % len(NODES)]
    assert_error(app.call(node, "POST", f"/v1.0/jobs/{name}", body), status, code, message)
    assert_no_trace(app, name)


def test_a_job_created_on_one_node_is_read_at_once_on_every_other(app: App) -> None:
    for node in NODES:
        name = app.name(f"from-n{node}")
        app.create(name, {"schedule": "@daily", "data": node}, node=node)
        for other in NODES:
            answer = app.get(name, other)
            assert answer.status == 200, (node, other, answer)
            assert answer.json["data"] == node
    assert sorted(app.names(3)) == sorted(app.name(f"from-n{node}") for node in NODES)


def test_a_delete_on_one_node_is_seen_at_once_on_every_other(app: App) -> None:
    name = app.name("doomed")
    app.create(name, {"schedule": "@daily"}, node=1)
    assert app.call(2, "DELETE", f"/v1.0/jobs/{name}").status == 204
    for node in NODES:
        assert_error(app.get(name, node), 404, "DAPR_SCHEDULER_JOB_NOT_FOUND", name)
    # Deleting what is not there is not an error, on any node.
    assert all(app.call(n, "DELETE", f"/v1.0/jobs/{name}").status == 204 for n in NODES)


def test_a_second_create_on_another_node_conflicts_unless_overwrite_which_resets_the_count(
    rig: Rig, app: App
) -> None:
    name = app.name("twice")
    app.create(name, {"schedule": "@every 1s", "data": "first"}, node=1)
    first = rig.sink.wait_for(name, 2, timeout_s=6)
    assert len(first) >= 2
    again = app.call(2, "POST", f"/v1.0/jobs/{name}", {"schedule": "@every 1s"})
    assert_error(again, 409, "DAPR_SCHEDULER_SCHEDULE_JOB", name)
    assert app.get(name, 3).json["data"] == "first"

    replaced = {"schedule": "@every 1h", "data": "second", "overwrite": True}
    assert app.call(3, "POST", f"/v1.0/jobs/{name}", replaced).status == 204
    job = app.get(name, 1).json
    assert (job["schedule"], job["data"]) == ("@every 1h", "second")
    assert job["status"]["count"] == 0 and job["status"]["lastTrigger"] is None
    # The old schedule stops with the overwrite (at most one delivery was already in flight).
    count = len(rig.sink.calls_for(name))
    time.sleep(2.5)
    assert len(rig.sink.calls_for(name)) <= count + 1


def test_a_missing_job_is_a_404_on_every_node(app: App) -> None:
    for node in NODES:
        assert_error(app.get("ghost", node), 404, "DAPR_SCHEDULER_JOB_NOT_FOUND", "ghost")


def test_without_a_quorum_a_write_is_a_503_with_retry_after(tmp_path: Path) -> None:
    with running_rig(tmp_path) as rig:
        rig.cluster.kill("n2")
        rig.cluster.kill("n3")
        started = time.monotonic()
        answer = call(rig.url(1) + "/v1.0/jobs/lost", "POST", {"dueTime": "1h"})
        assert time.monotonic() - started < NO_QUORUM_ANSWER_S_MAX
        assert answer.status == 503, answer
        assert answer.json["errorCode"] in ("ERR_UNAVAILABLE", "ERR_OUTCOME_UNKNOWN")
        assert int(answer.headers["Retry-After"]) >= 1
        assert call(rig.url(1) + "/v1.0/healthz").status == 204
