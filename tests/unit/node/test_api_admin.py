"""The admin routes, who may call what (the admin token, open and token mode, app tokens), the
body bound and the error statuses of the middleware (413, 401, 403, 503 with Retry-After, 500),
over real HTTP against a real one-node Raft store."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from aiohttp import web

from node.access import Access
from node.http.api import ApiConfig, build_app
from node.http.backup import BackupRoutes
from node.http.errors import describe
from node.http.openapi import openapi_document
from node.http.operations import OperationRoutes
from node.http.tokens import AppTokenRoutes
from node.scope import DEFAULT_SCOPE_PART, Scope
from node.watch.forward import ForwardRoute
from node.watch.route import LocalWatchers, WatchConfig, WatchRoute
from store.errors import OutcomeUnknown, Unauthenticated
from tests.unit.node.api_node import ADMIN, ADMIN_TOKEN, BODY_BYTES_MAX, FAILING_MEMBER, LiveNode


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveNode]:
    live = LiveNode(tmp_path_factory.mktemp("admin")).start()
    yield live
    live.stop()


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveNode]:
    live = LiveNode(tmp_path_factory.mktemp("guarded"), open_api=False).start()
    yield live
    live.stop()


@pytest.mark.parametrize("path", ["/v1.0/healthz", "/v1.0/healthz/ready", "/v1.0/healthz/outbound"])
def test_health_probes_answer_204_on_a_ready_node(node: LiveNode, path: str) -> None:
    answer = node.call("GET", path)
    assert (answer.status, answer.body) == (204, b"")


def test_cluster_status_has_exactly_the_fields_of_the_spec(node: LiveNode) -> None:
    assert node.call("POST", "/v1.0/jobs/counted", {"dueTime": "1h"}).status == 204
    status = node.call("GET", "/admin/cluster", headers=ADMIN).json
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
    assert node.call("POST", "/admin/members", body, ADMIN).status == 204
    assert node.call("DELETE", "/admin/members/n2", headers=ADMIN).status == 204
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
    answer = node.call("POST", "/admin/members", body, ADMIN)
    assert answer.status == 400, answer
    assert message in answer.json["message"]
    assert node.view.added == added


def test_an_unexpected_exception_is_a_generic_500_and_the_node_serves_on(node: LiveNode) -> None:
    answer = node.call("DELETE", f"/admin/members/{FAILING_MEMBER}", headers=ADMIN)
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
        WatchRoute(watchers, registered=None, stands=None),  # type: ignore[arg-type]
        ForwardRoute(watchers, signatures=None, body_bytes_max=1),  # type: ignore[arg-type]
        OperationRoutes(service=None),  # type: ignore[arg-type]
        BackupRoutes(backup=None, read_timeout_s=1.0),  # type: ignore[arg-type]
        AppTokenRoutes(tokens=None),  # type: ignore[arg-type]
    )
    access = Access(ADMIN_TOKEN, open_api=True, tokens=None)  # type: ignore[arg-type]
    app = build_app(None, None, ApiConfig(), extra, body_bytes_max=1, access=access)  # type: ignore[arg-type]
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


ADMIN_ROUTES = [
    ("GET", "/admin/cluster"),
    ("GET", "/admin/digest"),
    ("POST", "/admin/members"),
    ("DELETE", "/admin/members/n9"),
    ("POST", "/admin/quiesce"),
    ("GET", "/metrics"),
    ("POST", "/admin/apps/a/tokens"),
    ("GET", "/admin/apps/a/tokens"),
    ("DELETE", "/admin/apps/a/tokens/0123456789abcdef"),
    # No such routes: refused all the same, before routing could answer 404 or 405.
    ("GET", "/admin"),
    ("GET", "/admin/no-such-route"),
    ("PUT", "/admin/cluster"),
    ("GET", "/v1.0/../admin/cluster"),
]
WRONG_ADMIN = [
    {},
    {"Authorization": ""},
    {"Authorization": "Bearer"},
    {"Authorization": "Bearer wrong"},
    {"Authorization": f"Bearer {ADMIN_TOKEN}x"},
    {"Authorization": f"Bearer {ADMIN_TOKEN[:-1]}"},
    {"Authorization": f"Basic {ADMIN_TOKEN}"},
    # The admin token in the app token's header is not the admin credential.
    {"dapr-api-token": ADMIN_TOKEN},
]


@pytest.mark.parametrize("headers", WRONG_ADMIN, ids=[f"wrong{i}" for i in range(len(WRONG_ADMIN))])
@pytest.mark.parametrize(("method", "path"), ADMIN_ROUTES)
def test_every_admin_route_without_the_admin_token_is_a_401_in_either_mode(
    node: LiveNode, guarded: LiveNode, headers: dict[str, str], method: str, path: str
) -> None:
    for live in (node, guarded):
        answer = live.call(method, path, {"id": "n9"}, headers)
        assert answer.status == 401, (live.open_api, answer)
        assert answer.json["errorCode"] == "ERR_UNAUTHORIZED"
        assert answer.headers["WWW-Authenticate"] == "Bearer"


def test_the_admin_token_opens_the_admin_routes_and_the_probes_need_nothing(
    guarded: LiveNode,
) -> None:
    assert guarded.call("GET", "/admin/cluster", headers=ADMIN).status == 200
    assert guarded.call("GET", "/metrics", headers={"authorization": f"bearer {ADMIN_TOKEN}"})
    assert guarded.call("GET", "/admin/no-such-route", headers=ADMIN).status == 404
    for path in ("/v1.0/healthz", "/v1.0/healthz/ready", "/v1.0/healthz/outbound"):
        assert guarded.call("GET", path).status == 204
    assert guarded.call("GET", "/openapi.json").status == 200


@pytest.mark.parametrize(
    "headers",
    [{}, {"dapr-api-token": ""}, {"dapr-api-token": "wrong"}, {"dapr-api-token": "0" * 16 + ".x"}],
)
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1.0/jobs"),
        ("POST", "/v1.0-alpha1/jobs/x"),
        ("GET", "/v1.0/jobs/x"),
        ("PUT", "/v1.0/apps/a"),
    ],
)
def test_in_token_mode_the_jobs_api_without_an_app_token_is_a_401(
    guarded: LiveNode, headers: dict[str, str], method: str, path: str
) -> None:
    answer = guarded.call(method, path, {"dueTime": "1h", "url": "http://h:1"}, headers)
    assert answer.status == 401, answer
    assert answer.json["errorCode"] == "ERR_UNAUTHORIZED"


def test_in_token_mode_an_app_token_decides_the_app_and_the_admin_token_acts_as_any(
    guarded: LiveNode,
) -> None:
    issued = guarded.call("POST", "/admin/apps/orders/tokens", headers=ADMIN)
    assert issued.status == 201, issued
    assert set(issued.json) == {"id", "token"}
    mine = {"dapr-api-token": issued.json["token"]}
    assert guarded.call("POST", "/v1.0/jobs/mine", {"dueTime": "1h"}, mine).status == 204
    # The admin token reads it as the app the headers name.
    as_orders = {**ADMIN, "dapr-app-id": "orders"}
    assert guarded.call("GET", "/v1.0/jobs/mine", headers=as_orders).json["name"] == "mine"
    assert guarded.call("GET", "/v1.0/jobs/mine", headers=ADMIN).status == 404
    # Headers that agree with the token are fine; one that names another scope is a 403.
    agreeing = {**mine, "dapr-app-id": "orders", "dapr-namespace": "default"}
    assert guarded.call("GET", "/v1.0/jobs/mine", headers=agreeing).status == 200
    for other in ({"dapr-app-id": "billing"}, {"dapr-namespace": "prod"}):
        answer = guarded.call("GET", "/v1.0/jobs/mine", headers={**mine, **other})
        assert answer.status == 403, answer
        assert answer.json["errorCode"] == "ERR_PERMISSION_DENIED"
    answer = guarded.call("PUT", "/v1.0/apps/billing", {"url": "http://h:1"}, mine)
    assert answer.status == 403
    assert guarded.call("PUT", "/v1.0/apps/orders", {"url": "http://h:1"}, mine).status == 204
    # A wrong admin token is refused on the Jobs API too, whatever app token comes with it.
    wrong = {**mine, "Authorization": "Bearer wrong"}
    assert guarded.call("GET", "/v1.0/jobs/mine", headers=wrong).status == 401
    # An app token is no admin credential.
    as_admin = {"Authorization": f"Bearer {issued.json['token']}"}
    assert guarded.call("GET", "/admin/cluster", headers=as_admin).status == 401
    # Revoked, it opens nothing.
    path = f"/admin/apps/orders/tokens/{issued.json['id']}"
    assert guarded.call("DELETE", path, headers=ADMIN).status == 204
    assert guarded.call("GET", "/v1.0/jobs/mine", headers=mine).status == 401


def test_a_write_let_through_by_a_node_that_had_not_applied_the_revocation_changes_nothing(
    guarded: LiveNode,
) -> None:
    # A node checks an app token against its own replica: one that had not applied the
    # revocation yet let the request through. The write it proposes comes after the revocation
    # in the log, and every replica refuses it there. The service is asked directly here, as
    # such a node's edge would have asked it, with the revoked token's scope.
    issued = guarded.call("POST", "/admin/apps/laggard/tokens", headers=ADMIN).json
    mine = {"dapr-api-token": issued["token"]}
    assert guarded.call("POST", "/v1.0/jobs/before", {"dueTime": "1h"}, mine).status == 204
    path = f"/admin/apps/laggard/tokens/{issued['id']}"
    assert guarded.call("DELETE", path, headers=ADMIN).status == 204
    service = guarded.service
    assert service is not None
    scope = Scope(DEFAULT_SCOPE_PART, "laggard", token_id=issued["id"])
    with pytest.raises(Unauthenticated, match="revoked"):
        guarded.run(service.schedule(scope, "after", {"dueTime": "1h"}))
    with pytest.raises(Unauthenticated, match="revoked"):
        guarded.run(service.delete(scope, "before"))
    as_laggard = {**ADMIN, "dapr-app-id": "laggard"}
    assert guarded.call("GET", "/v1.0/jobs/after", headers=as_laggard).status == 404
    assert guarded.call("GET", "/v1.0/jobs/before", headers=as_laggard).status == 200


def test_tokens_are_listed_by_id_and_time_never_shown_again(guarded: LiveNode) -> None:
    headers = {**ADMIN, "dapr-namespace": "listing"}
    first = guarded.call("POST", "/admin/apps/lister/tokens", headers=headers).json
    second = guarded.call("POST", "/admin/apps/lister/tokens", headers=headers).json
    listed = guarded.call("GET", "/admin/apps/lister/tokens", headers=headers)
    assert listed.status == 200
    assert [t["id"] for t in listed.json["tokens"]] == [first["id"], second["id"]]
    assert all(set(t) == {"id", "createdAt"} for t in listed.json["tokens"])
    assert first["token"].encode() not in listed.body
    # Another namespace's app of the same name has none.
    assert guarded.call("GET", "/admin/apps/lister/tokens", headers=ADMIN).json == {"tokens": []}
    answer = guarded.call("DELETE", "/admin/apps/lister/tokens/NOT-AN-ID", headers=headers)
    assert answer.status == 400


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
