"""App tokens in the replicated state: issued and revoked per app, bounded per app, refused when
malformed, kept by snapshots (and absent from the snapshots of versions before them); and the
writes asked for with a token, applied only while it stands."""

from __future__ import annotations

import hashlib

import msgpack
import pytest

from cluster.ring import Ring
from store.app_tokens import APP_TOKENS_PER_APP_MAX, AppToken
from store.codec import (
    COMMAND_VERSION,
    Command,
    CommandTag,
    Delete,
    IssueAppToken,
    Put,
    RevokeAppToken,
    WithAppToken,
    decode_command,
    encode_command,
)
from store.errors import CodecError
from store.jobs import JobSpec
from store.machine import ErrorKind, JobMachine
from tests.unit.store.snapshot_layouts import unpacked

NOW_MS = 1_700_000_000_000


def token_id(n: int) -> str:
    return f"{n:016x}"


def issue(namespace: str, app: str, n: int, now_ms: int = NOW_MS) -> IssueAppToken:
    digest = hashlib.sha256(f"token {n}".encode()).digest()
    return IssueAppToken(namespace, app, token_id(n), digest, now_ms)


def test_an_issued_token_is_found_by_id_and_listed_with_its_app_until_revoked() -> None:
    machine = JobMachine(8, Ring)
    assert machine.apply(issue("ns", "orders", 1)).ok
    assert machine.apply(issue("ns", "orders", 2, NOW_MS + 5)).ok
    assert machine.apply(issue("ns", "billing", 3)).ok
    found = machine.app_token(token_id(1))
    assert found is not None
    assert (found.namespace, found.app, found.created_ms) == ("ns", "orders", NOW_MS)
    assert [t.id for t in machine.app_tokens_of("ns", "orders")] == [token_id(1), token_id(2)]
    # Revoking names the app: another app's admin call cannot remove this app's token.
    assert machine.apply(RevokeAppToken("ns", "billing", token_id(1))).value is False
    assert machine.app_token(token_id(1)) is not None
    assert machine.apply(RevokeAppToken("ns", "orders", token_id(1))).value is True
    assert machine.app_token(token_id(1)) is None
    assert machine.apply(RevokeAppToken("ns", "orders", token_id(1))).value is False
    assert [t.id for t in machine.app_tokens_of("ns", "orders")] == [token_id(2)]


@pytest.mark.parametrize(
    ("command", "message"),
    [
        (IssueAppToken("ns", "a", "XYZ", bytes(32), NOW_MS), "lowercase hex"),
        (IssueAppToken("ns", "a", token_id(0xAB).upper(), bytes(32), NOW_MS), "lowercase hex"),
        (IssueAppToken("ns", "a", token_id(1), bytes(31), NOW_MS), "32 bytes"),
        (IssueAppToken("", "a", token_id(1), bytes(32), NOW_MS), "namespace is empty"),
        (IssueAppToken("ns", "a" * 300, token_id(1), bytes(32), NOW_MS), "app id is longer"),
        (IssueAppToken("ns", "a", token_id(1), bytes(32), -1), "out of range"),
    ],
)
def test_a_malformed_issue_is_refused_and_changes_nothing(
    command: IssueAppToken, message: str
) -> None:
    machine = JobMachine(8, Ring)
    before = machine.digest()
    result = machine.apply(command)
    assert (result.ok, result.error) == (False, ErrorKind.INVALID)
    assert message in result.message
    assert machine.digest() == before


def test_an_id_in_use_and_a_token_past_the_bound_are_refused() -> None:
    machine = JobMachine(8, Ring)
    for n in range(APP_TOKENS_PER_APP_MAX):
        assert machine.apply(issue("ns", "a", n)).ok
    before = machine.digest()
    again = machine.apply(issue("ns", "other", 0))
    assert (again.ok, again.error) == (False, ErrorKind.INVALID)
    over = machine.apply(issue("ns", "a", APP_TOKENS_PER_APP_MAX))
    assert (over.ok, over.error) == (False, ErrorKind.QUOTA)
    assert machine.digest() == before
    # Revoking one makes room again.
    assert machine.apply(RevokeAppToken("ns", "a", token_id(0))).value is True
    assert machine.apply(issue("ns", "a", APP_TOKENS_PER_APP_MAX)).ok


def test_token_commands_round_trip_and_version_1_has_none() -> None:
    for command in (issue("ns", "a", 7), RevokeAppToken("ns", "a", token_id(7))):
        assert decode_command(encode_command(command)) == command
    v1 = msgpack.packb([1, int(CommandTag.REVOKE_APP_TOKEN), "ns", "a", token_id(7)])
    with pytest.raises(CodecError, match="version 1 has no app tokens"):
        decode_command(v1)
    bad_hash = msgpack.packb(
        [COMMAND_VERSION, int(CommandTag.ISSUE_APP_TOKEN), "ns", "a", token_id(7), "hex", 5]
    )
    with pytest.raises(CodecError, match="hash must be bytes"):
        decode_command(bad_hash)


def test_tokens_survive_a_snapshot_and_older_snapshots_hold_none() -> None:
    machine = JobMachine(8, Ring)
    machine.apply(issue("ns", "b", 2))
    machine.apply(issue("ns", "a", 1))
    snapshot = machine.to_bytes()
    restored = JobMachine.from_bytes(snapshot, Ring)
    assert restored.digest() == machine.digest()
    assert restored.app_token(token_id(1)) == machine.app_token(token_id(1))
    # A version 1 snapshot ends with the jobs (its rows are those of version 2 with no jobs in
    # this machine): it decodes with no token at all.
    older = unpacked(snapshot)[:11]
    older[0] = 1
    older[8] = [row[:4] for row in older[8]]
    restored = JobMachine.from_bytes(msgpack.packb(older, use_bin_type=True), Ring)
    assert restored.app_tokens_of("ns", "a") == []
    # Version 2 keeps its tokens after the dead letters: without them it is malformed.
    without_tokens = unpacked(snapshot)[:12]
    with pytest.raises(CodecError):
        JobMachine.from_bytes(msgpack.packb(without_tokens, use_bin_type=True), Ring)


def test_a_snapshot_with_a_bad_or_repeated_token_is_a_codec_error() -> None:
    machine = JobMachine(8, Ring)
    machine.apply(issue("ns", "a", 1))
    unpacked = msgpack.unpackb(machine.to_bytes(), use_list=True, raw=False)
    row = unpacked[12][0]
    for rows in ([row, row], [[*row[:3], b"short", row[4]]], [row[:4]]):
        unpacked[12] = rows
        with pytest.raises(CodecError):
            JobMachine.from_bytes(msgpack.packb(unpacked, use_bin_type=True), Ring)


def test_a_token_record_never_holds_the_token() -> None:
    assert AppToken._fields == ("namespace", "app", "id", "hash", "created_ms")
    assert "hash" not in repr(issue("ns", "a", 1))


def guarded(command: Command, n: int, namespace: str = "ns", app: str = "orders") -> WithAppToken:
    return WithAppToken(namespace, app, token_id(n), encode_command(command))


def put(name: str, app: str = "orders") -> Put:
    spec = JobSpec(name=name, schedule="@every 1h")
    return Put("ns", app, spec, False, NOW_MS, f"uid-{name}", "UTC")


def test_a_write_asked_for_with_a_token_applies_only_while_the_token_stands() -> None:
    # The node that took the request checked the token against its own replica; one that had
    # not applied the revocation yet let this write through, and the log puts it after the
    # revocation: every replica refuses it there, and nothing changes.
    machine = JobMachine(8, Ring)
    assert machine.apply(issue("ns", "orders", 1)).ok
    first = machine.apply(guarded(put("kept"), 1))
    assert first.ok and machine.get("ns", "orders", "kept") is not None
    assert machine.apply(RevokeAppToken("ns", "orders", token_id(1))).value is True
    late = machine.apply(guarded(put("late"), 1))
    assert (late.ok, late.error) == (False, ErrorKind.UNAUTHENTICATED)
    refused = machine.apply(guarded(Delete("ns", "orders", "kept"), 1))
    assert refused.error is ErrorKind.UNAUTHENTICATED
    assert machine.get("ns", "orders", "late") is None
    assert machine.get("ns", "orders", "kept") is not None


def test_a_token_acts_only_for_its_own_app_and_only_on_its_writes() -> None:
    machine = JobMachine(8, Ring)
    assert machine.apply(issue("ns", "orders", 1)).ok
    assert machine.apply(issue("ns", "billing", 2)).ok
    # Billing's token, presented as orders': refused as a token that does not stand there.
    other = machine.apply(guarded(put("x"), 2))
    assert other.error is ErrorKind.UNAUTHENTICATED
    # A command of another app inside, or one no app token may ask for: malformed.
    wrong_app = machine.apply(guarded(put("y", app="billing"), 1))
    assert wrong_app.error is ErrorKind.INVALID and "outside its app" in wrong_app.message
    revoke = machine.apply(guarded(RevokeAppToken("ns", "orders", token_id(2)), 1))
    assert revoke.error is ErrorKind.INVALID and machine.app_token(token_id(2)) is not None
    nested = machine.apply(guarded(guarded(put("z"), 1), 1))
    assert nested.error is ErrorKind.INVALID
    garbage = machine.apply(WithAppToken("ns", "orders", token_id(1), b"\xc1"))
    assert garbage.error is ErrorKind.INVALID
    assert machine.count() == 0
