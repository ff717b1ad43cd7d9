"""Request bodies as JSON objects, with Dapr's message for anything that is not one."""

from __future__ import annotations

import json
import re

from aiohttp import web

from store.errors import ValidationError

# Dapr's prefix; http_errors maps a message with it to ERR_MALFORMED_REQUEST.
MALFORMED_BODY_PREFIX = "failed deserializing HTTP body: "
# The JSON type names a malformed-body message uses for what came instead of an object.
_JSON_TYPE_NAMES = {list: "an array", str: "a string", int: "a number", float: "a number"}
# JSON may spell a UTF-16 surrogate as an escape; a lone one parses into a str that no node can
# encode again. Only a body with such an escape needs the walk that finds lone ones.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_SURROGATES = re.compile("[\ud800-\udfff]")
# Where in the body the surrogate is, as said in the message: cut, since the keys are the body's.
_PATH_CHARS_MAX = 200


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
    if _SURROGATE_ESCAPE.search(raw):
        where = _lone_surrogate_path(value)
        if where is not None:
            raise ValidationError(
                f"{MALFORMED_BODY_PREFIX}{where[:_PATH_CHARS_MAX]} holds a lone UTF-16 "
                "surrogate, which is no Unicode text"
            )
    return value


def _lone_surrogate_path(value: dict[str, object]) -> str | None:
    """Where a key or string of the parsed JSON holds a surrogate (escapes in pairs were joined
    by the parser, so what is left stands alone), as a path such as `data.items[2]`; None if
    nowhere. A loop, not recursion: the nesting is as deep as the body made it."""
    pending: list[tuple[str, object]] = [("", value)]
    while pending:
        path, item = pending.pop()
        if isinstance(item, str):
            if _SURROGATES.search(item):
                return path or "the body"
        elif isinstance(item, dict):
            for key, child in item.items():
                child_path = f"{path}.{key}" if path else str(key)
                if _SURROGATES.search(key):
                    return f"a key of {path}" if path else "a key of the body"
                pending.append((child_path, child))
        elif isinstance(item, list):
            pending.extend((f"{path}[{index}]", child) for index, child in enumerate(item))
    return None
