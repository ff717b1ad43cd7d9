"""TockClient and the `tock job`, `tock deadletter`, `tock export|import`, `tock status` and
`tock app token` commands against a live one-node server in token mode: the round trips, the
credentials, and that error answers come back as the TockError classes."""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from node.client import cli as client_cli
from node.client.cli import add_commands, format_status, parse_failure_policy
from node.client.client import TockClient
from store.codec import Outcome
from store.errors import (
    AppNotFound,
    DeadLetterNotFound,
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
    live.become_owner()
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


def give_up(node: LiveNode, app_id: str, name: str) -> str:
    """Fail the job's current occurrence twice, as its owner would report it: with one retry
    allowed, it becomes a dead letter; its id."""
    at = node.ack("default", app_id, name, Outcome.FAILED)
    node.ack("default", app_id, name, Outcome.FAILED)
    return f"{at}:{node.job('default', app_id, name).uid}"


ONE_RETRY = {"constant": {"interval": "1s", "maxRetries": 1}}


def test_pause_resume_run_and_history(node: LiveNode, app_id: str) -> None:
    async def use(client: TockClient) -> tuple[Any, ...]:
        await client.create(
            "j",
            schedule="@every 1m",
            jitter="3s",
            delivery_timeout="1500ms",
            failure_policy={"exponential": {"initialInterval": "1s", "maxRetries": 2}},
        )
        await client.pause("j")
        paused = await client.get("j")
        await client.resume("j")
        await client.run("j")
        return paused, await client.get("j"), await client.history("j", limit=5)

    paused, resumed, history = with_client(node, app_id, use)
    assert paused["status"]["paused"] is True and resumed["status"]["paused"] is False
    assert (paused["jitter"], paused["deliveryTimeout"]) == ("3s", "1500ms")
    assert paused["failurePolicy"]["exponential"]["maxRetries"] == 2
    assert history == []
    node.ack("default", app_id, "j", Outcome.SUCCESS)
    [attempt] = with_client(node, app_id, lambda client: client.history("j"))
    assert (attempt["outcome"], attempt["attempt"], attempt["manual"]) == ("success", 1, False)


def test_operation_errors_come_back_typed(node: LiveNode, app_id: str) -> None:
    async def use(client: TockClient) -> None:
        await client.create("j", due_time="1h")
        for operation in (client.pause, client.resume, client.run, client.history):
            with pytest.raises(JobNotFound):
                await operation("ghost")
        with pytest.raises(ValidationError):
            await client.history("j", limit=0)
        with pytest.raises(DeadLetterNotFound):
            await client.redrive(f"1:{uuid.uuid4().hex}")
        with pytest.raises(ValidationError):
            await client.redrive("x" * 65)

    with_client(node, app_id, use)


def test_dead_letters_listed_redriven_and_deleted(node: LiveNode, app_id: str) -> None:
    names = ("a", "b", "c")

    async def create(client: TockClient) -> None:
        for name in names:
            await client.create(name, schedule="@every 1m", failure_policy=ONE_RETRY)

    with_client(node, app_id, create)
    ids = [give_up(node, app_id, name) for name in names]

    async def use(client: TockClient) -> tuple[Any, ...]:
        page, cursor = await client.dead_letters(limit=2)
        everything = await client.dead_letters_all(page_size=1)
        await client.redrive(ids[0])
        redriving = (await client.dead_letters(prefix="a"))[0]
        await client.delete_dead_letter(ids[1])
        await client.delete_dead_letter(ids[1])
        return page, cursor, everything, redriving, await client.dead_letters_all()

    page, cursor, everything, redriving, remaining = with_client(node, app_id, use)
    assert ([d["id"] for d in page], cursor) == (ids[:2], ids[1])
    assert [d["name"] for d in everything] == list(names)
    assert [(d["id"], d["redriving"]) for d in redriving] == [(ids[0], True)]
    assert [d["id"] for d in remaining] == [ids[0], ids[2]]


def test_export_and_import_every_form_of_source(
    node: LiveNode, app_id: str, tmp_path: Path
) -> None:
    async def use(client: TockClient) -> tuple[Any, ...]:
        for name in ("x-1", "x-2", "y-1"):
            await client.create(name, schedule="@every 1h", data={"name": name})
        await client.pause("x-2")
        lines = [line async for line in client.export(app=app_id)]
        buffer = io.BytesIO()
        count = await client.export_to(buffer, app=app_id, prefix="x-")
        path = tmp_path / "jobs.ndjson"
        path.write_bytes(buffer.getvalue())
        await client.delete_prefix("")
        seen: list[tuple[int, int]] = []
        from_path = await client.import_(path, progress=lambda *sent: seen.append(sent))
        from_file = await client.import_(io.BytesIO(buffer.getvalue()), overwrite=True)

        async def source() -> AsyncIterator[bytes]:
            yield lines[2]  # Without its newline.
            yield lines[0] + b"\n"

        from_lines = await client.import_(source())
        jobs = await client.list_all()
        return lines, count, buffer.getvalue(), seen, from_path, from_file, from_lines, jobs

    lines, count, written, seen, from_path, from_file, from_lines, jobs = with_client(
        node, app_id, use
    )
    assert [json.loads(line)["name"] for line in lines] == ["x-1", "x-2", "y-1"]
    assert count == 2 and written == lines[0] + b"\n" + lines[1] + b"\n"
    assert seen[-1] == (len(written), 2)
    assert (from_path, from_file, from_lines) == ((2, 0), (2, 0), (1, 1))
    assert [(job["name"], job["status"]["paused"]) for job in jobs] == [
        ("x-1", False),
        ("x-2", True),
        ("y-1", False),
    ]


def test_a_bad_import_line_is_a_validation_error_naming_it(node: LiveNode, app_id: str) -> None:
    async def use(client: TockClient) -> None:
        await client.create("j", due_time="1h")
        [line] = [line async for line in client.export(app=app_id)]
        with pytest.raises(ValidationError, match="import line 2 is not an exported job"):
            await client.import_(io.BytesIO(line + b"\nnonsense\n" + line * 1000))

    with_client(node, app_id, use)


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


def test_cli_job_operations_and_dead_letters(
    node: LiveNode, app_id: str, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    def cli(*argv: str) -> tuple[int, str, str]:
        return run_cli(node, [*argv, "--app-id", app_id], monkeypatch, capsys)

    created = cli(
        "job", "create", "j", "--schedule", "@every 1m", "--jitter", "2s",
        "--delivery-timeout", "3s", "--failure-policy", "exponential:1s:5m:2.5:1",
    )  # fmt: skip
    assert created == (0, "created j\n", "")
    job = json.loads(cli("job", "get", "j")[1])
    assert (job["jitter"], job["deliveryTimeout"]) == ("2s", "3s")
    assert job["failurePolicy"] == {
        "exponential": {
            "initialInterval": "1s",
            "maxInterval": "300s",
            "multiplier": 2.5,
            "maxRetries": 1,
        }
    }
    assert cli("job", "pause", "j") == (0, "paused j\n", "")
    assert json.loads(cli("job", "get", "j")[1])["status"]["paused"] is True
    assert cli("job", "resume", "j") == (0, "resumed j\n", "")
    assert cli("job", "run", "j") == (0, "running j\n", "")
    code, out, err = cli("job", "pause", "ghost")
    assert (code, out) == (1, "") and "job not found: ghost" in err

    letter_id = give_up(node, app_id, "j")
    code, out, _ = cli("job", "history", "j", "--limit", "1")
    assert code == 0
    assert [(a["attempt"], a["outcome"]) for a in json.loads(out)] == [(2, "dropped")]
    code, out, _ = cli("deadletter", "list", "--prefix", "j")
    assert code == 0 and [d["id"] for d in json.loads(out)] == [letter_id]
    assert cli("deadletter", "redrive", letter_id) == (0, f"redriving {letter_id}\n", "")
    assert cli("deadletter", "delete", letter_id) == (0, f"deleted {letter_id}\n", "")
    assert json.loads(cli("deadletter", "list")[1]) == []
    code, _, err = cli("deadletter", "redrive", letter_id)
    assert code == 1 and "dead letter not found" in err


def test_cli_export_to_a_file_and_import_it_with_progress(
    node: LiveNode, app_id: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    def cli(*argv: str) -> tuple[int, str, str]:
        return run_cli(node, list(argv), monkeypatch, capsys)

    for k in range(5):
        assert cli("job", "create", f"e-{k}", "--due-time", "1h", "--app-id", app_id)[0] == 0
    path = tmp_path / "backup.ndjson"
    assert cli("export", str(path), "--app", app_id) == (0, f"exported 5 jobs to {path}\n", "")
    assert [p.name for p in tmp_path.iterdir()] == ["backup.ndjson"]
    exported = path.read_bytes()
    assert len(exported.splitlines()) == 5
    assert cli("job", "delete", "e-3", "--app-id", app_id)[0] == 0
    monkeypatch.setattr(client_cli, "PROGRESS_EVERY_LINES", 2)
    code, out, err = cli("import", str(path))
    assert (code, out) == (0, "imported 1, skipped 4\n")
    size_mib = len(exported) / 1024 / 1024
    assert err == f"import: 5 jobs sent ({size_mib:.1f} MiB of {size_mib:.1f} MiB, 100%)\n"
    code, out, _ = cli("import", str(path), "--overwrite")
    assert (code, out) == (0, "imported 5, skipped 0\n")
    code, _, err = cli("import", str(tmp_path / "missing.ndjson"))
    assert code == 1 and "missing.ndjson" in err


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


@pytest.mark.parametrize(
    ("text", "policy"),
    [
        ("exponential:1s", {"exponential": {"initialInterval": "1s"}}),
        (
            "exponential:500ms:1m",
            {"exponential": {"initialInterval": "500ms", "maxInterval": "1m"}},
        ),
        (
            "exponential:1s:5m:2:10",
            {
                "exponential": {
                    "initialInterval": "1s",
                    "maxInterval": "5m",
                    "multiplier": 2.0,
                    "maxRetries": 10,
                }
            },
        ),
    ],
)
def test_exponential_failure_policy_flag(text: str, policy: dict[str, object]) -> None:
    assert parse_failure_policy(text) == policy


@pytest.mark.parametrize(
    "text",
    [
        "", "drop:1s", "constant", "constant:1s:x", "retry:1s", "constant:1s:3:4",
        "exponential", "exponential:", "exponential:1s::2", "exponential:1s:5m:x",
        "exponential:1s:5m:2:x", "exponential:1s:5m:2:3:4",
    ],
)  # fmt: skip
def test_bad_failure_policy_flag(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        parse_failure_policy(text)
