"""RaftConfig refuses settings that cannot work, and SyncObjConf keys pysyncobj would ignore."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from store.errors import ValidationError
from store.raft.config import RaftConfig, RaftTuning, checked_syncobj_conf, syncobj_conf
from store.raft.transport import HardeningConfig
from tests.support.cluster_secret import TEST_CLUSTER_SECRET

IDENTITY = ("self_address", "peer_addresses", "data_dir", "secret")


def config(**changes: object) -> RaftConfig:
    """A valid config with `changes`: the node's identity, or knobs of its tuning."""
    base = RaftConfig(
        self_address="127.0.0.1:7001",
        peer_addresses=("127.0.0.1:7002", "127.0.0.1:7003"),
        data_dir=Path("/nonexistent/tock"),
        secret=TEST_CLUSTER_SECRET,
    )
    identity = {name: value for name, value in changes.items() if name in IDENTITY}
    tuning = {name: value for name, value in changes.items() if name not in IDENTITY}
    return dataclasses.replace(
        base,
        tuning=dataclasses.replace(base.tuning, **tuning),  # type: ignore[arg-type]
        **identity,  # type: ignore[arg-type]
    )


def test_a_valid_config_passes() -> None:
    config().validate()
    RaftTuning().validate()


def test_an_empty_secret_is_refused_with_the_reason() -> None:
    with pytest.raises(ValidationError, match=r"secret is empty.*pickle"):
        config(secret="").validate()


def test_a_secret_under_32_bytes_is_refused_with_the_reason() -> None:
    with pytest.raises(ValidationError, match=r"secret is 31 bytes long; at least 32"):
        config(secret="s" * 31).validate()
    config(secret="s" * 32).validate()
    # Bytes, not characters: 16 two-byte characters are enough.
    config(secret="é" * 16).validate()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"self_address": "127.0.0.1"}, "host:port"),
        ({"peer_addresses": ("127.0.0.1:99999",)}, "host:port"),
        ({"self_address": "0.0.0.0:7001"}, "names every interface"),
        ({"peer_addresses": ("[::]:7002",)}, "names every interface"),
        ({"peer_addresses": ("127.0.0.1:7001",)}, "must not contain self"),
        ({"peer_addresses": ("h:1", "h:1")}, "duplicates"),
        ({"election_timeout_s_min": 0.2}, "3 heartbeat periods"),
        ({"election_timeout_s_max": 0.3}, "must exceed election_timeout_s_min"),
        ({"connection_retry_s": 0.0}, "connection_retry_s"),
        ({"leader_fallback_timeout_s": 0.05}, "heartbeat period"),
        ({"connection_timeout_s": 0.5}, "connection_timeout_s"),
        ({"batch_bytes_max": 64 * 1024}, "pysyncobj corrupts larger entries"),
        ({"batch_bytes_max": 100}, "pysyncobj corrupts larger entries"),
        ({"batch_commands_max": 0}, "batch_commands_max"),
        ({"entries_in_flight_max": 0}, "entries_in_flight_max"),
        ({"log_compaction_entries_min": 1}, "log_compaction_entries_min"),
        ({"dump_seconds_max": 0.0}, "dump_seconds_max"),
        (
            {"hardening": HardeningConfig(quiet_election_timeout_s_min=8.0)},
            "quiet_election_timeout_s_min",
        ),
        ({"hardening": HardeningConfig(frame_bytes_max=0)}, "frame_bytes_max"),
    ],
)
def test_impossible_settings_are_refused(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        config(**changes).validate()


def test_unknown_syncobj_keys_are_refused() -> None:
    with pytest.raises(ValidationError, match="flushJournal"):
        checked_syncobj_conf(journalFile="j", flushJournal=True)


def test_syncobj_conf_carries_the_mandatory_choices() -> None:
    conf = syncobj_conf(config(log_compaction_entries_min=10))
    assert conf.password == TEST_CLUSTER_SECRET
    assert conf.bindAddress == "127.0.0.1:7001"
    assert conf.journalFile == "/nonexistent/tock/raft.journal"
    assert conf.fullDumpFile == "/nonexistent/tock/raft.dump"
    assert conf.appendEntriesUseBatch is False
    assert conf.dynamicMembershipChange is True
    assert conf.connectionTimeout >= 1e6
    assert conf.connectionRetryTime == 0.5, "a peer that was not listening yet is dialed again soon"
    assert conf.leaderFallbackTimeout == 3.0
    assert conf.logCompactionMinEntries == 10
    assert conf.bindAddress == "127.0.0.1:7001", "Raft listens on its own address, not 0.0.0.0"
    conf.validate()


def test_syncobj_conf_validates_first() -> None:
    with pytest.raises(ValidationError, match="secret"):
        syncobj_conf(config(secret=""))
