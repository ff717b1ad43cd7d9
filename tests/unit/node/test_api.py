"""The jobs and apps routes over real HTTP, against a real one-node Raft store: every error of
the Jobs API with its status, code and message, and that bad input leaves no trace."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit.node.api_node import (
    DATA_BYTES_MAX,
    DATA_BYTES_MAX_PER_APP,
    JOBS_MAX_PER_APP,
    LIST_LIMIT_MAX,
    Answer,
    LiveNode,
)

PREFIXES = ("/v1.0", "/v1.0-alpha1")


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveNode]:
    live = LiveNode(tmp_path_factory.mktemp("api")).start()
    yield live
    live.stop()


class App:
    """Requests on behalf of one app id, fresh per test, so that tests never see each other."""

    def __init__(self, node: LiveNode) -> None:
        self.node = node
        self.id = f"app-{uuid.uuid4().hex[:8]}"
        self.headers = {"dapr-app-id": self.id}

    def call(self, method: str, path: str, body: object = None, prefix: str = "/v1.0") -> Answer:
        return self.node.call(method, prefix + path, body, self.headers)

    def names(self) -> list[str]:
        answer = self.call("GET", "/jobs")
        assert answer.status == 200, answer
        return [job["name"] for job in answer.json["jobs"]]


@pytest.fixture
def app(node: LiveNode) -> App:
    return App(node)


def assert_error(answer: Answer, status: int, code: str, message: str) -> None:
    assert answer.status == status, answer
    assert answer.headers["Content-Type"].startswith("application/json")
    assert answer.json["errorCode"] == code, answer.json
    assert message in answer.json["message"], answer.json


@pytest.mark.parametrize("prefix", PREFIXES)
def test_create_then_get_returns_the_original_strings_and_status(app: App, prefix: str) -> None:
    body = {
        "schedule": "@every 1h",
        "dueTime": "2030-01-02T03:04:05Z",
        "repeats": 3,
        "ttl": "240h",
        "data": {"task": "backup", "n": [1, 2]},
        "failurePolicy": {"constant": {"interval": "2s", "maxRetries": 5}},
    }
    created = app.call("POST", "/jobs/nightly", body, prefix)
    assert (created.status, created.body) == (204, b"")
    job = app.call("GET", "/jobs/nightly", prefix=prefix).json
    status = job.pop("status")
    assert job == {"name": "nightly", **body}
    assert status == {
        "count": 0,
        "lastTrigger": None,
        "nextTrigger": "2030-01-02T03:04:05.000Z",
        "paused": False,
    }


def test_snake_case_keys_are_accepted(app: App) -> None:
    body = {"due_time": "1h", "failure_policy": {"drop": {}}}
    assert app.call("POST", "/jobs/snake", body).status == 204
    job = app.call("GET", "/jobs/snake").json
    assert (job["dueTime"], job["failurePolicy"]) == ("1h", {"drop": {}})
    next_trigger = datetime.fromisoformat(job["status"]["nextTrigger"])
    assert next_trigger.tzinfo is not None


def test_a_name_with_special_characters_round_trips(app: App) -> None:
    name = "my||job@name with space"
    path = "/jobs/my%7C%7Cjob%40name%20with%20space"
    assert app.call("POST", path, {"dueTime": "1h"}).status == 204
    assert app.call("GET", path).json["name"] == name


@pytest.mark.parametrize(
    ("body", "code", "message"),
    [
        ({}, "DAPR_SCHEDULER_SCHEDULE_EMPTY", "job must have either a due time or a schedule"),
        (b"", "DAPR_SCHEDULER_SCHEDULE_EMPTY", "job must have either a due time or a schedule"),
        ({"name": "x", "dueTime": "1h"}, "DAPR_SCHEDULER_JOB_NAME", "in the url only"),
        (b"{not json", "ERR_MALFORMED_REQUEST", "failed deserializing HTTP body: "),
        (b"[{}]", "ERR_MALFORMED_REQUEST", "expected a JSON object, got an array"),
        (b"\xff\xfe", "ERR_MALFORMED_REQUEST", "failed deserializing HTTP body: "),
        ({"schedule": "1 2 3"}, "DAPR_SCHEDULER_SCHEDULE_JOB", "expected exactly 6 fields"),
        ({"dueTime": "soon"}, "DAPR_SCHEDULER_SCHEDULE_JOB", "due time"),
        ({"dueTime": "1h", "repeats": 2}, "DAPR_SCHEDULER_SCHEDULE_JOB", "schedule to repeat"),
        ({"schedule": "@daily", "repeats": -1}, "DAPR_SCHEDULER_SCHEDULE_JOB", "non-negative"),
        ({"schedule": "@daily", "ttl": "nope"}, "DAPR_SCHEDULER_SCHEDULE_JOB", "ttl"),
        (
            {
                "schedule": "@daily",
                "dueTime": "2031-01-01T00:00:00Z",
                "ttl": "2030-01-01T00:00:00Z",
            },
            "DAPR_SCHEDULER_SCHEDULE_JOB",
            "ttl must be greater than due time",
        ),
        ({"dueTime": "1h", "overwrite": "yes"}, "DAPR_SCHEDULER_SCHEDULE_JOB", "overwrite"),
        ({"dueTime": "1h", "failurePolicy": {"x": {}}}, "DAPR_SCHEDULER_SCHEDULE_JOB", "kind"),
        (
            {"dueTime": "1h", "data": "x" * DATA_BYTES_MAX},
            "DAPR_SCHEDULER_SCHEDULE_JOB",
            "data is too large",
        ),
    ],
)
def test_bad_input_is_a_400_with_dapr_code_and_leaves_no_trace(
    app: App, body: object, code: str, message: str
) -> None:
    assert_error(app.call("POST", "/jobs/bad", body), 400, code, message)
    assert app.names() == []


@pytest.mark.parametrize("method", ["POST", "GET", "DELETE"])
def test_an_empty_name_is_a_400(app: App, method: str) -> None:
    answer = app.call(method, "/jobs/", {"dueTime": "1h"} if method == "POST" else None)
    assert_error(answer, 400, "DAPR_SCHEDULER_JOB_NAME_EMPTY", "Name is empty")


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/jobs/a/b", "must not contain '/'"),
        ("/jobs/..", "must not be"),
        ("/jobs/" + "n" * 300, "too long"),
        ("/jobs/tab%09", "control characters"),
    ],
)
def test_bad_names_are_a_400(app: App, path: str, message: str) -> None:
    assert_error(
        app.call("POST", path, {"dueTime": "1h"}), 400, "DAPR_SCHEDULER_SCHEDULE_JOB", message
    )
    assert app.names() == []


def test_get_of_a_missing_job_is_a_404(app: App) -> None:
    answer = app.call("GET", "/jobs/ghost")
    assert_error(answer, 404, "DAPR_SCHEDULER_JOB_NOT_FOUND", "job not found: ghost")


def test_delete_answers_204_whether_or_not_the_job_exists(app: App) -> None:
    assert app.call("POST", "/jobs/doomed", {"dueTime": "1h"}).status == 204
    assert app.call("DELETE", "/jobs/doomed").status == 204
    assert app.call("GET", "/jobs/doomed").status == 404
    assert app.call("DELETE", "/jobs/doomed").status == 204


def test_a_second_create_conflicts_unless_overwrite(app: App) -> None:
    assert app.call("POST", "/jobs/twice", {"schedule": "@daily"}).status == 204
    again = app.call("POST", "/jobs/twice", {"schedule": "@hourly"})
    assert_error(again, 409, "DAPR_SCHEDULER_SCHEDULE_JOB", "twice")
    assert app.call("GET", "/jobs/twice").json["schedule"] == "@daily"
    overwrite = app.call("POST", "/jobs/twice", {"schedule": "@hourly", "overwrite": True})
    assert overwrite.status == 204
    assert app.call("GET", "/jobs/twice").json["schedule"] == "@hourly"


def test_jobs_are_scoped_by_app_and_namespace(node: LiveNode) -> None:
    first, second = App(node), App(node)
    assert first.call("POST", "/jobs/shared", {"dueTime": "1h"}).status == 204
    assert second.call("GET", "/jobs/shared").status == 404
    other_namespace = {**first.headers, "dapr-namespace": "other"}
    assert node.call("GET", "/v1.0/jobs/shared", headers=other_namespace).status == 404
    assert second.names() == []


def test_list_pages_by_prefix_limit_and_cursor(app: App) -> None:
    names = [f"report-{i:02d}" for i in range(7)] + ["other"]
    for name in names:
        assert app.call("POST", f"/jobs/{name}", {"dueTime": "1h"}).status == 204
    seen: list[str] = []
    cursor = ""
    pages = 0
    while True:
        page = app.call("GET", f"/jobs?prefix=report-&limit=3&cursor={cursor}").json
        seen += [job["name"] for job in page["jobs"]]
        pages += 1
        if page["nextCursor"] is None:
            break
        cursor = page["nextCursor"]
    assert seen == sorted(names[:7])
    assert pages == 3
    assert app.names() == sorted(names)


@pytest.mark.parametrize("limit", ["0", "-1", "x", str(LIST_LIMIT_MAX + 1)])
def test_a_bad_limit_is_a_400(app: App, limit: str) -> None:
    answer = app.call("GET", f"/jobs?limit={limit}")
    assert_error(answer, 400, "DAPR_SCHEDULER_SCHEDULE_JOB", "limit")


def test_the_jobs_quota_answers_429_and_leaves_other_apps_alone(node: LiveNode, app: App) -> None:
    for k in range(JOBS_MAX_PER_APP):
        assert app.call("POST", f"/jobs/j{k}", {"dueTime": "1h"}).status == 204
    over = app.call("POST", "/jobs/one-more", {"dueTime": "1h"})
    assert_error(over, 429, "ERR_QUOTA_EXCEEDED", f"at most {JOBS_MAX_PER_APP} jobs")
    # Replacing a job keeps the count: allowed at the quota.
    assert app.call("POST", "/jobs/j0", {"dueTime": "2h", "overwrite": True}).status == 204
    assert "one-more" not in app.names()
    assert App(node).call("POST", "/jobs/j0", {"dueTime": "1h"}).status == 204


def test_the_data_quota_counts_the_bytes_of_every_job(app: App) -> None:
    data = "x" * (DATA_BYTES_MAX - 2)  # Its JSON text, quotes included, is DATA_BYTES_MAX.
    jobs_that_fit = DATA_BYTES_MAX_PER_APP // DATA_BYTES_MAX
    for k in range(jobs_that_fit):
        assert app.call("POST", f"/jobs/d{k}", {"dueTime": "1h", "data": data}).status == 204
    over = app.call("POST", "/jobs/d-over", {"dueTime": "1h", "data": "y"})
    assert_error(over, 429, "ERR_QUOTA_EXCEEDED", "bytes of job data")
    # Shrinking a job's data makes room again.
    assert app.call("POST", "/jobs/d0", {"dueTime": "1h", "overwrite": True}).status == 204
    assert app.call("POST", "/jobs/d-over", {"dueTime": "1h", "data": "y"}).status == 204


def test_delete_by_prefix_counts_what_it_deleted(app: App) -> None:
    for name in ("a-1", "a-2", "a-3", "b-1"):
        assert app.call("POST", f"/jobs/{name}", {"dueTime": "1h"}).status == 204
    # DELETE_PREFIX_CHUNK_MAX is 3: one full chunk, then an empty one ends the loop.
    answer = app.call("DELETE", "/jobs?prefix=a-", prefix="/v1.0-alpha1")
    assert (answer.status, answer.json) == (200, {"deleted": 3})
    assert app.names() == ["b-1"]
    assert app.call("DELETE", "/jobs").json == {"deleted": 1}
    assert app.names() == []


def test_delete_by_prefix_takes_as_many_chunks_as_it_needs(app: App) -> None:
    names = [f"c-{k}" for k in range(8)]
    for name in names:
        assert app.call("POST", f"/jobs/{name}", {"dueTime": "1h"}).status == 204
    assert app.call("DELETE", "/jobs?prefix=c-").json == {"deleted": len(names)}
    assert app.names() == []


@pytest.mark.parametrize("prefix", PREFIXES)
def test_apps_register_read_and_unregister(app: App, prefix: str) -> None:
    path = f"/apps/{app.id}"
    assert_error(app.call("GET", path, prefix=prefix), 404, "ERR_APP_NOT_FOUND", app.id)
    put = app.call("PUT", path, {"url": "http://127.0.0.1:9999"}, prefix)
    assert (put.status, put.body) == (204, b"")
    expected = {"url": "http://127.0.0.1:9999", "hasToken": False}
    assert app.call("GET", path, prefix=prefix).json == expected
    assert app.call("DELETE", path, prefix=prefix).status == 204
    assert app.call("GET", path, prefix=prefix).status == 404


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, '{"url"'),
        ({"url": 5}, '{"url"'),
        ({"url": "ftp://x"}, "app url must start with"),
        ({"url": "http://" + "x" * 3000}, "url is too long"),
        ({"url": "http://h", "token": 5}, '"token"'),
        ({"url": "http://h", "token": "two words"}, "app token must be printable"),
        ({"url": "http://h", "token": "x" * 600}, "app token is too long"),
    ],
)
def test_a_bad_app_url_is_a_400_and_registers_nothing(app: App, body: object, message: str) -> None:
    path = f"/apps/{app.id}"
    assert_error(app.call("PUT", path, body), 400, "DAPR_SCHEDULER_SCHEDULE_JOB", message)
    assert app.call("GET", path).status == 404


def test_an_app_token_is_stored_but_never_shown(app: App) -> None:
    path = f"/apps/{app.id}"
    put = app.call("PUT", path, {"url": "http://127.0.0.1:9999", "token": "s3cret"})
    assert put.status == 204
    answer = app.call("GET", path)
    assert answer.json == {"url": "http://127.0.0.1:9999", "hasToken": True}
    assert b"s3cret" not in answer.body


def test_unknown_routes_and_methods_answer_json_errors(app: App) -> None:
    assert_error(app.call("GET", "/nothing-here"), 404, "ERR_NOT_FOUND", "Not Found")
    answer = app.call("PATCH", "/jobs/x")
    assert_error(answer, 405, "ERR_METHOD_NOT_ALLOWED", "Method Not Allowed")
    assert "POST" in answer.headers["Allow"]


@settings(
    deadline=None,
    max_examples=40,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    body=st.one_of(
        st.binary(max_size=64),
        st.dictionaries(
            st.sampled_from(["schedule", "dueTime", "repeats", "ttl", "data", "failurePolicy"]),
            st.one_of(st.none(), st.integers(), st.text(max_size=12), st.booleans()),
            max_size=4,
        ),
    )
)
def test_arbitrary_bodies_never_fail_the_server(app: App, body: object) -> None:
    answer = app.call("POST", "/jobs/fuzz", body)
    assert answer.status in (204, 400), answer
    if answer.status == 400:
        assert app.call("GET", "/jobs/fuzz").status == 404
    else:
        assert app.call("DELETE", "/jobs/fuzz").status == 204
