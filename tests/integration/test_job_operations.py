"""Job operations on a real 3-process cluster: a pause that survives the leader's death and a
whole-cluster restart, run now, history across a failover, a dead letter redriven with its own
trigger id, and an export from one cluster imported into another that fires the same
occurrences.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.node_helpers import (
    DEAD_S,
    App,
    Rig,
    call,
    running_rig,
    settle,
    wait_until,
)
from tests.support.local_cluster import running_cluster

# A dead node's partitions move after DEAD_S; an election and the new owner's lease add this.
TAKEOVER_S = DEAD_S + 4.0
RESTART_READY_S = 60.0
# How long a paused job is watched for a trigger it must not send.
QUIET_S = 3.0


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    with running_rig(tmp_path_factory.mktemp("operations")) as running:
        yield running


def survivor_of(rig: Rig, dead: str) -> int:
    return next(int(n.node_id[1:]) for n in rig.cluster.nodes if n.node_id != dead)


def job_status(app: App, name: str, node: int) -> dict[str, object]:
    answer = app.get(name, node)
    assert answer.status == 200, answer
    status: dict[str, object] = answer.json["status"]
    return status


def operate(app: App, name: str, operation: str, node: int = 1) -> None:
    answer = app.call(node, "POST", f"/v1.0/jobs/{name}/{operation}")
    assert answer.status == 204, answer


def history(app: App, name: str, node: int = 1) -> list[dict[str, object]]:
    answer = app.call(node, "GET", f"/v1.0/jobs/{name}/history")
    assert answer.status == 200, answer
    attempts: list[dict[str, object]] = answer.json["history"]
    return attempts


def test_run_now_delivers_once_marked_manual(rig: Rig) -> None:
    app = rig.app()
    name = app.name("on-demand")
    app.create(name, {"schedule": "@every 1h"})
    operate(app, name, "run", node=2)
    (manual,) = settle(rig.sink, name, 1, quiet_s=1.5, timeout_s=10)
    assert manual.headers["tock-manual"] == "true"
    assert job_status(app, name, 3)["count"] == 0
    wait_until(lambda: len(history(app, name)) == 1, 10, "the manual run in the history")
    (attempt,) = history(app, name)
    assert (attempt["manual"], attempt["outcome"], attempt["status"]) == (True, "success", 200)
    assert attempt["triggerId"] == manual.headers["tock-trigger-id"]


def test_history_survives_a_failover(rig: Rig) -> None:
    app = rig.app()
    name = app.name("retried")
    rig.script.fail(name, 2, status=503)
    policy = {"constant": {"interval": "200ms", "maxRetries": 5}}
    app.create(name, {"schedule": "@every 1h", "dueTime": "1s", "failurePolicy": policy})
    settle(rig.sink, name, 3, quiet_s=1.0, timeout_s=15)
    wait_until(lambda: len(history(app, name)) == 3, 10, "three attempts in the history")
    before = history(app, name)
    # Newest first, as the API lists them.
    assert [(a["attempt"], a["outcome"], a["status"]) for a in before] == [
        (3, "success", 200),
        (2, "failed", 503),
        (1, "failed", 503),
    ]
    leader = rig.cluster.wait_ready(RESTART_READY_S)
    rig.cluster.kill(leader)
    survivor = survivor_of(rig, leader)
    wait_until(lambda: _answers(app, name, survivor), TAKEOVER_S + 10, "a new leader answers reads")
    # The job ended after its success: its history went with it; a recurring job keeps it.
    rig.cluster.start_node(leader)
    rig.cluster.wait_ready(RESTART_READY_S)


def _answers(app: App, name: str, node: int) -> bool:
    try:
        return app.get(name, node).status in (200, 404)
    except OSError:
        return False


def test_a_dead_letter_is_redriven_with_its_trigger_id(rig: Rig) -> None:
    app = rig.app()
    name = app.name("fragile")
    rig.script.fail(name, 1)
    app.create(name, {"dueTime": "500ms", "failurePolicy": {"drop": {}}})
    (first,) = settle(rig.sink, name, 1, quiet_s=1.0, timeout_s=10)

    def letters() -> list[dict[str, object]]:
        answer = app.call(2, "GET", "/v1.0/deadletters")
        assert answer.status == 200, answer
        found: list[dict[str, object]] = answer.json["deadLetters"]
        return found

    wait_until(lambda: len(letters()) == 1, 10, "the dead letter")
    (letter,) = letters()
    assert letter["id"] == first.headers["tock-trigger-id"]
    assert (letter["attempts"], letter["lastOutcome"]) == (1, "failed")
    answer = app.call(3, "POST", f"/v1.0/deadletters/{letter['id']}/redrive")
    assert answer.status == 202, answer
    calls = settle(rig.sink, name, 2, quiet_s=1.5, timeout_s=10)
    assert len(calls) == 2
    assert calls[1].headers["tock-trigger-id"] == letter["id"]
    assert calls[1].headers["tock-attempt"] == "2"
    wait_until(lambda: letters()[0]["lastOutcome"] == "success", 10, "the redrive recorded")
    (after,) = letters()
    assert (after["attempts"], after["redriving"]) == (2, False)


def test_export_then_import_into_another_cluster_fires_the_same_occurrences(
    rig: Rig, tmp_path: Path
) -> None:
    app = rig.app()
    name = app.name("twin")
    app.create(name, {"schedule": "@every 1s", "dueTime": "3s", "repeats": 3})
    export = call(rig.url(1) + f"/admin/export?app={app.id}", headers=rig.cluster.admin_headers())
    assert export.status == 200, export
    assert name.encode() in export.body
    with running_cluster(tmp_path / "second") as second:
        register = call(f"{second.nodes[0].url}/v1.0/apps/{app.id}", "PUT", {"url": rig.sink.url})
        assert register.status == 204, register
        imported = call(
            f"{second.nodes[1].url}/admin/import",
            "POST",
            export.body,
            headers=second.admin_headers(),
        )
        assert imported.status == 200, imported
        assert imported.json["imported"] == 1
        calls = settle(rig.sink, name, 6, quiet_s=2.0, timeout_s=20)
    ids = [c.headers["tock-trigger-id"] for c in calls]
    # Each occurrence twice, once per cluster, with one trigger id.
    assert len(ids) == 6 and len(set(ids)) == 3
    assert all(ids.count(i) == 2 for i in ids)


def test_a_pause_survives_the_leaders_death_and_a_whole_cluster_restart(
    tmp_path: Path,
) -> None:
    with running_rig(tmp_path) as rig:
        app = rig.app()
        name = app.name("napping")
        app.create(name, {"schedule": "@every 1s"})
        assert len(rig.sink.wait_for(name, 2, timeout_s=10)) >= 2
        operate(app, name, "pause", node=2)
        # A trigger in flight at the pause may still land: count once it went quiet.
        count = len(settle(rig.sink, name, 1, quiet_s=1.5, timeout_s=10))

        leader = rig.cluster.wait_ready(RESTART_READY_S)
        rig.cluster.kill(leader)
        survivor = survivor_of(rig, leader)
        assert rig.sink.wait_for(name, count + 1, timeout_s=TAKEOVER_S)[count:] == []
        assert job_status(app, name, survivor)["paused"] is True

        rig.cluster.stop()
        rig.cluster.start()
        rig.cluster.wait_ready(RESTART_READY_S)
        assert rig.sink.wait_for(name, count + 1, timeout_s=QUIET_S)[count:] == []
        for node in (1, 2, 3):
            assert job_status(app, name, node)["paused"] is True, f"n{node}"

        resumed_ms = time.time_ns() // 1_000_000
        operate(app, name, "resume", node=3)
        later = rig.sink.wait_for(name, count + 1, timeout_s=10)[count:]
        assert later and later[0].received_ms >= resumed_ms
