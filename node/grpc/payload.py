"""A job's data across protocols: the JSON of the HTTP API and the `google.protobuf.Any` of gRPC.

tock stores a job's data as bytes plus a type (`JobSpec.data` and `data_type`). Data that came as
JSON over HTTP is stored as its compact JSON text with the type `application/json`. An Any that
came over gRPC holding a `google.protobuf.Value` is JSON too, and is stored the same way, so an
HTTP GET shows it and an HTTP app receives its JSON (what Dapr's HTTP channel sends). Any other
Any is stored as it came: its type URL as the type and its bytes as the data.

Outwards, JSON goes to gRPC as an Any holding a Value, as Dapr sends HTTP-created data to a gRPC
app; every other stored Any comes back exactly as it was submitted.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from google.protobuf import any_pb2, json_format, struct_pb2
from google.protobuf.message import DecodeError

from store.errors import ValidationError
from store.jobs import DATA_TYPE_JSON

VALUE_TYPE_URL = "type.googleapis.com/google.protobuf.Value"
# The largest magnitude a double holds as an exact integer: such numbers print as integers, as
# Go's protojson prints them, so a Value holding 1 reaches an HTTP app as `1`, not `1.0`.
_EXACT_INTEGER_MAX = 2**53


@dataclass(frozen=True, slots=True)
class RawData:
    """An Any kept as submitted: its type URL and its bytes."""

    type_url: str
    data: bytes


def json_or_raw(data: any_pb2.Any) -> object | RawData:
    """What a submitted Any holds: a JSON value (a Value, or an Any typed `application/json`),
    None for an empty Any, or the Any itself to keep as raw bytes.

    A JSON value goes through the same validation and size limit as HTTP's `data`."""
    if data.type_url == VALUE_TYPE_URL:
        value = struct_pb2.Value()
        try:
            value.ParseFromString(data.value)
        except DecodeError:
            raise ValidationError("data is not a valid google.protobuf.Value") from None
        return _json_of(value)
    if data.type_url == DATA_TYPE_JSON:
        try:
            parsed: object = json.loads(data.value)
        except ValueError:
            raise ValidationError("data typed application/json does not hold JSON") from None
        return parsed
    if not data.type_url and not data.value:
        return None
    return RawData(data.type_url, data.value)


def any_of(data: bytes, data_type: str) -> any_pb2.Any | None:
    """The Any a stored job's data is sent and returned as over gRPC; None when it has none."""
    if data_type == DATA_TYPE_JSON:
        value = json_format.Parse(data, struct_pb2.Value())
        packed = any_pb2.Any()
        packed.Pack(value)
        return packed
    if not data and not data_type:
        return None
    return any_pb2.Any(type_url=data_type, value=data)


def _json_of(value: struct_pb2.Value) -> object:
    kind = value.WhichOneof("kind")
    if kind == "struct_value":
        # A Struct's map has no order on the wire: keys sorted, as Go's protojson writes them, so
        # the same Value always gives the same JSON.
        fields = value.struct_value.fields
        return {key: _json_of(fields[key]) for key in sorted(fields)}
    if kind == "list_value":
        return [_json_of(item) for item in value.list_value.values]
    if kind == "number_value":
        number = value.number_value
        exact = number.is_integer() and abs(number) <= _EXACT_INTEGER_MAX
        return int(number) if exact else number
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return value.bool_value
    # A null, or a Value with nothing set: JSON null.
    return None
