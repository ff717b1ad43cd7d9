"""The admin routes, the API token, the body bound and the error statuses of the middleware
(413, 401, 503 with Retry-After, 500), over real HTTP against a real one-node Raft store."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from aiohttp import web

from node.http.api import ApiConfig, build_app
from node.http.backup import BackupRoutes
from node.http.errors import describe
from node.http.openapi import openapi_document
from node.http.operations import OperationRoutes
from node.watch.forward import ForwardRoute
from node.watch.route import LocalWatchers, WatchConfig, WatchRoute
from store.errors import OutcomeUnknown
from tests.unit.node.api_node import BODY_BYTES_MAX, FAILING_MEMBER, LiveNode

TOKEN = "s3cret-token"


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveNode]:
    live = LiveNode(tmp_path_factory.mktemp("admin")).start()
    yield live
    live.stop()


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveNode]:
    live = LiveNode(tmp_path_factory.mktemp("guarded"), api_token=TOKEN).start()
    yield live
    live.stop()


@pytest.mark.parametrize("path", ["/v1.0/healthz", "/v1.0/healthz/ready", "/v1.0/healthz/outbound"])
def test_health_probes_answer_204_on_a_ready_node(node: LiveNode, path: str) -> None:
    answer = node.call("GET", path)
    assert (answer.status, answer.body) == (204, b"")


def test_cluster_status_has_exactly_the_fields_of_the_spec(node: LiveNode) -> None:
    assert node.call("POST", "/v1.0/jobs/counted", {"dueTime": "1h"}).status == 204
    status = node.call("GET", "/admin/cluster").json
    assert set(status) == {
        "node",
        "role",
        "leader",
        "term",
        "commitIndex",
        "appliedIndex",
        "epoch",
        "partitions",
        "jobs",
        "members",
    }
    assert (status["role"], status["leader"], status["jobs"]) == ("leader", "n1", 1)
    assert status["appliedIndex"] >= 1
    (member,) = status["members"]
    assert set(member) == {"id", "http", "raft", "alive", "partitions"}


def test_members_are_added_and_removed_through_the_view(node: LiveNode) -> None:
    body = {"id": "n2", "raft": "127.0.0.1:7501", "http": "127.0.0.1:3501"}
    assert node.call("POST", "/admin/members", body).status == 204
    assert node.call("DELETE", "/admin/members/n2").status == 204
    assert node.view is not None
    assert node.view.added == [("n2", "127.0.0.1:7501", "127.0.0.1:3501")]
    assert node.view.removed == ["n2"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"id": "", "raft": "127.0.0.1:1", "http": "127.0.0.1:2"}, "non-empty word"),
        ({"id": "n3", "raft": "nowhere", "http": "127.0.0.1:2"}, "HOST:PORT"),
        ({"id": "n3", "raft": "127.0.0.1:1"}, "http must be"),
        (b"[]", "expected a JSON object"),
    ],
)
def test_a_bad_member_is_a_400_that_reaches_no_view(
    node: LiveNode, body: object, message: str
) -> None:
    assert node.view is not None
    added = list(node.view.added)
    answer = node.call("POST", "/admin/members", body)
    assert answer.status == 400, answer
    assert message in answer.json["message"]
    assert node.view.added == added


def test_an_unexpected_exception_is_a_generic_500_and_the_node_serves_on(node: LiveNode) -> None:
    answer = node.call("DELETE", f"/admin/members/{FAILING_MEMBER}")
    assert answer.status == 500
    assert answer.json["errorCode"] == "ERR_INTERNAL"
    assert "a bug in the view" not in answer.json["message"]
    assert node.call("GET", "/v1.0/healthz").status == 204


def test_openapi_describes_every_registered_route(node: LiveNode) -> None:
    served = node.call("GET", "/openapi.json").json
    assert served == openapi_document()
    assert served["openapi"].startswith("3.")
    # The node's watch, operation and backup routes sit beside the jobs API; none of their
    # handlers runs here.
    watchers = LocalWatchers(WatchConfig(), on_change=lambda: None, ack_timeout_s=1.0)
    extra = (
        WatchRoute(watchers, registered=None),  # type: ignore[arg-type]
        ForwardRoute(watchers, "secret", 1),
        OperationRoutes(service=None),  # type: ignore[arg-type]
        BackupRoutes(backup=None, read_timeout_s=1.0),  # type: ignore[arg-type]
    )
    app = build_app(service=None, admin=None, config=ApiConfig(), routes=extra, body_bytes_max=1)  # type: ignore[arg-type]
    routes = {
        (route.method.lower(), route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None
    }
    described = {
        (method, path)
        for path, operations in served["paths"].items()
        for method in operations
        if method != "parameters"
    }
    assert routes == described


def test_a_body_over_the_limit_is_a_413(node: LiveNode) -> None:
    body = {"dueTime": "1h", "data": "x" * BODY_BYTES_MAX}
    answer = node.call("POST", "/v1.0/jobs/huge", body)
    assert answer.status == 413
    assert answer.json["errorCode"] == "ERR_REQUEST_TOO_LARGE"
    assert node.call("GET", "/v1.0/jobs/huge").status == 404


@pytest.mark.parametrize("token", [None, "", "wrong", TOKEN + "x", TOKEN[:-1]])
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1.0/jobs"),
        ("POST", "/v1.0-alpha1/jobs/x"),
        ("GET", "/admin/cluster"),
        ("GET", "/v1.0/healthz/ready"),
    ],
)
def test_a_missing_or_wrong_token_is_a_401(
    guarded: LiveNode, token: str | None, method: str, path: str
) -> None:
    headers = {} if token is None else {"dapr-api-token": token}
    answer = guarded.call(method, path, {"dueTime": "1h"}, headers)
    assert answer.status == 401
    assert answer.json["errorCode"] == "ERR_UNAUTHORIZED"


def test_the_right_token_is_let_through_and_healthz_needs_none(guarded: LiveNode) -> None:
    headers = {"dapr-api-token": TOKEN}
    assert guarded.call("POST", "/v1.0/jobs/ok", {"dueTime": "1h"}, headers).status == 204
    assert guarded.call("GET", "/v1.0/jobs/ok", headers=headers).json["name"] == "ok"
    assert guarded.call("GET", "/v1.0/healthz").status == 204
    assert guarded.call("GET", "/v1.0/jobs/ok").status == 401


def test_without_a_store_writes_and_readiness_are_503_with_retry_after(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    live = LiveNode(tmp_path_factory.mktemp("stopped")).start()
    try:
        assert live.store is not None
        live.run(live.store.stop())
        for method, path in [("POST", "/v1.0/jobs/lost"), ("GET", "/v1.0/healthz/ready")]:
            answer = live.call(method, path, {"dueTime": "1h"})
            assert answer.status == 503, answer
            assert answer.headers["Retry-After"] == str(live.api.retry_after_s)
            assert answer.json["errorCode"] == "ERR_UNAVAILABLE"
    finally:
        live.stop()


def test_middleware_maps_outcome_unknown_to_503() -> None:
    answer = describe(OutcomeUnknown("maybe"), retry_after_s=2)
    assert (answer.status, answer.code, answer.headers) == (
        503,
        "ERR_OUTCOME_UNKNOWN",
        {"Retry-After": "2"},
    )
    assert describe(web.HTTPNotFound(), 1).status == 404
