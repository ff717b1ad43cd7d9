"""The watch stream's frames and the hop between nodes: exact round trips, and a ValidationError
(never another exception) for any bytes that are not a well-formed frame."""

from __future__ import annotations

import contextlib

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.delivery.trigger import DeliveryOutcome, Trigger
from node.watch.frames import (
    decode_acks,
    decode_forward,
    decode_outcomes,
    decode_triggers,
    encode_acks,
    encode_forward,
    encode_outcomes,
    encode_triggers,
)
from store.errors import ValidationError

BYTES_MAX = 1024 * 1024
TRIGGER = Trigger("prod", "billing", "nightly", "u1", 1_765_296_593_123, 2, b'{"a":1}')


def test_a_triggers_frame_carries_the_contracts_fields() -> None:
    (item,) = decode_triggers(encode_triggers([(7, TRIGGER)]), BYTES_MAX)
    assert item == {
        "id": 7,
        "name": "nightly",
        "data": b'{"a":1}',
        "scheduledTime": "2025-12-09T16:09:53.123Z",
        "attempt": 2,
        "triggerId": "1765296593123:u1",
    }


def test_acks_round_trip() -> None:
    frame = encode_acks([(1, "SUCCESS"), (2, "FAILED")])
    assert decode_acks(frame, BYTES_MAX) == [
        (1, DeliveryOutcome.SUCCESS),
        (2, DeliveryOutcome.FAILED),
    ]


def test_a_forwarded_batch_and_its_outcomes_round_trip() -> None:
    triggers, timeout_ms = decode_forward(encode_forward([TRIGGER, TRIGGER], 1500), BYTES_MAX)
    assert (triggers, timeout_ms) == ([TRIGGER, TRIGGER], 1500)
    outcomes = [DeliveryOutcome.SUCCESS, DeliveryOutcome.UNDELIVERABLE]
    assert decode_outcomes(encode_outcomes(outcomes), 2, BYTES_MAX) == outcomes


def packed(value: object) -> bytes:
    data: bytes = msgpack.packb(value, use_bin_type=True)
    return data


@pytest.mark.parametrize(
    "frame",
    [
        b"\xc1",
        packed([1, "SUCCESS"]),
        packed({"acks": "no"}),
        packed({"acks": [[1]]}),
        packed({"acks": [["1", "SUCCESS"]]}),
        packed({"acks": [[True, "SUCCESS"]]}),
        packed({"acks": [[1, "UNDELIVERABLE"]]}),
        packed({"acks": [[1, "success"]]}),
    ],
)
def test_a_malformed_acks_frame_is_a_validation_error(frame: bytes) -> None:
    with pytest.raises(ValidationError):
        decode_acks(frame, BYTES_MAX)


def test_frames_over_the_bound_are_refused() -> None:
    with pytest.raises(ValidationError, match="at most 8"):
        decode_acks(encode_acks([(1, "SUCCESS")] * 10), 8)


@pytest.mark.parametrize(
    "body",
    [
        packed({"triggers": []}),
        packed({"timeoutMs": 0, "triggers": []}),
        packed({"timeoutMs": 100, "triggers": [["ns", "app", "n", "u", 1, 1]]}),
        packed({"timeoutMs": 100, "triggers": [["ns", "app", "n", "u", 1, 1, "not bytes"]]}),
    ],
)
def test_a_malformed_forwarded_batch_is_a_validation_error(body: bytes) -> None:
    with pytest.raises(ValidationError):
        decode_forward(body, BYTES_MAX)


def test_outcomes_must_match_the_batch() -> None:
    with pytest.raises(ValidationError):
        decode_outcomes(encode_outcomes([DeliveryOutcome.SUCCESS]), 2, BYTES_MAX)
    with pytest.raises(ValidationError):
        decode_outcomes(packed({"outcomes": ["SUCCESS", "MAYBE"]}), 2, BYTES_MAX)


_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.text(max_size=8)
    | st.binary(max_size=8),
    lambda inner: st.lists(inner, max_size=7) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=20,
)
# Maps under the keys the decoders look for, so that most examples get past the first check.
_frames = st.dictionaries(st.sampled_from(["acks", "triggers", "outcomes", "timeoutMs"]), _values)


@settings(deadline=None, max_examples=300)
@given(st.binary(max_size=64) | _values.map(packed) | _frames.map(packed))
def test_arbitrary_bytes_are_a_frame_or_a_validation_error(data: bytes) -> None:
    for decode in (
        lambda: decode_acks(data, BYTES_MAX),
        lambda: decode_triggers(data, BYTES_MAX),
        lambda: decode_forward(data, BYTES_MAX),
        lambda: decode_outcomes(data, 1, BYTES_MAX),
    ):
        with contextlib.suppress(ValidationError):
            decode()
