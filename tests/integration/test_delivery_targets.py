"""Deliveries go only where they should, on a real 3-process cluster with real apps: the issue's
self-SSRF (an app URL pointing at a node's admin route) is refused and a URL that reaches an
admin path anyway stops nothing; a redirecting app reaches no other host and its attempts fail;
an app answering 10 MiB gets 64 KiB read; `--app-host-allow` refuses an app outside it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.node_helpers import App, Rig, call, running_rig, settle, wait_until
from tests.support.local_cluster import running_cluster
from tests.support.sink import Sink

DELIVERY_S = 20.0
MIB = 1024 * 1024


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    with running_rig(tmp_path_factory.mktemp("targets")) as rig:
        yield rig


def owned_by(app: App, node_id: str, stem: str) -> str:
    """A job name of `app` that node `node_id` fires."""
    names = (app.name(f"{stem}{k}") for k in range(10_000))
    return next(name for name in names if app.owner(name) == node_id)


def fired_by(sink: Sink, name: str, node_id: str) -> int:
    return sum(1 for c in sink.calls_for(name) if c.headers.get("tock-node") == node_id)


def test_the_self_ssrf_is_refused_and_an_admin_path_url_stops_nothing(rig: Rig) -> None:
    node2 = rig.cluster.nodes[1].http
    attacker = App(rig, "s")
    for url, problem in (
        # The attack: the `?` turns the `/job/{name}` delivery appends into a query.
        (f"http://{node2}/admin/quiesce?", "must not have a query"),
        (f"http://{node2}/admin/quiesce#", "must not have a fragment"),
        (f"http://x@{node2}/admin/quiesce", "must not have userinfo"),
    ):
        answer = attacker.call(1, "PUT", "/v1.0/apps/s", {"url": url})
        assert answer.status == 400, answer
        assert problem in answer.json["message"], answer
    assert attacker.call(2, "GET", "/v1.0/apps/s").status == 404

    # A node's own job, firing on node 2 all along: the witness that node 2 keeps firing.
    witness = rig.app()
    watched = owned_by(witness, "n2", "witness")
    witness.create(watched, {"schedule": "@every 1s"})
    assert len(rig.sink.wait_for(watched, 1, DELIVERY_S)) >= 1

    # Without a query, a URL reaches admin paths only below `/job/`: not a route, and guarded
    # by the admin token where it is one. Jobs on every node deliver there every second.
    answer = attacker.call(1, "PUT", "/v1.0/apps/s", {"url": f"http://{node2}/admin/quiesce"})
    assert answer.status == 204, answer
    # Dropped when they fail, so that `count` counts every attempt, whatever the answer.
    every_second = {"schedule": "@every 1s", "failurePolicy": {"drop": {}}}
    ssrf = [owned_by(attacker, node_id, "ssrf") for node_id in ("n1", "n2", "n3")]
    for name in ssrf:
        attacker.create(name, every_second)
    wait_until(
        lambda: all(attacker.get(name).json["status"]["count"] >= 3 for name in ssrf),
        DELIVERY_S,
        "three deliveries of each job to node 2's admin path",
    )
    # After those deliveries, node 2 still fires its partitions.
    before = fired_by(rig.sink, watched, "n2")
    deadline = time.monotonic() + DELIVERY_S
    while fired_by(rig.sink, watched, "n2") < before + 3 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert fired_by(rig.sink, watched, "n2") >= before + 3, "node 2 stopped firing"
    status = call(rig.url(1) + "/admin/cluster", headers=rig.cluster.admin_headers()).json
    assert {m["id"]: m["alive"] for m in status["members"]} == {"n1": True, "n2": True, "n3": True}
    attacker.call(1, "DELETE", "/v1.0/jobs?prefix=")
    witness.call(1, "DELETE", f"/v1.0/jobs/{watched}")


def test_a_redirecting_app_reaches_no_other_host_and_each_attempt_fails(rig: Rig) -> None:
    other_host = Sink().start()
    redirecting = Sink(status_for=lambda name, n: 307, redirect_to=other_host.url).start()
    try:
        app = App(rig, "redirected")
        body = {"url": redirecting.url, "token": "app-s3cret"}
        assert app.call(1, "PUT", "/v1.0/apps/redirected", body).status == 204
        name = app.name("moved")
        policy = {"constant": {"interval": "1s", "maxRetries": 2}}
        app.create(name, {"dueTime": "1s", "failurePolicy": policy})
        # Each 307 is a failed attempt: the first and two retries, then the job gives up.
        calls = settle(redirecting, name, 3, quiet_s=3, timeout_s=DELIVERY_S)
        assert [c.headers["tock-attempt"] for c in calls] == ["1", "2", "3"]
        assert all(c.headers["dapr-api-token"] == "app-s3cret" for c in calls)
        # Neither the payload nor the token ever reached the host the redirects pointed at.
        assert other_host.calls == []
    finally:
        redirecting.stop()
        other_host.stop()


def test_an_app_answering_10_mib_gets_64_kib_read_and_the_node_stays_healthy(rig: Rig) -> None:
    flooding = Sink(answer_bytes=10 * MIB).start()
    try:
        app = App(rig, "flooding")
        assert app.call(1, "PUT", "/v1.0/apps/flooding", {"url": flooding.url}).status == 204
        name = app.name("flood")
        app.create(name, {"schedule": "@every 1s", "repeats": 3})
        calls = settle(flooding, name, 3, quiet_s=3, timeout_s=DELIVERY_S)
        # A 200 with a huge body is still a success: no retry.
        assert [c.headers["tock-attempt"] for c in calls] == ["1", "1", "1"]
        deadline = time.monotonic() + DELIVERY_S
        while len(flooding.answered_bytes) < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        # The node closed each connection after its 64 KiB: what got out is what the socket
        # buffers held, far from the 10 MiB the app meant to send.
        assert len(flooding.answered_bytes) == 3
        assert all(sent < 4 * MIB for sent in flooding.answered_bytes), flooding.answered_bytes
        for node in rig.cluster.nodes:
            assert call(node.url + "/v1.0/healthz/ready").status == 204
    finally:
        flooding.stop()


def test_app_host_allow_refuses_an_app_outside_it_at_registration(tmp_path: Path) -> None:
    on_loopback = Sink().start()
    allowed = Sink(host="127.0.0.2").start()
    allow = ("--app-host-allow", "127.0.0.2")
    try:
        with running_cluster(tmp_path, nodes=1, node_args=allow) as cluster:
            node = cluster.nodes[0].url
            localhost = on_loopback.url.replace("127.0.0.1", "localhost")
            for url, problem in (
                (on_loopback.url, "app url host 127.0.0.1 is not in --app-host-allow"),
                (localhost, "app url host 'localhost' resolves to 127.0.0.1"),
            ):
                answer = call(node + "/v1.0/apps/app", "PUT", {"url": url})
                assert answer.status == 400, answer
                assert answer.json["message"].startswith(problem), answer
            assert call(node + "/v1.0/apps/app", "GET").status == 404
            assert call(node + "/v1.0/apps/app", "PUT", {"url": allowed.url}).status == 204
            as_app = {"dapr-app-id": "app"}
            created = call(node + "/v1.0/jobs/inside", "POST", {"dueTime": "1s"}, as_app)
            assert created.status == 204, created
            assert len(allowed.wait_for("inside", 1, DELIVERY_S)) == 1
        assert on_loopback.calls == []
    finally:
        on_loopback.stop()
        allowed.stop()
