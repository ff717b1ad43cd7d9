"""Who may do what: the one policy every face of a node applies (HTTP, the watch stream, gRPC).

Three credentials exist (README.md, "Tokens"):
- the admin token, as `Authorization: Bearer <admin token>`: every `/admin/*` route and `/metrics`
  require it; on the Jobs API it acts as any app, the scope read from the `dapr-app-id` and
  `dapr-namespace` headers as in open mode;
- app tokens, as `dapr-api-token: <app token>` (header or gRPC metadata, where the official Dapr
  SDKs send DAPR_API_TOKEN): in token mode the token alone decides the namespace and app, and a
  header naming another is refused (Forbidden);
- the cluster secret, between members only (node/internal_auth.py).

In open mode (`--open-api`) the Jobs API needs no token and takes its scope from the headers, as
Dapr's sidecar does on localhost; the admin routes still need the admin token.

The faces hand `caller` a way to read their headers or metadata; it answers the Caller or raises
Unauthenticated (401 / UNAUTHENTICATED) or Forbidden (403 / PERMISSION_DENIED).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Protocol

from node.scope import APP_ID_HEADER, NAMESPACE_HEADER, Scope, app_id, scope_from, scope_part
from store.errors import Forbidden, Unauthenticated, ValidationError

if TYPE_CHECKING:
    # For types only: the client imports this module, and needs none of the node's service.
    from node.app_tokens import TokenOwner

AUTHORIZATION = "authorization"
BEARER = "bearer"
APP_TOKEN_HEADER = "dapr-api-token"
# The shortest admin token a node accepts: a guessable one would open every admin route.
ADMIN_TOKEN_CHARS_MIN = 16

Headers = Callable[[str], str | None]


class TokenOwners(Protocol):
    """How the policy recognises app tokens (node/app_tokens.py AppTokenService)."""

    def owner(self, token: str) -> Awaitable[TokenOwner | None]: ...

    def stands(self, token_id: str) -> bool: ...


@dataclass(frozen=True, slots=True)
class Caller:
    """Who a Jobs API request acts for; its scope names the app token it came with, if any."""

    scope: Scope

    @property
    def token_id(self) -> str | None:
        """The app token the request came with (None for the admin token and in open mode)."""
        return self.scope.token_id


def check_admin_token(token: str) -> None:
    """A ValidationError unless `token` can be the admin token: long enough, and printable ASCII
    without spaces (it travels as a header value)."""
    if len(token) < ADMIN_TOKEN_CHARS_MIN:
        raise ValidationError(
            f"the admin token must be at least {ADMIN_TOKEN_CHARS_MIN} characters long"
        )
    if not all("!" <= char <= "~" for char in token):
        raise ValidationError("the admin token must be printable ASCII without spaces")


def bearer(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` value; None for any other value."""
    if authorization is None:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    return token.strip() if scheme.lower() == BEARER and token.strip() else None


class Access:
    def __init__(self, admin_token: str, *, open_api: bool, tokens: TokenOwners) -> None:
        check_admin_token(admin_token)
        # Compared as digests: equal lengths, so the comparison's time says nothing of the token.
        self._admin_digest = _digest(admin_token)
        self.open_api = open_api
        self._tokens = tokens

    def is_admin(self, authorization: str | None) -> bool:
        """Whether an Authorization value carries the admin token, compared in constant time."""
        given = bearer(authorization)
        return given is not None and hmac.compare_digest(_digest(given), self._admin_digest)

    def require_admin(self, authorization: str | None) -> None:
        if not self.is_admin(authorization):
            raise Unauthenticated("this route needs Authorization: Bearer <admin token>")

    async def caller(self, headers: Headers, path_app: str | None = None) -> Caller:
        """Who a Jobs API request acts for. `headers` reads its headers or metadata by
        (lowercase) name; `path_app` is the `{appId}` of its path, when it has one."""
        if self.open_api:
            return Caller(scope_from(headers, path_app))
        authorization = headers(AUTHORIZATION)
        if authorization is not None:
            if not self.is_admin(authorization):
                raise Unauthenticated("the Authorization header does not carry the admin token")
            return Caller(scope_from(headers, path_app))
        token = headers(APP_TOKEN_HEADER)
        if not token:
            raise Unauthenticated(f"this node runs in token mode: send {APP_TOKEN_HEADER}")
        owner = await self._tokens.owner(token)
        if owner is None:
            raise Unauthenticated(f"{APP_TOKEN_HEADER} is not a valid app token")
        scope = owner.scope
        claims = (
            (NAMESPACE_HEADER, headers(NAMESPACE_HEADER), scope.namespace),
            (APP_ID_HEADER, headers(APP_ID_HEADER), scope.app),
            ("the app id of the path", None if path_app is None else app_id(path_app), scope.app),
        )
        for what, claimed, own in claims:
            if claimed is not None and scope_part(what, claimed) != own:
                raise Forbidden(f"{what} {claimed!r:.80} is not the app token's own ({own!r})")
        return Caller(replace(scope, token_id=owner.token_id))

    def stands(self, caller: Caller) -> bool:
        """Whether a caller's credential still stands: an app token may have been revoked."""
        return caller.token_id is None or self._tokens.stands(caller.token_id)


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()
