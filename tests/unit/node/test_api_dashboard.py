"""What the dashboard stands on, over real HTTP against a real one-node Raft store: the page and
its files (no credential, strict headers), a job's next occurrences, the stats the live charts
poll, and the request id every answer echoes."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from node.http.ui import ASSETS
from node.service import UPCOMING_COUNT_MAX
from tests.unit.node.api_node import ADMIN, LiveNode

RFC3339_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveNode]:
    live = LiveNode(tmp_path_factory.mktemp("dashboard")).start()
    yield live
    live.stop()


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveNode]:
    live = LiveNode(tmp_path_factory.mktemp("dashboard-guarded"), open_api=False).start()
    yield live
    live.stop()


def test_the_page_needs_no_credential_and_loads_only_its_own_files(guarded: LiveNode) -> None:
    page = guarded.call("GET", "/ui?app=billing&prefix=daily-")
    assert page.status == 200
    assert page.headers["Content-Type"].startswith("text/html")
    policy = page.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "connect-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy
    html = page.body.decode()
    sources = re.findall(r'(?:src|href)="([^"]+)"', html)
    loaded = [s for s in sources if s.startswith(("/ui/", "http", "//"))]
    assert sorted(loaded) == sorted(f"/ui/{name}" for name in ASSETS)
    for name in ASSETS:
        asset = guarded.call("GET", f"/ui/{name}")
        assert asset.status == 200 and asset.body, name
        assert asset.headers["X-Content-Type-Options"] == "nosniff"


def test_an_unknown_file_is_a_404_and_the_api_still_wants_its_token(guarded: LiveNode) -> None:
    assert guarded.call("GET", "/ui/../metrics").status in (401, 404)
    assert guarded.call("GET", "/ui/secret.txt").status == 404
    assert guarded.call("GET", "/admin/stats").status == 401
    assert guarded.call("GET", "/v1.0/jobs/x").status == 401
    # The page is open to GET only; another method finds no route.
    assert guarded.call("POST", "/ui").status == 405


def test_next_lists_the_occurrences_to_come(node: LiveNode) -> None:
    assert (
        node.call("POST", "/v1.0/jobs/ticker", {"schedule": "@every 1h", "repeats": 3}).status
        == 204
    )
    answer = node.call("GET", "/v1.0/jobs/ticker/next")
    assert answer.status == 200
    times = answer.json["next"]
    assert len(times) == 3 and all(RFC3339_MS.match(t) for t in times)
    assert times == sorted(times)
    assert node.call("GET", "/v1.0/jobs/ticker").json["status"]["nextTrigger"] == times[0]
    assert len(node.call("GET", "/v1.0-alpha1/jobs/ticker/next?count=2").json["next"]) == 2


@pytest.mark.parametrize("count", ["0", str(UPCOMING_COUNT_MAX + 1), "-1", "x", "9" * 40])
def test_a_count_out_of_bounds_is_a_400_naming_it(node: LiveNode, count: str) -> None:
    node.call("POST", "/v1.0/jobs/bounded", {"schedule": "@every 1h"})
    answer = node.call("GET", f"/v1.0/jobs/bounded/next?count={count}")
    assert answer.status == 400 and "count" in answer.json["message"]


def test_next_of_no_such_job_is_a_404(node: LiveNode) -> None:
    assert node.call("GET", "/v1.0/jobs/nobody/next").status == 404


def test_stats_give_the_counters_of_this_node_and_of_the_cluster(node: LiveNode) -> None:
    own = node.call("GET", "/admin/stats?scope=node", headers=ADMIN).json
    assert own["node"] == "n1"
    assert set(own["triggers"]) == {"success", "failed", "skipped", "undelivered"}
    assert own["latency"]["count"] == 0 and own["latency"]["buckets"][0] == [0.001, 0]
    cluster = node.call("GET", "/admin/stats", headers=ADMIN).json
    assert [stats["node"] for stats in cluster["nodes"]] == ["n1"]
    assert node.call("GET", "/admin/stats?scope=everything", headers=ADMIN).status == 400


def test_a_request_id_is_echoed_or_made(node: LiveNode) -> None:
    given = node.call("GET", "/v1.0/healthz", headers={"x-request-id": "trace-42.a:b"})
    assert given.headers["x-request-id"] == "trace-42.a:b"
    made = node.call("GET", "/v1.0/jobs/nobody", headers={"x-request-id": "no spaces allowed"})
    assert made.status == 404
    assert re.fullmatch(r"[0-9a-f]{32}", made.headers["x-request-id"])
    other = node.call("GET", "/v1.0/healthz")
    assert other.headers["x-request-id"] != made.headers["x-request-id"]
