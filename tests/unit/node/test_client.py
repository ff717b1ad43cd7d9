"""TockClient and the `tock job`, `tock status` and `tock app token` commands against a live
one-node server in token mode: the round trips, the credentials, and that error answers come back
as the TockError classes."""

from __future__ import annotations

import argparse
import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from node.client.cli import add_commands, format_status, parse_failure_policy
from node.client.client import TockClient
from store.errors import (
    AppNotFound,
    Forbidden,
    JobConflict,
    JobNotFound,
    Unauthenticated,
    Unavailable,
    ValidationError,
)
from tests.unit.node.api_node import ADMIN_TOKEN, LiveNode, free_port

T = TypeVar("T")


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveNode]:
    live = LiveNode(tmp_path_factory.mktemp("client"), open_api=False).start()
    yield live
    live.stop()


@pytest.fixture
def app_id() -> str:
    return f"app-{uuid.uuid4().hex[:8]}"


def with_client(
    node: LiveNode,
    app_id: str | None,
    use: Callable[[TockClient], Awaitable[T]],
    admin_token: str | None = ADMIN_TOKEN,
    token: str | None = None,
) -> T:
    """`use` a client acting for `app_id`: with the admin token by default, which acts as the
    app the headers name, or with an app `token`."""

    async def go() -> T:
        async with TockClient(
            node.base_url, app_id=app_id, token=token, admin_token=admin_token
        ) as client:
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


def test_a_wrong_or_missing_token_is_unauthenticated(node: LiveNode, app_id: str) -> None:
    for admin_token, token in (("wrong-admin-token", None), (None, None), (None, "wrong")):
        with pytest.raises(Unauthenticated):
            with_client(node, app_id, lambda c: c.get("x"), admin_token=admin_token, token=token)
    with pytest.raises(Unauthenticated):
        with_client(node, app_id, lambda client: client.cluster_status(), admin_token=None)


def test_an_app_token_acts_for_its_own_app_only(node: LiveNode, app_id: str) -> None:
    issued = with_client(node, None, lambda client: client.create_app_token(app_id))
    token = issued["token"]

    async def own(client: TockClient) -> dict[str, Any]:
        await client.create("mine", due_time="1h")
        return await client.get("mine")

    # Without an app id the token alone says which app: the client sends none.
    assert with_client(node, None, own, admin_token=None, token=token)["name"] == "mine"
    assert with_client(node, app_id, lambda c: c.get("mine"), None, token)["name"] == "mine"
    with pytest.raises(Forbidden):
        with_client(node, "someone-else", lambda c: c.get("mine"), None, token)
    listed = with_client(node, None, lambda client: client.app_tokens(app_id))
    assert [entry["id"] for entry in listed] == [issued["id"]]
    with_client(node, None, lambda client: client.revoke_app_token(issued["id"], app_id))
    with pytest.raises(Unauthenticated):
        with_client(node, None, lambda client: client.get("mine"), None, token)


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
    monkeypatch.setenv("TOCK_ADMIN_TOKEN", ADMIN_TOKEN)
    monkeypatch.delenv("DAPR_API_TOKEN", raising=False)
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


def test_cli_status_finds_the_admin_token_in_a_file_or_the_data_dir(
    node: LiveNode, monkeypatch: pytest.MonkeyPatch, capsys: Any, tmp_path: Path
) -> None:
    (tmp_path / "admin-token").write_text(ADMIN_TOKEN + "\n")
    monkeypatch.chdir(tmp_path)
    for where in (
        ["--admin-token-file", str(tmp_path / "admin-token")],
        ["--data-dir", str(tmp_path)],
    ):
        monkeypatch.delenv("TOCK_ADMIN_TOKEN", raising=False)
        code, out, err = run_cli_as_is(node, ["status", *where], capsys)
        assert (code, err) == (0, ""), err
        assert "MEMBER  HTTP" in out
    # Without any: ./.tock/admin-token is where `tock up` writes it, and there is none here.
    code, _, err = run_cli_as_is(node, ["status"], capsys)
    assert code == 1 and "401" not in err and "admin token" in err


def test_cli_app_token_create_list_revoke(
    node: LiveNode, app_id: str, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    code, out, _ = run_cli(node, ["app", "token", "create", app_id], monkeypatch, capsys)
    assert code == 0
    fields = dict(line.split(None, 1) for line in out.splitlines())
    assert set(fields) == {"id", "token"}
    code, out, _ = run_cli(node, ["app", "token", "list", app_id], monkeypatch, capsys)
    assert [entry["id"] for entry in json.loads(out)] == [fields["id"]]
    # The token works as DAPR_API_TOKEN for the job commands, with no --app-id.
    monkeypatch.setenv("DAPR_API_TOKEN", fields["token"])
    monkeypatch.delenv("TOCK_ADMIN_TOKEN")
    parser = argparse.ArgumentParser(prog="tock")
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(
        ["job", "create", "by-token", "--due-time", "1h", "--node", node.base_url]
    )
    assert args.func(args) == 0
    capsys.readouterr()
    revoke = ["app", "token", "revoke", app_id, fields["id"]]
    assert run_cli(node, revoke, monkeypatch, capsys)[:2] == (0, f"revoked {fields['id']}\n")
    code, out, _ = run_cli(node, ["app", "token", "list", app_id], monkeypatch, capsys)
    assert json.loads(out) == []


def run_cli_as_is(node: LiveNode, argv: list[str], capsys: Any) -> tuple[int, str, str]:
    """A command with the environment and files as they are (no token put in place)."""
    parser = argparse.ArgumentParser(prog="tock")
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args([*argv, "--node", node.base_url])
    status: int = args.func(args)
    out, err = capsys.readouterr()
    return status, out, err


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
