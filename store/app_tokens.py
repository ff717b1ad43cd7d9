"""The app tokens of the replicated state: who may use the Jobs API as which app.

An admin issues an app token for one (namespace, app); the token itself is shown once, to the
admin, and never stored: the state holds its id (the first part of the token, how a node finds
the record without comparing against every hash) and the SHA-256 of the whole token. Every
replica holds the same table, so a token issued through any node works on every node, and a
revoked one stops working on every node as soon as each applies the revocation.

`AppTokens` is the table and its rules; the machine applies IssueAppToken and RevokeAppToken
through it and stores its rows in snapshots. Like the rest of the machine it is deterministic
and checks everything before it changes anything.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from store.bounds import time_in_range
from store.errors import ValidationError
from store.jobs import validate_scope

# Tokens one app may hold at once: an admin revokes one before issuing more. Every replica
# enforces the same number, so it is a constant rather than configuration.
APP_TOKENS_PER_APP_MAX = 64
# A token id is this many lowercase hex characters: 64 random bits, chosen by the issuing node.
TOKEN_ID_CHARS = 16
# The stored digest: SHA-256.
TOKEN_HASH_BYTES = 32

_HEX = frozenset("0123456789abcdef")


class AppToken(NamedTuple):
    """One issued token as the state keeps it: never the token, only its id and digest."""

    namespace: str
    app: str
    id: str
    hash: bytes
    created_ms: int


class TooManyTokens(Exception):
    """The app holds APP_TOKENS_PER_APP_MAX tokens already."""


def valid_token_id(token_id: str) -> bool:
    return len(token_id) == TOKEN_ID_CHARS and set(token_id) <= _HEX


def check_app_token_record(token: AppToken) -> None:
    """A ValidationError unless `token` is a record every replica can keep."""
    validate_scope(token.namespace, token.app)
    if not valid_token_id(token.id):
        raise ValidationError(f"app token id must be {TOKEN_ID_CHARS} lowercase hex characters")
    if len(token.hash) != TOKEN_HASH_BYTES:
        raise ValidationError(f"app token hash must be {TOKEN_HASH_BYTES} bytes")
    if not time_in_range(token.created_ms):
        raise ValidationError("app token creation time is out of range")


class AppTokens:
    """Every issued token, by id, and the ids of each app's tokens."""

    def __init__(self) -> None:
        self._by_id: dict[str, AppToken] = {}
        self._ids_by_app: dict[tuple[str, str], set[str]] = {}

    @classmethod
    def restored(cls, rows: Iterable[AppToken]) -> AppTokens:
        """The table a snapshot's rows describe; ValidationError for a bad or repeated row."""
        table = cls()
        for row in rows:
            check_app_token_record(row)
            if row.id in table._by_id:
                raise ValidationError(f"app token id {row.id!r} appears twice")
            table._add(row)
        return table

    def issue(self, token: AppToken) -> None:
        """Record `token`; ValidationError for a bad record or an id in use, TooManyTokens when
        its app holds the most it may."""
        check_app_token_record(token)
        if token.id in self._by_id:
            raise ValidationError(f"app token id {token.id!r} is already in use")
        if len(self._ids_by_app.get((token.namespace, token.app), ())) >= APP_TOKENS_PER_APP_MAX:
            raise TooManyTokens(
                f"app {token.app!r} holds {APP_TOKENS_PER_APP_MAX} tokens already: revoke one first"
            )
        self._add(token)

    def revoke(self, namespace: str, app: str, token_id: str) -> bool:
        """Forget the app's token `token_id`; whether it had one by that id."""
        token = self._by_id.get(token_id)
        if token is None or (token.namespace, token.app) != (namespace, app):
            return False
        del self._by_id[token_id]
        ids = self._ids_by_app[(namespace, app)]
        ids.discard(token_id)
        if not ids:
            del self._ids_by_app[(namespace, app)]
        return True

    def get(self, token_id: str) -> AppToken | None:
        return self._by_id.get(token_id)

    def of_app(self, namespace: str, app: str) -> list[AppToken]:
        """The app's tokens, oldest first."""
        ids = self._ids_by_app.get((namespace, app), ())
        return sorted((self._by_id[i] for i in ids), key=lambda t: (t.created_ms, t.id))

    def rows(self) -> tuple[AppToken, ...]:
        """Every token in canonical order (namespace, app, id): what a snapshot stores."""
        return tuple(sorted(self._by_id.values(), key=lambda t: (t.namespace, t.app, t.id)))

    def _add(self, token: AppToken) -> None:
        self._by_id[token.id] = token
        self._ids_by_app.setdefault((token.namespace, token.app), set()).add(token.id)
