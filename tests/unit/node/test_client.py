"""TockClient and the `tock job` / `tock status` commands against a live one-node server: the
round trips, and that error answers come back as the TockError classes."""

from __future__ import annotations

import argparse
import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest

from node.client.cli import add_commands, format_status, parse_failure_policy
from node.client.client import RequestFailed, TockClient
from store.errors import AppNotFound, JobConflict, JobNotFound, Unavailable, ValidationError
from tests.unit.node.api_node import LiveNode, free_port

T = TypeVar("T")
TOKEN = "client-token"


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveNode]:
    live = LiveNode(tmp_path_factory.mktemp("client"), api_token=TOKEN).start()
    yield live
    live.stop()


@pytest.fixture
def app_id() -> str:
    return f"app-{uuid.uuid4().hex[:8]}"


def with_client(
    node: LiveNode, app_id: str, use: Callable[[TockClient], Awaitable[T]], token: str = TOKEN
) -> T:
    async def go() -> T:
        async with TockClient(node.base_url, app_id=app_id, token=token) as client:
            return await use(client)

    return asyncio.run(go())


def test_create_get_list_delete_round_trip(node: LiveNode, app_id: str) -> None:
    async def use(client: TockClient) -> tuple[Any, ...]:
        await client.create("a b@c", schedule="@every 1m", repeats=2, data={"k": "v"})
        await client.create("b-1", due_time="1h", failure_policy={"drop": {}})
        job = await client.get("a b@c")
        page, cursor = await client.list(limit=1)
        everything = await client.list_all(page_size=1)
        await client.delete("b-1")
        remaining = await client.list_all()
        return job, page, cursor, everything, remaining

    job, page, cursor, everything, remaining = with_client(node, app_id, use)
    assert job["name"] == "a b@c"
    assert (job["schedule"], job["repeats"], job["data"]) == ("@every 1m", 2, {"k": "v"})
    assert job["status"]["count"] == 0
    assert [j["name"] for j in page] == ["a b@c"]
    assert cursor == "a b@c"
    assert [j["name"] for j in everything] == ["a b@c", "b-1"]
    assert [j["name"] for j in remaining] == ["a b@c"]


def test_errors_come_back_typed(node: LiveNode, app_id: str) -> None:
    async def expect(error: type[Exception], call: Awaitable[object]) -> str:
        with pytest.raises(error) as raised:
            await call
        return str(raised.value)

    async def use(client: TockClient) -> list[str]:
        await client.create("once", due_time="1h")
        return [
            await expect(JobConflict, client.create("once", due_time="2h")),
            await expect(JobNotFound, client.get("ghost")),
            await expect(ValidationError, client.create("bad")),
            await expect(ValidationError, client.create("")),
            await expect(AppNotFound, client.app_url()),
            await expect(ValidationError, client.list(limit=0)),
        ]

    messages = with_client(node, app_id, use)
    assert messages[2] == "job must have either a due time or a schedule"
    assert messages[3] == "Name is empty"


def test_a_wrong_token_is_a_request_failed_with_status(node: LiveNode, app_id: str) -> None:
    with pytest.raises(RequestFailed) as raised:
        with_client(node, app_id, lambda client: client.get("x"), token="wrong")
    assert (raised.value.status, raised.value.code) == (401, "ERR_UNAUTHORIZED")


def test_an_unreachable_node_is_unavailable() -> None:
    async def go() -> None:
        async with TockClient(f"http://127.0.0.1:{free_port()}") as client:
            await client.get("x")

    with pytest.raises(Unavailable):
        asyncio.run(go())


def test_apps_delete_prefix_and_cluster_status(node: LiveNode, app_id: str) -> None:
    async def use(client: TockClient) -> tuple[Any, ...]:
        await client.register_app("http://127.0.0.1:8080")
        url = await client.app_url()
        for name in ("p-1", "p-2", "q-1"):
            await client.create(name, due_time="1h")
        deleted = await client.delete_prefix("p-")
        await client.unregister_app()
        return url, deleted, await client.cluster_status(), await client.ready()

    url, deleted, status, ready = with_client(node, app_id, use)
    assert (url, deleted, ready) == ("http://127.0.0.1:8080", 2, True)
    assert status["node"] == "n1"


# -- the command line ----------------------------------------------------------------------


def run_cli(
    node: LiveNode, argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser(prog="tock")
    add_commands(parser.add_subparsers(dest="command", required=True))
    monkeypatch.setenv("TOCK_API_TOKEN", TOKEN)
    args = parser.parse_args([*argv, "--node", node.base_url])
    status: int = args.func(args)
    out, err = capsys.readouterr()
    return status, out, err


def test_cli_create_get_list_delete(
    node: LiveNode, app_id: str, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    def cli(*argv: str) -> tuple[int, str, str]:
        return run_cli(node, [*argv, "--app-id", app_id], monkeypatch, capsys)

    created = cli(
        "job", "create", "nightly", "--schedule", "0 0 3 * * *", "--repeats", "5",
        "--data", '{"x": 1}', "--failure-policy", "constant:2s:4", "--ttl", "720h",
    )  # fmt: skip
    assert created == (0, "created nightly\n", "")
    code, out, _ = cli("job", "get", "nightly")
    job = json.loads(out)
    assert code == 0
    assert job["failurePolicy"] == {"constant": {"interval": "2s", "maxRetries": 4}}
    assert (job["schedule"], job["repeats"], job["ttl"], job["data"]) == (
        "0 0 3 * * *",
        5,
        "720h",
        {"x": 1},
    )
    assert cli("job", "create", "other", "--due-time", "1h")[0] == 0
    code, out, _ = cli("job", "list", "--prefix", "nig")
    assert [j["name"] for j in json.loads(out)] == ["nightly"]
    assert cli("job", "delete", "nightly") == (0, "deleted nightly\n", "")
    code, out, err = cli("job", "get", "nightly")
    assert (code, out) == (1, "")
    assert "job not found: nightly" in err


def test_cli_create_conflict_is_an_error_and_overwrite_replaces(
    node: LiveNode, app_id: str, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    def cli(*argv: str) -> tuple[int, str, str]:
        return run_cli(node, [*argv, "--app-id", app_id], monkeypatch, capsys)

    assert cli("job", "create", "j", "--due-time", "1h")[0] == 0
    code, _, err = cli("job", "create", "j", "--due-time", "2h")
    assert code == 1 and err.startswith("error: ")
    assert cli("job", "create", "j", "--due-time", "2h", "--overwrite")[0] == 0
    assert json.loads(cli("job", "get", "j")[1])["dueTime"] == "2h"


def test_cli_status_prints_the_cluster_table(
    node: LiveNode, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    code, out, _ = run_cli(node, ["status"], monkeypatch, capsys)
    assert code == 0
    assert "role       leader" in out
    assert "MEMBER  HTTP" in out
    assert f"n1      {node.base_url.removeprefix('http://')}" in out


def test_format_status_lays_out_summary_and_members() -> None:
    status = {
        "node": "n2", "role": "follower", "leader": None, "term": 7, "commitIndex": 10,
        "appliedIndex": 9, "epoch": 3, "partitions": 512, "jobs": 4,
        "members": [
            {"id": "n1", "http": "h:1", "raft": "r:1", "alive": False, "partitions": 0},
            {"id": "n2", "http": "h:2", "raft": "r:2", "alive": True, "partitions": 512},
        ],
    }  # fmt: skip
    lines = format_status(status).splitlines()
    assert lines[:3] == ["node       n2", "role       follower", "leader     -"]
    assert lines[-3:] == [
        "MEMBER  HTTP  RAFT  ALIVE  PARTITIONS",
        "n1      h:1   r:1   no     0",
        "n2      h:2   r:2   yes    512",
    ]


@pytest.mark.parametrize(
    ("text", "policy"),
    [
        ("drop", {"drop": {}}),
        ("constant:1s", {"constant": {"interval": "1s"}}),
        ("constant:500ms:3", {"constant": {"interval": "500ms", "maxRetries": 3}}),
    ],
)
def test_failure_policy_flag(text: str, policy: dict[str, object]) -> None:
    assert parse_failure_policy(text) == policy


@pytest.mark.parametrize("text", ["", "drop:1s", "constant", "constant:1s:x", "retry:1s"])
def test_bad_failure_policy_flag(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        parse_failure_policy(text)
