"""Who may do what, on a real 3-process cluster in token mode (`tock node` without --open-api).

- Every admin route, on every node, refuses a request without the admin token, with a wrong
  one and with an app token (401), and lets the admin token through; unknown admin paths too.
- The probes and the OpenAPI document answer without any credential.
- Two apps, each with its own app token, cannot read, list, delete, re-point or watch each
  other's jobs; a header naming the other app is a 403, no token a 401.
- An app token works on every node as soon as its issue is answered, and stops working on every
  node (its watch streams closed) within a second of its revocation.
- A signed internal request replayed, sent to another member, or sent stale is refused.

The gRPC face of the same rules is tested with the official SDK in test_grpc_token.py.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import aiohttp
import pytest

from cluster.local import LocalCluster
from node.client.client import TockClient, WatchStream
from node.delivery.trigger import Trigger
from node.internal_auth import SIGNATURE_HEADER, RequestSigner
from node.watch.forward import INTERNAL_DELIVER_PATH
from node.watch.frames import encode_forward
from store.clock import FakeClock, SystemClock
from store.errors import Forbidden, Unauthenticated
from tests.integration.node_helpers import Answer, call, wait_until
from tests.support.local_cluster import running_cluster
from tests.support.sink import Sink

NODES = (1, 2, 3)
# The bound the contract sets on a revocation taking effect everywhere.
REVOKED_WITHIN_S = 1.0
WAIT_S = 15.0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with running_cluster(tmp_path_factory.mktemp("access"), open_api=False) as running:
        yield running


@pytest.fixture(scope="module")
def sink() -> Iterator[Sink]:
    started = Sink().start()
    yield started
    started.stop()


@dataclass(frozen=True)
class AppToken:
    app: str
    id: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"dapr-api-token": self.token}


def url(cluster: LocalCluster, node: int) -> str:
    return cluster.nodes[node - 1].url


def issue(cluster: LocalCluster, app: str, node: int = 1) -> AppToken:
    answer = call(f"{url(cluster, node)}/admin/apps/{app}/tokens", "POST", b"", admin(cluster))
    assert answer.status == 201, answer
    return AppToken(app, answer.json["id"], answer.json["token"])


def admin(cluster: LocalCluster) -> dict[str, str]:
    return cluster.admin_headers()


def fresh_app(stem: str) -> str:
    return f"{stem}-{uuid.uuid4().hex[:6]}"


# -- the admin routes ----------------------------------------------------------------------------

# Each admin route with a request that, once past the token check, changes no membership and
# stops no node, and the status it then answers.
ADMIN_ROUTES: list[tuple[str, str, object, int]] = [
    ("GET", "/admin/cluster", None, 200),
    ("GET", "/admin/digest", None, 200),
    ("POST", "/admin/members", {"id": "", "raft": "127.0.0.1:1", "http": "127.0.0.1:2"}, 400),
    ("DELETE", "/admin/members/no-such-member", None, 400),
    ("GET", "/metrics", None, 200),
    ("POST", "/admin/apps/probe/tokens", b"", 201),
    ("GET", "/admin/apps/probe/tokens", None, 200),
    ("DELETE", "/admin/apps/probe/tokens/0123456789abcdef", None, 204),
    ("GET", "/admin/no-such-route", None, 404),
    ("PATCH", "/admin/cluster", None, 405),
]


def test_every_admin_route_needs_the_admin_token_on_every_node(cluster: LocalCluster) -> None:
    app_token = issue(cluster, fresh_app("not-admin"))
    refused = {
        "no credential": {},
        "a wrong admin token": {"Authorization": "Bearer not-the-admin-token"},
        "an app token": {"Authorization": f"Bearer {app_token.token}"},
        "an app token in its own header": app_token.headers,
    }
    for node in NODES:
        base = url(cluster, node)
        for method, path, body, granted in ADMIN_ROUTES:
            for what, headers in refused.items():
                answer = call(base + path, method, body, headers)
                assert answer.status == 401, (node, method, path, what, answer)
                assert answer.json["errorCode"] == "ERR_UNAUTHORIZED"
            answer = call(base + path, method, body, admin(cluster))
            assert answer.status == granted, (node, method, path, answer)
    # What the granted requests did: a token each for app probe, and no member was added.
    tokens = call(f"{url(cluster, 2)}/admin/apps/probe/tokens", headers=admin(cluster))
    assert len(tokens.json["tokens"]) == len(NODES)
    status = call(f"{url(cluster, 3)}/admin/cluster", headers=admin(cluster)).json
    assert {m["id"] for m in status["members"]} == {"n1", "n2", "n3"}


def test_quiesce_needs_the_admin_token(tmp_path_factory: pytest.TempPathFactory) -> None:
    # Quiescing stops a node's firing for good: on a cluster of its own.
    with running_cluster(tmp_path_factory.mktemp("quiesce"), nodes=1, open_api=False) as lone:
        base = url(lone, 1)
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            assert call(base + "/admin/quiesce", "POST", b"", headers).status == 401
        assert call(base + "/admin/quiesce", "POST", b"", admin(lone)).status == 204


def test_the_probes_and_the_document_need_no_credential(cluster: LocalCluster) -> None:
    for node in NODES:
        base = url(cluster, node)
        for headers in ({}, {"dapr-api-token": "garbage", "Authorization": "Bearer garbage"}):
            for path in ("/v1.0/healthz", "/v1.0/healthz/ready", "/v1.0/healthz/outbound"):
                assert call(base + path, headers=headers).status == 204, (node, path)
            document = call(base + "/openapi.json", headers=headers)
            assert document.status == 200 and document.json["openapi"].startswith("3.")


# -- two apps, kept apart ------------------------------------------------------------------------


def test_two_apps_cannot_touch_each_others_jobs_over_http(
    cluster: LocalCluster, sink: Sink
) -> None:
    orders, billing = issue(cluster, fresh_app("orders")), issue(cluster, fresh_app("billing"))

    def as_(token: AppToken, node: int, method: str, path: str, body: object = None,
            **headers: str) -> Answer:  # fmt: skip
        return call(url(cluster, node) + path, method, body, {**token.headers, **headers})

    register = as_(orders, 1, "PUT", f"/v1.0/apps/{orders.app}", {"url": sink.url})
    assert register.status == 204, register
    job = {"dueTime": "1h", "data": {"card": "4111"}}
    assert as_(orders, 1, "POST", "/v1.0/jobs/secret", job).status == 204
    claim_orders = {"dapr-app-id": orders.app}
    for node in NODES:
        # billing's own scope holds no such job: its reads, lists and deletes find nothing.
        assert as_(billing, node, "GET", "/v1.0/jobs/secret").status == 404
        assert as_(billing, node, "GET", "/v1.0/jobs").json["jobs"] == []
        assert as_(billing, node, "DELETE", "/v1.0/jobs/secret").status == 204
        assert as_(billing, node, "DELETE", "/v1.0/jobs?prefix=").json == {"deleted": 0}
        # Naming orders is refused, whatever the route.
        refused = [
            as_(billing, node, "GET", "/v1.0/jobs/secret", **claim_orders),
            as_(billing, node, "GET", "/v1.0/jobs", **claim_orders),
            as_(billing, node, "DELETE", "/v1.0/jobs/secret", **claim_orders),
            as_(billing, node, "DELETE", "/v1.0/jobs?prefix=", **claim_orders),
            as_(billing, node, "POST", "/v1.0/jobs/planted", job, **claim_orders),
            as_(billing, node, "GET", "/v1.0/jobs/secret", **{"dapr-namespace": "other"}),
            as_(billing, node, "PUT", f"/v1.0/apps/{orders.app}", {"url": "http://evil:1"}),
            as_(billing, node, "GET", f"/v1.0/apps/{orders.app}"),
            as_(billing, node, "DELETE", f"/v1.0/apps/{orders.app}"),
        ]
        for answer in refused:
            assert answer.status == 403, (node, answer)
            assert answer.json["errorCode"] == "ERR_PERMISSION_DENIED"
        # Without a token, or with a made-up one, nothing at all.
        for headers in ({}, {"dapr-api-token": f"{orders.id}.guessed"}, claim_orders):
            answer = call(url(cluster, node) + "/v1.0/jobs/secret", headers=headers)
            assert answer.status == 401, (node, headers, answer)
    # orders' job and registration are as orders left them.
    got = as_(orders, 3, "GET", "/v1.0/jobs/secret")
    assert (got.status, got.json["data"]) == (200, {"card": "4111"})
    assert as_(orders, 2, "GET", f"/v1.0/apps/{orders.app}").json["url"] == sink.url
    assert [j["name"] for j in as_(orders, 2, "GET", "/v1.0/jobs").json["jobs"]] == ["secret"]
    # The admin token acts as any app: the headers say which.
    as_orders = {**admin(cluster), "dapr-app-id": orders.app}
    assert call(url(cluster, 2) + "/v1.0/jobs/secret", headers=as_orders).status == 200


def test_an_app_cannot_watch_another_apps_triggers(cluster: LocalCluster) -> None:
    orders, billing = issue(cluster, fresh_app("orders")), issue(cluster, fresh_app("billing"))

    async def scenario() -> None:
        for node in NODES:
            spy = TockClient(url(cluster, node), app_id=None, namespace=None, token=billing.token)
            anonymous = TockClient(url(cluster, node), app_id=orders.app)
            async with spy, anonymous:
                with pytest.raises(Forbidden):
                    async with spy.watch(orders.app):
                        pass
                with pytest.raises(Unauthenticated):
                    async with anonymous.watch():
                        pass
        # orders' own stream gets orders' trigger; billing's stream, held all along, nothing.
        owner = TockClient(url(cluster, 2), app_id=None, namespace=None, token=orders.token)
        other = TockClient(url(cluster, 3), app_id=None, namespace=None, token=billing.token)
        async with (
            owner,
            other,
            owner.watch(orders.app) as mine,
            other.watch(billing.app) as theirs,
        ):
            creator = TockClient(url(cluster, 1), app_id=None, namespace=None, token=orders.token)
            async with creator:
                await creator.create("watched", due_time="0s", data="for orders only")
            async with asyncio.timeout(WAIT_S):
                (trigger,) = await anext(mine)
            assert (trigger.name, trigger.data) == ("watched", b'"for orders only"')
            await mine.ack([(trigger.id, "SUCCESS")])
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(1.0):
                    await anext(theirs)

    asyncio.run(scenario())


# -- issue and revoke ------------------------------------------------------------------------------


def test_a_token_works_everywhere_once_issued_and_nowhere_within_a_second_of_revocation(
    cluster: LocalCluster,
) -> None:
    app = fresh_app("revoked")
    # Issued through node 1 and used at once on the others: they learn of it through the log.
    token = issue(cluster, app, node=1)
    for node in (3, 2, 1):
        answer = call(f"{url(cluster, node)}/v1.0/jobs", headers=token.headers)
        assert answer.status == 200, (node, answer)

    async def scenario() -> dict[str, float]:
        client = TockClient(url(cluster, 3), app_id=None, namespace=None, token=token.token)
        async with client, client.watch(app) as stream:
            revoke = f"{url(cluster, 1)}/admin/apps/{app}/tokens/{token.id}"
            answer = await asyncio.to_thread(call, revoke, "DELETE", None, admin(cluster))
            assert answer.status == 204, answer
            revoked_at = time.monotonic()
            took = await asyncio.gather(
                *(refused_after(node, revoked_at) for node in NODES),
                closed_after(stream, revoked_at),
            )
        return dict(zip(["n1", "n2", "n3", "watch stream on n3"], took, strict=True))

    async def refused_after(node: int, revoked_at: float) -> float:
        def refused() -> bool:
            answer = call(f"{url(cluster, node)}/v1.0/jobs", headers=token.headers)
            return answer.status == 401

        while not await asyncio.to_thread(refused):
            if time.monotonic() - revoked_at > WAIT_S:
                break
            await asyncio.sleep(0.02)
        return time.monotonic() - revoked_at

    async def closed_after(stream: WatchStream, revoked_at: float) -> float:
        async with asyncio.timeout(WAIT_S):
            with pytest.raises(StopAsyncIteration):
                await anext(stream)
        return time.monotonic() - revoked_at

    took = asyncio.run(scenario())
    print(f"revocation took effect after (s): {took}")
    assert max(took.values()) < REVOKED_WITHIN_S, took
    listed = call(f"{url(cluster, 2)}/admin/apps/{app}/tokens", headers=admin(cluster))
    assert listed.json == {"tokens": []}


# -- node-to-node requests -------------------------------------------------------------------------


def test_a_replayed_internal_request_is_refused(cluster: LocalCluster) -> None:
    secret = (cluster.data_dir / "secret").read_text().strip()
    node2 = cluster.nodes[1]
    trigger = Trigger("default", fresh_app("unwatched"), "job", "uid", 1, 1, b"")
    body = encode_forward([trigger], 1000)

    def signed(clock: SystemClock | FakeClock, audience: str) -> dict[str, str]:
        signature = RequestSigner(secret, clock).signature(
            audience, "POST", INTERNAL_DELIVER_PATH, body
        )
        return {SIGNATURE_HEADER: signature, "content-type": "application/msgpack"}

    async def post(node_url: str, headers: dict[str, str]) -> tuple[int, str]:
        async with (
            aiohttp.ClientSession() as session,
            session.post(node_url + INTERNAL_DELIVER_PATH, data=body, headers=headers) as reply,
        ):
            return reply.status, (await reply.read()).decode(errors="replace")

    async def scenario() -> None:
        good = signed(SystemClock(), node2.http)
        assert (await post(node2.url, good))[0] == 200
        # The same request again, to the same node or to another member: refused.
        status, text = await post(node2.url, good)
        assert status == 401 and "replayed" in text, text
        assert (await post(cluster.nodes[2].url, good))[0] == 401
        # A request signed a minute ago: outside the freshness window.
        minute_ago = FakeClock(wall_ms=SystemClock().wall_ms() - 60_000)
        status, text = await post(node2.url, signed(minute_ago, node2.http))
        assert status == 401 and "stale" in text, text

    asyncio.run(scenario())
    # The members' own requests still pass: forwarding between nodes keeps working (the watch
    # test above delivers through it as well), and every node is still ready.
    wait_until(
        lambda: all(call(f"{node.url}/v1.0/healthz/ready").status == 204 for node in cluster.nodes),
        WAIT_S,
        "every node ready",
    )
