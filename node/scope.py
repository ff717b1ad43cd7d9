"""Who a request acts for, and the one rule every face applies to the text that says so.

Every way in (the HTTP routes, the watch stream, the gRPC methods, the internal hop between
members) reads a namespace and an app id from the caller: Dapr's `dapr-namespace` and
`dapr-app-id` headers or metadata, or an `{appId}` path segment. They become keys of the
replicated state and travel in commands, so each must be text that every node can encode the
same way: valid UTF-8, short, and free of control characters. `checked_text` is that rule, and
the other free-text inputs of a request (job names, a list's prefix and cursor) go through it too.

aiohttp decodes header bytes as UTF-8 with `surrogateescape`: bytes that are not UTF-8 arrive as
lone surrogates in the str, so a surrogate is how invalid bytes show here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from store.bounds import SCOPE_CHARS_MAX
from store.errors import ValidationError

APP_ID_HEADER = "dapr-app-id"
NAMESPACE_HEADER = "dapr-namespace"
DEFAULT_SCOPE_PART = "default"

_SURROGATES = range(0xD800, 0xE000)


@dataclass(frozen=True, slots=True)
class Scope:
    """Who is asking: jobs are unique per (namespace, app). `token_id` names the app token the
    request came with (None for the admin token and in open mode): the writes it asks for are
    applied only while that token stands."""

    namespace: str = DEFAULT_SCOPE_PART
    app: str = DEFAULT_SCOPE_PART
    token_id: str | None = None


def _is_control(char: str) -> bool:
    code = ord(char)
    return code < 0x20 or 0x7F <= code < 0xA0


def check_utf8(field: str, value: str) -> None:
    """A ValidationError naming `field` if `value` holds a lone surrogate: text that came as
    invalid bytes, and that no node could encode again."""
    if any(ord(char) in _SURROGATES for char in value):
        raise ValidationError(f"{field} is not valid UTF-8")


def checked_text(field: str, value: str, chars_max: int) -> str:
    """`value` if it is valid UTF-8 with no control characters and at most `chars_max`
    characters; otherwise a ValidationError naming `field`."""
    if len(value) > chars_max:
        raise ValidationError(f"{field} is too long: {len(value)} characters, at most {chars_max}")
    check_utf8(field, value)
    if any(_is_control(char) for char in value):
        raise ValidationError(f"{field} must not contain control characters")
    return value


def scope_part(field: str, value: str | None) -> str:
    """A namespace or app id as the caller gave it; "default" when not given at all. Given, it
    must be non-empty text that passes `checked_text`."""
    if value is None:
        return DEFAULT_SCOPE_PART
    if not value:
        raise ValidationError(f"{field} must not be empty")
    return checked_text(field, value, SCOPE_CHARS_MAX)


def scope_from(get: Callable[[str], str | None], app: str | None = None) -> Scope:
    """The scope named by a request's headers or metadata, read through `get`; `app`, when
    given, is the `{appId}` of the path and takes the place of the app id header."""
    return Scope(
        namespace=scope_part(NAMESPACE_HEADER, get(NAMESPACE_HEADER)),
        app=scope_part(APP_ID_HEADER, get(APP_ID_HEADER)) if app is None else app_id(app),
    )


def app_id(value: str) -> str:
    """The `{appId}` path segment, under the same rule as the header."""
    return scope_part("app id", value)


def checked_scope(namespace: str, app: str) -> Scope:
    """A scope that came from elsewhere than headers (a forwarded trigger), under the same rule."""
    return Scope(namespace=scope_part(NAMESPACE_HEADER, namespace), app=app_id(app))
