"""The watch stream across a real 3-node cluster: a watcher on any node gets the triggers of the
jobs every node owns, watchers share the load, and triggers in flight on a closed stream go to
another watcher or, with none left, to the app's URL.

One cluster serves the module; each test acts for an app of its own. Job names are picked by
their owner (the ring of the live members), so a test knows which node fires each job.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from cluster.local import LocalCluster
from cluster.ring import Ring
from node.client.client import TockClient, WatchStream, WatchTrigger
from store.errors import JobNotFound
from store.partition import partition_of
from tests.support.local_cluster import running_cluster
from tests.support.sink import Sink
from tests.support.watch_streams import hand_over_on_close

PARTITIONS = 1024
WAIT_S = 20.0
SCENARIO_S = 60.0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    data_dir: Path = tmp_path_factory.mktemp("watch-cluster")
    with running_cluster(data_dir, nodes=3) as running:
        yield running


@pytest.fixture(scope="module")
def sink() -> Iterator[Sink]:
    app = Sink().start()
    yield app
    app.stop()


def names_owned_by(cluster: LocalCluster, app: str, owner: str, count: int) -> list[str]:
    """`count` job names of `app` whose partition `owner` fires in the current epoch."""
    status = cluster.cluster_status("n1")
    members = status["members"]
    assert isinstance(members, list)
    ring = Ring(tuple(m["id"] for m in members if m["alive"]), PARTITIONS)
    names = (f"{owner}-job-{k}" for k in range(100_000))
    owned = (n for n in names if ring.owner(partition_of("default", app, n, PARTITIONS)) == owner)
    return [next(owned) for _ in range(count)]


def scenario(body: Callable[[str], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(body(f"app-{uuid.uuid4().hex[:8]}"), SCENARIO_S))


def client(cluster: LocalCluster, node_id: str, app: str) -> TockClient:
    return TockClient(cluster.node(node_id).url, app_id=app)


async def next_batch(stream: WatchStream) -> list[WatchTrigger]:
    return await asyncio.wait_for(anext(stream), WAIT_S)


async def wait_gone(jobs: TockClient, names: list[str]) -> None:
    async with asyncio.timeout(WAIT_S):
        for name in names:
            while True:
                try:
                    await jobs.get(name)
                except JobNotFound:
                    break
                await asyncio.sleep(0.05)


def test_a_watcher_on_one_node_gets_the_triggers_of_jobs_every_node_owns(
    cluster: LocalCluster,
) -> None:
    async def body(app: str) -> None:
        names = [n for owner in ("n1", "n2", "n3") for n in names_owned_by(cluster, app, owner, 2)]
        policy = {"constant": {"interval": "200ms", "maxRetries": 1}}
        async with (
            client(cluster, "n1", app) as n1,
            client(cluster, "n3", app) as n3,
            n1.watch() as stream,
        ):
            for name in names:
                await n3.create(name, due_time="1s", failure_policy=policy)
            attempts: dict[str, list[int]] = {name: [] for name in names}
            while sum(map(len, attempts.values())) < len(names) + 1:
                batch = await next_batch(stream)
                for trigger in batch:
                    attempts[trigger.name].append(trigger.attempt)
                # The first attempt of the job n2 owns fails: its retry comes back here.
                await stream.ack(
                    (
                        t.id,
                        "FAILED" if attempts[t.name] == [1] and t.name == names[2] else "SUCCESS",
                    )
                    for t in batch
                )
            await wait_gone(n3, names)
        expected = {name: [1] for name in names} | {names[2]: [1, 2]}
        assert attempts == expected

    scenario(body)


def test_watchers_on_two_nodes_share_the_load(cluster: LocalCluster) -> None:
    async def body(app: str) -> None:
        names = names_owned_by(cluster, app, "n3", 30)
        got: dict[str, list[str]] = {"n1": [], "n2": []}

        async def serve(stream: WatchStream, node_id: str) -> None:
            async def handle(trigger: WatchTrigger) -> bool:
                got[node_id].append(trigger.name)
                return True

            await stream.serve(handle)

        async with (
            client(cluster, "n1", app) as n1,
            client(cluster, "n2", app) as n2,
            n1.watch() as one,
            n2.watch() as two,
        ):
            serving = [
                asyncio.create_task(serve(one, "n1")),
                asyncio.create_task(serve(two, "n2")),
            ]
            for name in names:
                await n1.create(name, due_time="1s")
            await wait_gone(n1, names)
            for task in serving:
                task.cancel()
        assert sorted(got["n1"] + got["n2"]) == sorted(names)
        assert got["n1"] and got["n2"]

    scenario(body)


def test_triggers_in_flight_on_a_closed_stream_go_to_the_other_watcher(
    cluster: LocalCluster,
) -> None:
    async def body(app: str) -> None:
        (name,) = names_owned_by(cluster, app, "n3", 1)
        async with (
            client(cluster, "n1", app) as n1,
            client(cluster, "n2", app) as n2,
            n1.watch() as one,
            n2.watch() as two,
        ):
            await n1.create(name, due_time="1s")
            await hand_over_on_close(one, two, WAIT_S)
            await wait_gone(n1, [name])

    scenario(body)


def test_with_no_watcher_left_triggers_go_to_the_url_again(
    cluster: LocalCluster, sink: Sink
) -> None:
    async def body(app: str) -> None:
        first_name, second_name = names_owned_by(cluster, app, "n1", 2)
        async with client(cluster, "n2", app) as n2:
            await n2.register_app(sink.url, token="s3cret")
            async with n2.watch() as stream:
                await n2.create(first_name, due_time="1s")
                (trigger,) = await next_batch(stream)
                # Closed with the trigger unacked, and no other watcher: the URL gets it.
            calls = await asyncio.to_thread(sink.wait_for, first_name, 1, WAIT_S)
            assert [call.headers["tock-trigger-id"] for call in calls] == [trigger.trigger_id]
            assert calls[0].headers["dapr-api-token"] == "s3cret"
            await n2.create(second_name, due_time="1s")
            assert len(await asyncio.to_thread(sink.wait_for, second_name, 1, WAIT_S)) == 1
            await wait_gone(n2, [first_name, second_name])

    scenario(body)
