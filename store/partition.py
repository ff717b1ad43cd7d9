"""Which partition holds a job, and what an assignment of partitions to members must offer. Pure.

A cluster has a fixed number of partitions (1024 unless chosen otherwise when the cluster is
created). A job lives in the partition given by a stable hash of (namespace, app, name):
`partition_of` hashes an unambiguous encoding of the three strings with BLAKE2b. Python's own
`hash()` is salted per process, so two nodes would disagree; BLAKE2b gives the same number in
every process, on every platform and in every Python version.

Which member owns a partition is the cluster's decision (cluster/ring.py), but the machine needs
its answer: it counts an ack only from the owner of the job's partition in the ack's epoch. So
the machine is given an `AssignmentFactory` when it is built, and every replica must be given the
same one: a pure function of the live members and the partition count.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from typing import Protocol

from store.errors import ValidationError

PARTITIONS_DEFAULT = 1024
# The owner table and every node's rebuild on an epoch change grow with the partition count;
# 64 times the default is far more than any cluster that fits one Raft group needs.
PARTITIONS_MAX = 1 << 16

_PARTITION_PERSON = b"tock.partition"
_PARTITION_HASH_BYTES = 8


def partition_of(namespace: str, app: str, name: str, partitions: int) -> int:
    """The partition, in [0, partitions), that holds the job (namespace, app, name)."""
    check_partitions(partitions)
    digest = hashlib.blake2b(
        encode_fields(namespace, app, name),
        digest_size=_PARTITION_HASH_BYTES,
        person=_PARTITION_PERSON,
    ).digest()
    return int.from_bytes(digest, "big") % partitions


def encode_fields(*fields: str) -> bytes:
    """Length-prefix every field, so ("a", "bc") and ("ab", "c") never encode alike."""
    encoded = bytearray()
    for field in fields:
        # surrogatepass keeps the function total: any str has exactly one encoding.
        raw = field.encode("utf-8", "surrogatepass")
        encoded += len(raw).to_bytes(8, "big")
        encoded += raw
    return bytes(encoded)


def check_partitions(partitions: int) -> None:
    if not 1 <= partitions <= PARTITIONS_MAX:
        raise ValidationError(f"partitions must be in [1, {PARTITIONS_MAX}], not {partitions}")


class Assignment(Protocol):
    """The partitions of one set of live members, each owned by exactly one of them."""

    def owner(self, partition: int) -> str | None:
        """The member that owns `partition` (None with no members)."""
        ...

    def partitions_of(self, member: str) -> frozenset[int]:
        """The partitions `member` owns; empty for a member that owns none."""
        ...


# (live members, partitions) -> their assignment; deterministic, the same on every replica.
AssignmentFactory = Callable[[Iterable[str], int], Assignment]
