"""App tokens as a node issues, lists, revokes and recognises them.

A token is `{id}.{secret}`: `id` is 16 hex characters (64 random bits) that name the token in
the replicated state and in `GET /admin/apps/{appId}/tokens`, `secret` 32 random bytes. The node
that issues one commits only the id and the SHA-256 of the whole token (IssueAppToken), then
hands the token to the admin, once: no node can show it again.

Recognising a token is a lookup by its id and a constant-time comparison of digests, against this
node's applied state. A token issued through another node may not have reached this replica yet
when its first request arrives here, so an id this node does not know gets one barrier read (every
write acknowledged before it is then applied here) before the token is refused: a token works on
every node once its issue was answered. A revocation takes effect on each node as soon as it
applies it, which is within a heartbeat or two of the commit.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import NamedTuple

from node.scope import Scope
from node.service import JobService
from store.app_tokens import TOKEN_ID_CHARS, AppToken, valid_token_id
from store.clock import Clock
from store.codec import IssueAppToken, RevokeAppToken
from store.errors import ValidationError
from store.log import ReplicatedLog
from store.shared_machine import SharedMachine

# The random part of a token, in bytes (before its URL-safe base64 text).
TOKEN_SECRET_BYTES = 32
TOKEN_SEPARATOR = "."
# A presented token longer than this cannot be one of ours: refused before it is hashed.
TOKEN_CHARS_MAX = 128


class IssuedToken(NamedTuple):
    id: str
    token: str


class TokenOwner(NamedTuple):
    """Who a recognised token acts for, and its id (to check later that it still stands)."""

    scope: Scope
    token_id: str


def new_token() -> IssuedToken:
    token_id = secrets.token_hex(TOKEN_ID_CHARS // 2)
    secret = secrets.token_urlsafe(TOKEN_SECRET_BYTES)
    return IssuedToken(token_id, f"{token_id}{TOKEN_SEPARATOR}{secret}")


def token_digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()


def token_id_of(token: str) -> str | None:
    """The id part of a presented token; None when it has not the form of one."""
    if len(token) > TOKEN_CHARS_MAX:
        return None
    token_id, separator, secret = token.partition(TOKEN_SEPARATOR)
    if not separator or not secret or not valid_token_id(token_id):
        return None
    return token_id


class AppTokenService:
    """Issues, lists and revokes app tokens through the log, and recognises presented ones.

    Writes go through `service` (its error mapping is the Jobs API's); reads wait for a barrier
    of at most `propose_timeout_s`."""

    def __init__(
        self,
        service: JobService,
        store: ReplicatedLog,
        machine: SharedMachine,
        clock: Clock,
        *,
        propose_timeout_s: float,
    ) -> None:
        self._service = service
        self._store = store
        self._machine = machine
        self._clock = clock
        self._propose_timeout_s = propose_timeout_s

    async def issue(self, scope: Scope) -> IssuedToken:
        """A new token of the app, committed: it works on every node once this returns."""
        issued = new_token()
        command = IssueAppToken(
            scope.namespace, scope.app, issued.id, token_digest(issued.token), self._clock.wall_ms()
        )
        await self._service.write(command)
        return issued

    async def list(self, scope: Scope) -> list[AppToken]:
        """The app's tokens, oldest first, as of every write acknowledged before the call."""
        await self._store.barrier(self._propose_timeout_s)
        return self._machine.read(lambda m: m.app_tokens_of(scope.namespace, scope.app))

    async def revoke(self, scope: Scope, token_id: str) -> bool:
        """Revoke the app's token `token_id`; whether the app had it."""
        if not valid_token_id(token_id):
            raise ValidationError(f"a token id is {TOKEN_ID_CHARS} lowercase hex characters")
        result = await self._service.write(RevokeAppToken(scope.namespace, scope.app, token_id))
        return bool(result.value)

    async def owner(self, token: str) -> TokenOwner | None:
        """Who `token` acts for; None when it is not a token this cluster issued and still
        holds. An id unknown here is looked up again after a barrier read (see above)."""
        token_id = token_id_of(token)
        if token_id is None:
            return None
        record = self._record(token_id)
        if record is None:
            await self._store.barrier(self._propose_timeout_s)
            record = self._record(token_id)
        if record is None or not hmac.compare_digest(record.hash, token_digest(token)):
            return None
        return TokenOwner(Scope(record.namespace, record.app), token_id)

    def stands(self, token_id: str) -> bool:
        """Whether the token `token_id` is still issued, as this node has applied the log: what
        a long-lived stream checks to end itself once its token is revoked."""
        return self._record(token_id) is not None

    def _record(self, token_id: str) -> AppToken | None:
        return self._machine.read(lambda m: m.app_token(token_id))
