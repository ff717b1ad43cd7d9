"""The one rule for namespaces, app ids and the other free text of a request (node/scope.py)."""

from __future__ import annotations

import pytest

from node.scope import (
    Scope,
    checked_scope,
    checked_text,
    scope_from,
    scope_part,
)
from store.bounds import SCOPE_CHARS_MAX
from store.errors import ValidationError

# What aiohttp hands over for the header bytes b"\xff": a lone surrogate.
NOT_UTF8 = b"app\xff".decode("utf-8", "surrogateescape")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (NOT_UTF8, "dapr-app-id is not valid UTF-8"),
        ("a\x00b", "dapr-app-id must not contain control characters"),
        ("a\x85b", "dapr-app-id must not contain control characters"),
        ("x" * (SCOPE_CHARS_MAX + 1), f"dapr-app-id is too long: {SCOPE_CHARS_MAX + 1}"),
        ("", "dapr-app-id must not be empty"),
    ],
)
def test_a_bad_scope_part_is_refused_naming_the_header(value: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        scope_part("dapr-app-id", value)


def test_good_scope_parts_pass_unchanged_and_absent_ones_are_default() -> None:
    for value in ("billing", "é-ü 漢字", "x" * SCOPE_CHARS_MAX):
        assert scope_part("dapr-namespace", value) == value
    assert scope_part("dapr-namespace", None) == "default"


def test_scope_from_reads_both_headers_and_a_path_app_id_wins() -> None:
    headers = {"dapr-app-id": "header-app", "dapr-namespace": "ns"}
    assert scope_from(headers.get) == Scope("ns", "header-app")
    assert scope_from(headers.get, "path-app") == Scope("ns", "path-app")
    nothing: dict[str, str] = {}
    assert scope_from(nothing.get) == Scope()
    with pytest.raises(ValidationError, match="dapr-namespace is not valid UTF-8"):
        scope_from({"dapr-namespace": NOT_UTF8}.get, "path-app")
    with pytest.raises(ValidationError, match="app id must not be empty"):
        scope_from(headers.get, "")


def test_checked_scope_applies_the_same_rule() -> None:
    assert checked_scope("ns", "app") == Scope("ns", "app")
    with pytest.raises(ValidationError, match="app id must not contain control"):
        checked_scope("ns", "a\nb")


def test_checked_text_allows_empty_text_within_its_bound() -> None:
    assert checked_text("prefix", "", 4) == ""
    with pytest.raises(ValidationError, match="prefix is too long: 5 characters, at most 4"):
        checked_text("prefix", "abcde", 4)
