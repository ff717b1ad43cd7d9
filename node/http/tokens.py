"""The admin routes of app tokens: issue, list and revoke the tokens one app presents in token
mode. They sit under `/admin/`, so the admin token guards them (node/http/access.py); the
namespace comes from the `dapr-namespace` header, the app from the path."""

from __future__ import annotations

from aiohttp import web

from node.app_tokens import AppTokenService
from node.scope import NAMESPACE_HEADER, Scope, app_id, scope_part
from store.time_formats import format_rfc3339_ms

TOKENS_PATH = "/admin/apps/{appId}/tokens"


class AppTokenRoutes:
    def __init__(self, tokens: AppTokenService) -> None:
        self._tokens = tokens

    def register(self, router: web.UrlDispatcher) -> None:
        router.add_route("POST", TOKENS_PATH, self.issue)
        router.add_route("GET", TOKENS_PATH, self.list)
        router.add_route("DELETE", TOKENS_PATH + "/{id}", self.revoke)

    async def issue(self, request: web.Request) -> web.Response:
        issued = await self._tokens.issue(_scope(request))
        # Shown this once: the cluster keeps only the token's digest.
        return web.json_response({"id": issued.id, "token": issued.token}, status=201)

    async def list(self, request: web.Request) -> web.Response:
        tokens = await self._tokens.list(_scope(request))
        listed = [{"id": t.id, "createdAt": format_rfc3339_ms(t.created_ms)} for t in tokens]
        return web.json_response({"tokens": listed})

    async def revoke(self, request: web.Request) -> web.Response:
        # As a job's delete: 204 also when the app had no such token, so a retry is harmless.
        await self._tokens.revoke(_scope(request), request.match_info["id"])
        return web.Response(status=204)


def _scope(request: web.Request) -> Scope:
    return Scope(
        namespace=scope_part(NAMESPACE_HEADER, request.headers.get(NAMESPACE_HEADER)),
        app=app_id(request.match_info["appId"]),
    )
