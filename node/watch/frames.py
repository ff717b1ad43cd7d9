"""The msgpack frames of the watch stream and of the hop between nodes that feeds it.

To the app, a frame `{"triggers": [{"id", "name", "data", "scheduledTime", "attempt",
"triggerId"}, ...]}`; from the app, `{"acks": [[id, "SUCCESS" | "FAILED"], ...]}`. `id` is a
counter of the stream, so an app acks what it got without knowing tock's keys.

Between nodes (POST /internal/v1/deliver), a batch `{"timeoutMs", "triggers": [[namespace, app,
name, uid, scheduledMs, attempt, data], ...]}` answered by `{"outcomes": ["SUCCESS" | "FAILED" |
"UNDELIVERABLE", ...]}` in the same order.

Every decoder checks types and raises ValidationError: the bytes come from the network.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgpack

from node.delivery.trigger import DeliveryOutcome, Trigger
from store.errors import ValidationError
from store.schedule import format_rfc3339_ms

ACK_STATUSES = {
    DeliveryOutcome.SUCCESS.value: DeliveryOutcome.SUCCESS,
    DeliveryOutcome.FAILED.value: DeliveryOutcome.FAILED,
}
_FORWARD_FIELDS = (str, str, str, str, int, int, bytes)


def _pack(value: object) -> bytes:
    packed: bytes = msgpack.packb(value, use_bin_type=True)
    return packed


def _unpack_map(data: bytes, key: str, bytes_max: int) -> Any:
    """The list under `key` of a msgpack map; ValidationError for anything else."""
    if len(data) > bytes_max:
        raise ValidationError(f"frame of {len(data)} bytes, at most {bytes_max}")
    try:
        decoded = msgpack.unpackb(data, raw=False, strict_map_key=True)
    except Exception as error:  # msgpack raises several unrelated types for bad bytes.
        raise ValidationError(f"undecodable frame: {error}") from None
    if not isinstance(decoded, dict) or not isinstance(decoded.get(key), list):
        raise ValidationError(f"a frame must be a map with a list under {key!r}")
    return decoded


# ---- the stream to the app ----


def encode_triggers(items: Sequence[tuple[int, Trigger]]) -> bytes:
    return _pack(
        {
            "triggers": [
                {
                    "id": stream_id,
                    "name": trigger.name,
                    "data": trigger.data,
                    "scheduledTime": format_rfc3339_ms(trigger.scheduled_ms),
                    "attempt": trigger.attempt,
                    "triggerId": trigger.trigger_id,
                }
                for stream_id, trigger in items
            ]
        }
    )


def decode_acks(data: bytes, bytes_max: int) -> list[tuple[int, DeliveryOutcome]]:
    acks: list[tuple[int, DeliveryOutcome]] = []
    for entry in _unpack_map(data, "acks", bytes_max)["acks"]:
        if not (isinstance(entry, list) and len(entry) == 2 and type(entry[0]) is int):
            raise ValidationError(f"an ack must be [id, status]: {entry!r:.80}")
        status = ACK_STATUSES.get(entry[1]) if isinstance(entry[1], str) else None
        if status is None:
            raise ValidationError(f"an ack status must be SUCCESS or FAILED: {entry[1]!r:.80}")
        acks.append((entry[0], status))
    return acks


def decode_triggers(data: bytes, bytes_max: int) -> list[dict[str, Any]]:
    """The triggers of a frame from a node, as the app's client reads them."""
    triggers: list[dict[str, Any]] = _unpack_map(data, "triggers", bytes_max)["triggers"]
    for trigger in triggers:
        if not isinstance(trigger, dict) or type(trigger.get("id")) is not int:
            raise ValidationError(f"a trigger must be a map with an integer id: {trigger!r:.80}")
    return triggers


def encode_acks(acks: Sequence[tuple[int, str]]) -> bytes:
    return _pack({"acks": [[stream_id, status] for stream_id, status in acks]})


# ---- the hop between nodes ----


def encode_forward(triggers: Sequence[Trigger], timeout_ms: int) -> bytes:
    rows = [
        [t.namespace, t.app, t.name, t.uid, t.scheduled_ms, t.attempt, t.data] for t in triggers
    ]
    return _pack({"timeoutMs": timeout_ms, "triggers": rows})


def decode_forward(data: bytes, bytes_max: int) -> tuple[list[Trigger], int]:
    decoded = _unpack_map(data, "triggers", bytes_max)
    timeout_ms = decoded.get("timeoutMs")
    if type(timeout_ms) is not int or timeout_ms <= 0:
        raise ValidationError("timeoutMs must be a positive integer")
    triggers: list[Trigger] = []
    for row in decoded["triggers"]:
        fields_ok = isinstance(row, list) and len(row) == len(_FORWARD_FIELDS)
        if not fields_ok or not all(map(isinstance, row, _FORWARD_FIELDS)):
            raise ValidationError(f"a forwarded trigger has bad fields: {row!r:.80}")
        namespace, app, name, uid, scheduled_ms, attempt, payload = row
        triggers.append(Trigger(namespace, app, name, uid, scheduled_ms, attempt, payload))
    return triggers, timeout_ms


def encode_outcomes(outcomes: Sequence[DeliveryOutcome]) -> bytes:
    return _pack({"outcomes": [outcome.value for outcome in outcomes]})


def decode_outcomes(data: bytes, count: int, bytes_max: int) -> list[DeliveryOutcome]:
    values = _unpack_map(data, "outcomes", bytes_max)["outcomes"]
    outcomes = [
        DeliveryOutcome(v)
        for v in values
        if isinstance(v, str) and v in DeliveryOutcome.__members__
    ]
    if len(outcomes) != count or len(values) != count:
        raise ValidationError(f"expected {count} outcomes, got {values!r:.80}")
    return outcomes
