"""What the HTTP edge refuses before anything reaches the store: headers that are not UTF-8 or
too long, limits of thousands of digits, prefixes and cursors past their bound; and that a list
page is bounded in bytes as well as in jobs. Every refusal leaves the state digest unchanged."""

from __future__ import annotations

import http.client
import uuid
from collections.abc import Iterator

import pytest

from store.bounds import SCOPE_CHARS_MAX
from store.jobs import NAME_CHARS_MAX
from store.machine import LIST_JOB_OVERHEAD_BYTES
from tests.unit.node.api_node import (
    ADMIN,
    DATA_BYTES_MAX,
    LIST_BYTES_MAX,
    LIST_LIMIT_MAX,
    LiveNode,
)


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveNode]:
    live = LiveNode(tmp_path_factory.mktemp("edge")).start()
    yield live
    live.stop()


def digest(node: LiveNode) -> str:
    answer = node.call("GET", "/admin/digest", headers=ADMIN)
    assert answer.status == 200, answer
    assert answer.json["appliedIndex"] > 0
    value: str = answer.json["digest"]
    return value


def raw_call(node: LiveNode, method: str, path: str, headers: dict[str, bytes]) -> tuple[int, str]:
    """A request whose header values go on the wire as these exact bytes."""
    connection = http.client.HTTPConnection("127.0.0.1", node.port, timeout=10)
    try:
        connection.putrequest(method, path)
        for key, value in headers.items():
            connection.putheader(key, value)
        connection.putheader("content-length", "0")
        connection.endheaders()
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


@pytest.mark.parametrize("header", ["dapr-app-id", "dapr-namespace"])
@pytest.mark.parametrize(
    ("value", "message"),
    [
        (b"bad\xff\xfe", "is not valid UTF-8"),
        (b"x" * (SCOPE_CHARS_MAX + 1), "is too long"),
        (b"a\xc2\x85b", "must not contain control characters"),
    ],
)
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v1.0/jobs/edge"),
        ("GET", "/v1.0/jobs/edge"),
        ("DELETE", "/v1.0/jobs/edge"),
        ("GET", "/v1.0/jobs"),
        ("DELETE", "/v1.0/jobs"),
    ],
)
def test_a_bad_scope_header_is_a_400_naming_it(
    node: LiveNode, header: str, value: bytes, message: str, method: str, path: str
) -> None:
    before = digest(node)
    status, body = raw_call(node, method, path, {header: value})
    assert status == 400, body
    assert f"{header} {message}" in body
    assert digest(node) == before


def test_a_namespace_that_is_not_utf8_on_the_app_routes_is_a_400(
    node: LiveNode,
) -> None:
    before = digest(node)
    for method in ("PUT", "GET", "DELETE"):
        status, body = raw_call(node, method, "/v1.0/apps/edge", {"dapr-namespace": b"\xc3("})
        assert (status, "dapr-namespace is not valid UTF-8" in body) == (400, True), body
    assert digest(node) == before


def test_an_app_id_in_the_path_is_checked_too(node: LiveNode) -> None:
    long_app = "a" * (SCOPE_CHARS_MAX + 1)
    answer = node.call("PUT", f"/v1.0/apps/{long_app}", {"url": "http://127.0.0.1:1"})
    assert answer.status == 400
    assert "app id is too long" in answer.json["message"]
    answer = node.call("GET", "/v1.0/apps/a%01b")
    assert (answer.status, "control characters" in answer.json["message"]) == (400, True)


@pytest.mark.parametrize(
    "query",
    [
        "limit=" + "9" * 5000,
        "limit=0",
        f"limit={LIST_LIMIT_MAX + 1}",
        "limit=1e3",
        "prefix=" + "p" * (NAME_CHARS_MAX + 1),
        "cursor=" + "c" * (NAME_CHARS_MAX + 1),
        "prefix=a%01",
    ],
)
def test_bad_list_parameters_are_a_400(node: LiveNode, query: str) -> None:
    answer = node.call("GET", f"/v1.0/jobs?{query}")
    assert answer.status == 400, answer
    field = query.partition("=")[0]
    assert field in answer.json["message"]


def test_a_delete_by_prefix_past_the_bound_is_a_400_and_deletes_nothing(node: LiveNode) -> None:
    headers = {"dapr-app-id": f"edge-{uuid.uuid4().hex[:8]}"}
    assert node.call("POST", "/v1.0/jobs/p1", {"dueTime": "1h"}, headers).status == 204
    before = digest(node)
    answer = node.call("DELETE", "/v1.0/jobs?prefix=" + "p" * (NAME_CHARS_MAX + 1), None, headers)
    assert (answer.status, "prefix is too long" in answer.json["message"]) == (400, True)
    assert digest(node) == before


def test_a_list_page_is_bounded_in_bytes_and_the_cursor_reaches_every_job(node: LiveNode) -> None:
    headers = {"dapr-app-id": f"edge-{uuid.uuid4().hex[:8]}"}
    data = "d" * (DATA_BYTES_MAX - 16)
    names = [f"big-{i:02d}" for i in range(30)]
    for name in names:
        answer = node.call("POST", f"/v1.0/jobs/{name}", {"dueTime": "1h", "data": data}, headers)
        assert answer.status == 204, answer
    per_page = LIST_BYTES_MAX // (DATA_BYTES_MAX - 14 + LIST_JOB_OVERHEAD_BYTES)
    assert per_page < len(names) < LIST_LIMIT_MAX
    seen: list[str] = []
    cursor = ""
    pages = 0
    while True:
        answer = node.call(
            "GET", f"/v1.0/jobs?limit={LIST_LIMIT_MAX}&cursor={cursor}", None, headers
        )
        assert answer.status == 200, answer
        page = answer.json
        assert 1 <= len(page["jobs"]) <= per_page
        assert len(answer.body) <= 2 * LIST_BYTES_MAX
        seen += [job["name"] for job in page["jobs"]]
        pages += 1
        if page["nextCursor"] is None:
            break
        cursor = page["nextCursor"]
    assert seen == names
    assert pages >= 2


def test_a_lone_surrogate_escape_in_a_body_is_a_400_and_a_pair_is_fine(node: LiveNode) -> None:
    headers = {"dapr-app-id": f"edge-{uuid.uuid4().hex[:8]}"}
    before = digest(node)
    for body in (b'{"dueTime": "1h", "data": "\\ud800"}', b'{"dueTime": "1h", "\\udfff": 1}'):
        answer = node.call("POST", "/v1.0/jobs/lone", body, headers)
        assert answer.status == 400, answer
        assert answer.json["errorCode"] == "ERR_MALFORMED_REQUEST"
        assert "lone UTF-16 surrogate" in answer.json["message"]
    assert digest(node) == before
    paired = b'{"dueTime": "1h", "data": "\\ud83d\\ude00"}'
    assert node.call("POST", "/v1.0/jobs/paired", paired, headers).status == 204
    assert node.call("GET", "/v1.0/jobs/paired", None, headers).json["data"] == "\U0001f600"
