"""Request bodies as JSON objects, with Dapr's message for anything that is not one."""

from __future__ import annotations

import json

from aiohttp import web

from store.errors import ValidationError

# Dapr's prefix; http_errors maps a message with it to ERR_MALFORMED_REQUEST.
MALFORMED_BODY_PREFIX = "failed deserializing HTTP body: "
# The JSON type names a malformed-body message uses for what came instead of an object.
_JSON_TYPE_NAMES = {list: "an array", str: "a string", int: "a number", float: "a number"}


async def read_json_object(request: web.Request) -> dict[str, object] | None:
    """The body as a JSON object, None when it is empty; anything else is malformed.

    Reading raises 413 (HTTPRequestEntityTooLarge) past the application's client_max_size.
    """
    raw = await request.read()
    if not raw.strip():
        return None
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError) as error:
        # ValueError covers bad JSON and bad UTF-8; RecursionError absurdly deep nesting.
        raise ValidationError(f"{MALFORMED_BODY_PREFIX}{error}") from None
    if not isinstance(value, dict):
        kind = _JSON_TYPE_NAMES.get(type(value), "a literal")
        raise ValidationError(f"{MALFORMED_BODY_PREFIX}expected a JSON object, got {kind}")
    return value
