"""GET /admin/export and POST /admin/import over real HTTP against real one-node Raft stores: the
round trip into a second node (same jobs, next trigger, count, pause and history), the filters,
a large import streamed rather than read whole, and bad input answered 400 naming the line."""

from __future__ import annotations

import asyncio
import http.client
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from node.backup import IMPORT_BATCH_JOBS_MAX, export_line, job_of_line, lines_of
from store.codec import EntryKind, Outcome
from store.errors import ValidationError
from tests.unit.node.api_node import ADMIN, BODY_BYTES_MAX, STARTUP_S_MAX, Answer, LiveNode

EXPONENTIAL = {
    "exponential": {"initialInterval": "1s", "maxInterval": "1m", "multiplier": 3, "maxRetries": 4}
}
# The large import: far more bytes than the node reads of any one request body.
LARGE_IMPORT_JOBS = 20_000
STREAM_WAIT_S_MAX = 30.0
POLL_S = 0.02


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveNode]:
    live = LiveNode(tmp_path_factory.mktemp("export")).start()
    live.become_owner()
    yield live
    live.stop()


@pytest.fixture
def target(tmp_path: Path) -> Iterator[LiveNode]:
    """A second, empty node: another cluster to import into."""
    live = LiveNode(tmp_path).start()
    yield live
    live.stop()


@pytest.fixture
def app() -> str:
    return f"app-{uuid.uuid4().hex[:8]}"


def scoped(app: str, namespace: str = "default") -> dict[str, str]:
    return {"dapr-app-id": app, "dapr-namespace": namespace}


def create(node: LiveNode, app: str, name: str, body: object, namespace: str = "default") -> None:
    answer = node.call("POST", f"/v1.0/jobs/{name}", body, scoped(app, namespace))
    assert answer.status == 204, answer


def ack(node: LiveNode, app: str, name: str, kind: EntryKind = EntryKind.OCCURRENCE) -> None:
    node.ack("default", app, name, Outcome.SUCCESS, kind)


def export(node: LiveNode, query: str) -> bytes:
    answer = node.call("GET", f"/admin/export{query}", headers=ADMIN)
    assert answer.status == 200, answer
    assert answer.headers["Content-Type"] == "application/x-ndjson"
    return answer.body


def import_(node: LiveNode, body: bytes, query: str = "") -> Answer:
    return node.call("POST", f"/admin/import{query}", body, ADMIN)


def names(lines: bytes) -> list[str]:
    return [json.loads(line)["name"] for line in lines.splitlines()]


def some_jobs(node: LiveNode, app: str) -> list[str]:
    """Jobs of every kind, some fired, one paused, one with a run pending; their names."""
    create(
        node,
        app,
        "every",
        {
            "schedule": "@every 1m",
            "repeats": 5,
            "ttl": "24h",
            "data": {"k": [1, 2]},
            "failurePolicy": EXPONENTIAL,
            "jitter": "10s",
            "deliveryTimeout": "2s",
            "misfirePolicy": "latest",
        },
    )
    ack(node, app, "every")
    ack(node, app, "every")
    create(node, app, "paused", {"schedule": "0 */5 * * * *", "failurePolicy": {"drop": {}}})
    assert node.call("POST", "/v1.0/jobs/paused/pause", None, scoped(app)).status == 204
    create(node, app, "once", {"dueTime": "1h", "data": "text"})
    assert node.call("POST", "/v1.0/jobs/once/run", None, scoped(app)).status == 204
    ack(node, app, "once", EntryKind.MANUAL)
    assert node.call("POST", "/v1.0/jobs/once/run", None, scoped(app)).status == 204
    return ["every", "once", "paused"]


def test_an_export_imported_into_another_node_is_the_same_jobs(
    node: LiveNode, target: LiveNode, app: str
) -> None:
    jobs = some_jobs(node, app)
    exported = export(node, f"?app={app}")
    assert names(exported) == jobs
    line = json.loads(exported.splitlines()[0])
    assert set(line) == {"namespace", "app", "name", "definition", "status", "state"}
    assert line["status"]["count"] == 2

    answer = import_(target, exported)
    assert (answer.status, answer.json) == (200, {"imported": 3, "skipped": 0}), answer
    for name in jobs:
        for path in (f"/v1.0/jobs/{name}", f"/v1.0/jobs/{name}/history"):
            source = node.call("GET", path, None, scoped(app))
            copied = target.call("GET", path, None, scoped(app))
            assert (copied.status, copied.json) == (200, source.json), path
        assert target.job("default", app, name) == node.job("default", app, name)
    assert target.call("GET", "/v1.0/jobs/paused", None, scoped(app)).json["status"]["paused"]
    assert len(target.call("GET", "/v1.0/jobs/every/history", None, scoped(app)).json["history"])
    assert export(target, "") == exported


def test_existing_names_are_skipped_unless_overwrite(
    node: LiveNode, target: LiveNode, app: str
) -> None:
    some_jobs(node, app)
    exported = export(node, f"?app={app}")
    create(target, app, "every", {"dueTime": "5h"})
    answer = import_(target, exported)
    assert answer.json == {"imported": 2, "skipped": 1}
    assert target.call("GET", "/v1.0/jobs/every", None, scoped(app)).json["dueTime"] == "5h"
    again = import_(target, exported, "?overwrite=false")
    assert again.json == {"imported": 0, "skipped": 3}
    overwritten = import_(target, exported, "?overwrite=true")
    assert overwritten.json == {"imported": 3, "skipped": 0}
    assert export(target, "") == exported


def test_export_filters_by_namespace_app_and_prefix(node: LiveNode, app: str) -> None:
    create(node, app, "a-1", {"dueTime": "1h"})
    create(node, app, "a-2", {"dueTime": "1h"})
    create(node, app, "b-1", {"dueTime": "1h"})
    create(node, app, "a-1", {"dueTime": "1h"}, namespace="other")
    assert names(export(node, f"?app={app}")) == ["a-1", "a-2", "b-1", "a-1"]
    assert names(export(node, f"?app={app}&prefix=a-")) == ["a-1", "a-2", "a-1"]
    other = export(node, f"?app={app}&namespace=other")
    assert [json.loads(line)["namespace"] for line in other.splitlines()] == ["other"]
    assert export(node, "?app=nobody") == b""
    bad = node.call("GET", "/admin/export?prefix=a%00", headers=ADMIN)
    assert bad.status == 400, bad


def test_a_bad_line_is_a_400_that_names_it(node: LiveNode, target: LiveNode, app: str) -> None:
    some_jobs(node, app)
    good = export(node, f"?app={app}").splitlines()
    for bad in (b"not json", b"{}", b'{"state": "AAAA"}', b'{"state": "!"}', b"[1]"):
        answer = import_(target, b"\n".join([good[0], b"", bad, good[1]]))
        assert answer.status == 400, (bad, answer)
        assert "import line 3 is not an exported job" in answer.json["message"], answer
        assert "(0 jobs imported before it)" in answer.json["message"], answer
    assert export(target, "") == b""


def test_a_bad_line_after_a_committed_batch_says_how_many_came_in(
    node: LiveNode, target: LiveNode, app: str
) -> None:
    create(node, app, "template", {"dueTime": "1h"})
    lines = many_lines(node, app, IMPORT_BATCH_JOBS_MAX + 10)
    bad_line = IMPORT_BATCH_JOBS_MAX + 5
    lines[bad_line - 1] = b"garbage"
    answer = import_(target, b"\n".join(lines))
    assert answer.status == 400, answer
    message = answer.json["message"]
    assert f"import line {bad_line} " in message
    assert f"({IMPORT_BATCH_JOBS_MAX} jobs imported before it)" in message
    assert len(export(target, "").splitlines()) == IMPORT_BATCH_JOBS_MAX


def test_an_empty_import_and_a_bad_overwrite(target: LiveNode) -> None:
    assert import_(target, b"").json == {"imported": 0, "skipped": 0}
    assert import_(target, b"\n\n  \n").json == {"imported": 0, "skipped": 0}
    answer = import_(target, b"", "?overwrite=yes")
    assert answer.status == 400, answer
    assert "overwrite" in answer.json["message"]


def many_lines(node: LiveNode, app: str, count: int) -> list[bytes]:
    """`count` export lines, each a copy of the app's job "template" under its own name and
    uid (each line without its newline)."""
    template = job_of_line(export(node, f"?app={app}&prefix=template"), 1)
    lines = []
    for k in range(count):
        name = f"bulk-{k:06d}"
        job = template._replace(name=name, spec=template.spec._replace(name=name), uid=f"u{k}")
        lines.append(export_line(job).rstrip(b"\n"))
    return lines


def test_a_large_import_is_streamed_not_read_whole(
    node: LiveNode, target: LiveNode, app: str
) -> None:
    create(node, app, "template", {"schedule": "@every 1h", "data": {"payload": "x" * 200}})
    lines = many_lines(node, app, LARGE_IMPORT_JOBS)
    assert sum(map(len, lines)) > 1000 * BODY_BYTES_MAX
    halfway = LARGE_IMPORT_JOBS // 2

    def imported() -> int:
        assert target.view is not None
        return target.view.machine.read(lambda m: m.count())

    def body() -> Iterator[bytes]:
        for start in range(0, LARGE_IMPORT_JOBS, 100):
            if start == halfway:
                # The node imports while the body is still coming: every full batch of the
                # first half is in before the second half is sent.
                deadline = time.monotonic() + STREAM_WAIT_S_MAX
                while imported() < halfway and time.monotonic() < deadline:
                    time.sleep(POLL_S)
                assert imported() == halfway, f"{imported()} jobs in while the body streams"
            yield b"".join(line + b"\n" for line in lines[start : start + 100])

    connection = http.client.HTTPConnection("127.0.0.1", target.port, timeout=STARTUP_S_MAX)
    try:
        connection.request("POST", "/admin/import", body=body(), headers=ADMIN, encode_chunked=True)
        response = connection.getresponse()
        answer = Answer(response.status, dict(response.getheaders()), response.read())
    finally:
        connection.close()
    assert answer.status == 200, answer
    assert answer.json == {"imported": LARGE_IMPORT_JOBS, "skipped": 0}
    assert imported() == LARGE_IMPORT_JOBS


# -- splitting a stream into lines -----------------------------------------------------------


async def chunks_of(*chunks: bytes) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


async def split(*chunks: bytes, line_bytes_max: int = 100) -> list[bytes]:
    return [line async for line in lines_of(chunks_of(*chunks), line_bytes_max)]


def test_lines_are_split_across_chunks_without_their_newlines() -> None:
    assert asyncio.run(split(b"ab", b"c\nd", b"e\n\nf")) == [b"abc", b"de", b"", b"f"]
    assert asyncio.run(split(b"a\n", b"\n")) == [b"a", b""]
    assert asyncio.run(split()) == []
    assert asyncio.run(split(b"x" * 60, b"y" * 40, b"\n")) == [b"x" * 60 + b"y" * 40]


def test_a_line_past_the_bound_is_refused_before_it_ends() -> None:
    with pytest.raises(ValidationError, match="longer than 100 bytes"):
        asyncio.run(split(b"x" * 60, b"y" * 41))
