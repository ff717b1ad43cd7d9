"""The job operation routes over real HTTP against a real one-node Raft store: pause, resume and
run now (204, idempotent, 404 for no such job), a job's history and the dead letters (list,
redrive, forget) with their success and error answers. No engine runs here, so the attempts that
make history and dead letters are the acks an engine would send, put through the log as such."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from urllib.parse import quote

import pytest

from store.codec import EntryKind, Outcome
from store.schedule import format_rfc3339_ms
from tests.unit.node.api_node import (
    ACK_AFTER_MS,
    ACK_DURATION_MS,
    ACK_STARTED_AFTER_MS,
    ADMIN,
    LIST_LIMIT_MAX,
    OWNER,
    Answer,
    LiveNode,
)

NAMESPACE = "default"


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveNode]:
    live = LiveNode(tmp_path_factory.mktemp("operations")).start()
    live.become_owner()
    yield live
    live.stop()


@pytest.fixture
def app() -> str:
    return f"app-{uuid.uuid4().hex[:8]}"


def call(node: LiveNode, app: str, method: str, path: str, body: object = None) -> Answer:
    return node.call(method, path, body, headers={"dapr-app-id": app})


def create(node: LiveNode, app: str, name: str, body: dict[str, object]) -> None:
    answer = call(node, app, "POST", f"/v1.0/jobs/{name}", body)
    assert answer.status == 204, answer


def digest(node: LiveNode) -> str:
    value: str = node.call("GET", "/admin/digest", headers=ADMIN).json["digest"]
    return value


def ack(
    node: LiveNode, app: str, name: str, outcome: Outcome, kind: EntryKind = EntryKind.OCCURRENCE
) -> int:
    return node.ack(NAMESPACE, app, name, outcome, kind)


def give_up(node: LiveNode, app: str, name: str) -> str:
    """Fail the job's current occurrence until it is given up (its policy allows one retry);
    the dead letter's id."""
    at = ack(node, app, name, Outcome.FAILED)
    assert ack(node, app, name, Outcome.FAILED) == at
    return f"{at}:{node.job(NAMESPACE, app, name).uid}"


# -- pause, resume, run now ------------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["/v1.0", "/v1.0-alpha1"])
def test_pause_and_resume_are_204_idempotent_and_shown_in_status(
    node: LiveNode, app: str, prefix: str
) -> None:
    create(node, app, "j", {"schedule": "@every 1m"})
    before = call(node, app, "GET", "/v1.0/jobs/j").json["status"]
    assert before["paused"] is False
    assert call(node, app, "POST", f"{prefix}/jobs/j/pause").status == 204
    paused = call(node, app, "GET", "/v1.0/jobs/j").json["status"]
    assert paused["paused"] is True
    unchanged = digest(node)
    assert call(node, app, "POST", f"{prefix}/jobs/j/pause").status == 204
    assert digest(node) == unchanged
    assert call(node, app, "POST", f"{prefix}/jobs/j/resume").status == 204
    resumed = call(node, app, "GET", "/v1.0/jobs/j").json["status"]
    # Resumed within the same period: the next occurrence is the one it had, uncounted.
    assert resumed == before
    unchanged = digest(node)
    assert call(node, app, "POST", f"{prefix}/jobs/j/resume").status == 204
    assert digest(node) == unchanged


def test_run_now_changes_neither_schedule_nor_count_nor_repeats(node: LiveNode, app: str) -> None:
    create(node, app, "j", {"schedule": "@every 1h", "repeats": 3})
    before = call(node, app, "GET", "/v1.0/jobs/j").json
    assert call(node, app, "POST", "/v1.0/jobs/j/pause").status == 204
    assert call(node, app, "POST", "/v1.0/jobs/j/run").status == 204
    assert node.job(NAMESPACE, app, "j").manual_ms is not None
    ack(node, app, "j", Outcome.SUCCESS, EntryKind.MANUAL)
    after = call(node, app, "GET", "/v1.0/jobs/j").json
    assert after["status"]["paused"] is True
    assert {**after, "status": {**after["status"], "paused": False}} == before
    assert node.job(NAMESPACE, app, "j").manual_ms is None


@pytest.mark.parametrize("operation", ["pause", "resume", "run"])
def test_operations_on_no_such_job_are_404(node: LiveNode, app: str, operation: str) -> None:
    create(node, app, "mine", {"dueTime": "1h"})
    unchanged = digest(node)
    for owner, name in ((app, "ghost"), ("another-app", "mine")):
        answer = call(node, owner, "POST", f"/v1.0/jobs/{name}/{operation}")
        assert answer.status == 404, answer
        assert answer.json["errorCode"] == "DAPR_SCHEDULER_JOB_NOT_FOUND"
        assert name in answer.json["message"]
    assert digest(node) == unchanged


def test_operations_answer_405_for_other_methods(node: LiveNode, app: str) -> None:
    create(node, app, "j", {"dueTime": "1h"})
    answer = call(node, app, "GET", "/v1.0/jobs/j/pause")
    # GET jobs/{name:.*} takes it: a job named "j/pause" cannot exist.
    assert answer.status == 400, answer
    assert call(node, app, "PUT", "/v1.0/jobs/j/run").status == 405


# -- history ---------------------------------------------------------------------------------


def test_history_lists_every_attempt_newest_first(node: LiveNode, app: str) -> None:
    policy = {"constant": {"interval": "1s", "maxRetries": 1}}
    create(node, app, "j", {"schedule": "@every 1m", "failurePolicy": policy})
    uid = node.job(NAMESPACE, app, "j").uid
    first = give_up(node, app, "j").split(":")[0]
    second = ack(node, app, "j", Outcome.SUCCESS)
    assert call(node, app, "POST", "/v1.0/jobs/j/pause").status == 204
    assert call(node, app, "POST", "/v1.0/jobs/j/run").status == 204
    manual = ack(node, app, "j", Outcome.SUCCESS, EntryKind.MANUAL)

    answer = call(node, app, "GET", "/v1.0/jobs/j/history")
    assert answer.status == 200, answer
    history = answer.json["history"]
    shape = [(a["scheduledTime"], a["attempt"], a["outcome"], a["manual"]) for a in history]
    assert shape == [
        (format_rfc3339_ms(manual), 1, "success", True),
        (format_rfc3339_ms(second), 1, "success", False),
        (format_rfc3339_ms(int(first)), 2, "dropped", False),
        (format_rfc3339_ms(int(first)), 1, "failed", False),
    ]
    newest = history[0]
    assert newest == {
        "triggerId": f"{manual}:{uid}",
        "scheduledTime": format_rfc3339_ms(manual),
        "attempt": 1,
        "outcome": "success",
        "node": OWNER,
        "startedAt": format_rfc3339_ms(manual + ACK_STARTED_AFTER_MS),
        "durationMs": ACK_DURATION_MS,
        "status": 200,
        "manual": True,
    }
    assert [a["status"] for a in history] == [200, 200, 500, 500]
    assert history[-1]["triggerId"] == f"{first}:{uid}"
    limited = call(node, app, "GET", "/v1.0-alpha1/jobs/j/history?limit=2").json["history"]
    assert limited == history[:2]


def test_a_new_job_has_an_empty_history(node: LiveNode, app: str) -> None:
    create(node, app, "fresh", {"dueTime": "1h"})
    answer = call(node, app, "GET", "/v1.0/jobs/fresh/history")
    assert (answer.status, answer.json) == (200, {"history": []})


@pytest.mark.parametrize("limit", ["0", "-1", "x", "1.5", "1" * 10, "%EF%BC%91"])
def test_a_bad_history_limit_is_a_400(node: LiveNode, app: str, limit: str) -> None:
    create(node, app, "j", {"dueTime": "1h"})
    answer = call(node, app, "GET", f"/v1.0/jobs/j/history?limit={limit}")
    assert answer.status == 400, answer
    assert "limit" in answer.json["message"]


def test_the_history_of_no_such_job_is_a_404(node: LiveNode, app: str) -> None:
    answer = call(node, app, "GET", "/v1.0/jobs/ghost/history")
    assert answer.status == 404, answer
    assert answer.json["errorCode"] == "DAPR_SCHEDULER_JOB_NOT_FOUND"


# -- dead letters ----------------------------------------------------------------------------


def dead_letters(node: LiveNode, app: str, query: str = "") -> Answer:
    return call(node, app, "GET", f"/v1.0/deadletters{query}")


def test_a_given_up_occurrence_is_listed_redriven_and_forgotten(node: LiveNode, app: str) -> None:
    policy = {"constant": {"interval": "1s", "maxRetries": 1}}
    create(node, app, "j", {"schedule": "@every 1m", "failurePolicy": policy})
    letter_id = give_up(node, app, "j")
    scheduled_ms = int(letter_id.split(":")[0])

    listed = dead_letters(node, app)
    assert listed.status == 200, listed
    assert listed.json["nextCursor"] is None
    [letter] = listed.json["deadLetters"]
    assert letter == {
        "id": letter_id,
        "name": "j",
        "scheduledTime": format_rfc3339_ms(scheduled_ms),
        "attempts": 2,
        "lastOutcome": "failed",
        "failedAt": format_rfc3339_ms(scheduled_ms + ACK_AFTER_MS),
        "redriving": False,
    }
    # Another app sees none of it, and cannot redrive or forget it.
    assert dead_letters(node, "another-app").json["deadLetters"] == []
    path = f"/v1.0/deadletters/{letter_id}"
    assert call(node, "another-app", "POST", f"{path}/redrive").status == 404
    assert call(node, "another-app", "DELETE", path).status == 204
    # Its job deleted, the letter stays, and can still be redriven.
    assert call(node, app, "DELETE", "/v1.0/jobs/j").status == 204
    assert call(node, app, "POST", f"{path}/redrive").status == 202
    [redriving] = dead_letters(node, app).json["deadLetters"]
    assert redriving == {**letter, "redriving": True}
    unchanged = digest(node)
    assert call(node, app, "POST", f"/v1.0-alpha1/deadletters/{letter_id}/redrive").status == 202
    assert digest(node) == unchanged
    assert call(node, app, "DELETE", path).status == 204
    assert dead_letters(node, app).json == {"deadLetters": [], "nextCursor": None}
    # Forgetting is idempotent, as deleting a job is; a redrive of a forgotten letter is a 404.
    assert call(node, app, "DELETE", path).status == 204
    gone = call(node, app, "POST", f"{path}/redrive")
    assert gone.status == 404, gone
    assert gone.json["errorCode"] == "ERR_DEAD_LETTER_NOT_FOUND"


def test_dead_letters_page_by_cursor_and_filter_by_prefix(node: LiveNode, app: str) -> None:
    policy = {"constant": {"interval": "1s", "maxRetries": 1}}
    names = ["a-1", "b-1", "a-2"]
    for name in names:
        create(node, app, name, {"schedule": "@every 1m", "failurePolicy": policy})
    ids = [give_up(node, app, name) for name in names]
    first = dead_letters(node, app, "?limit=2").json
    assert [d["id"] for d in first["deadLetters"]] == ids[:2]
    assert first["nextCursor"] == ids[1]
    rest = dead_letters(node, app, f"?limit=2&cursor={quote(ids[1])}").json
    assert (rest["deadLetters"][0]["id"], rest["nextCursor"]) == (ids[2], None)
    only_a = dead_letters(node, app, "?prefix=a-").json["deadLetters"]
    assert [d["name"] for d in only_a] == ["a-1", "a-2"]


@pytest.mark.parametrize(
    "query",
    ["?limit=0", "?limit=-2", "?limit=x", f"?limit={LIST_LIMIT_MAX + 1}", "?cursor=" + "9" * 65],
)
def test_a_bad_dead_letter_query_is_a_400(node: LiveNode, app: str, query: str) -> None:
    answer = dead_letters(node, app, query)
    assert answer.status == 400, answer
    assert answer.json["errorCode"] == "DAPR_SCHEDULER_SCHEDULE_JOB"


@pytest.mark.parametrize(("method", "suffix"), [("POST", "/redrive"), ("DELETE", "")])
def test_a_bad_dead_letter_id_is_a_400_and_an_unknown_one_changes_nothing(
    node: LiveNode, app: str, method: str, suffix: str
) -> None:
    unchanged = digest(node)
    for bad in ("9" * 65, "a%00b", "%1F"):
        answer = call(node, app, method, f"/v1.0/deadletters/{bad}{suffix}")
        assert answer.status == 400, (bad, answer)
    unknown = call(node, app, method, f"/v1.0/deadletters/1:{uuid.uuid4().hex}{suffix}")
    assert unknown.status == (404 if method == "POST" else 204), unknown
    assert digest(node) == unchanged
