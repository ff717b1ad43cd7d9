"""What a delivery carries and what it can end in, whatever the protocol (HTTP, gRPC, a watch
stream): the types every deliverer and the engine share."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import NamedTuple

# The most of an app's answer a delivery reads (HTTP body, gRPC message); beyond, the attempt
# stops reading: an app cannot make a node buffer what it sends.
ANSWER_BYTES_MAX = 64 * 1024


class DeliveryOutcome(StrEnum):
    """How one delivery attempt ended, as the app (or its absence) told it. Not the outcome an
    ack records (store.codec.Outcome): the engine maps one to the other."""

    SUCCESS = "SUCCESS"
    FAILED = "FAILED"
    # Nobody could be asked: the app's watch streams closed and it has no URL. Not an attempt:
    # the engine holds the trigger back until the app can be reached, as for an unknown app.
    UNDELIVERABLE = "UNDELIVERABLE"


class DeliveryReport(NamedTuple):
    """What one attempt ended in, with what the job's history shows of it: the app's answer
    (the HTTP status, or the gRPC code's number; 0 for no answer) and whether the attempt's
    timeout ended it."""

    outcome: DeliveryOutcome
    status: int = 0
    timed_out: bool = False


@dataclass(frozen=True, slots=True)
class Trigger:
    """One attempt at delivering one occurrence of a job."""

    namespace: str
    app: str
    name: str
    uid: str
    scheduled_ms: int
    attempt: int
    data: bytes
    content_type: str = "application/json"
    # Sent as `dapr-api-token` when the app registered one; kept out of reprs and logs.
    app_token: str = field(default="", repr=False)
    # The job's manual run (sent as `tock-manual: true`), not an occurrence of its schedule.
    manual: bool = False
    # The job's own delivery timeout; None: the node's.
    timeout_s: float | None = None

    @property
    def trigger_id(self) -> str:
        """The idempotency key: the same on every redelivery of one occurrence."""
        return f"{self.scheduled_ms}:{self.uid}"
