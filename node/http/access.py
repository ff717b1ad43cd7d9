"""The HTTP face of node/access.py: one middleware decides who may call what, before any handler.

- `/admin`, every path under `/admin/` and `/metrics` need the admin token, whatever the method
  and whether or not a route exists there: the check runs on the path, before routing answers
  404 or 405, so probing unknown admin paths teaches nothing without the token.
- The health probes, `/openapi.json` and the `/ui` page and its static files need nothing.
- `/internal/*` is the members' own: its route checks the request's signature itself.
- Every other route that exists is the Jobs API: the middleware resolves its Caller (open or
  token mode, see node/access.py) and stores it on the request, where `caller_of` finds it.

A path that matches no route, outside `/admin`, answers 404 or 405 as it would anyway.
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from node.access import AUTHORIZATION, Access, Caller

ADMIN_PREFIX = "/admin"
METRICS_PATH = "/metrics"
INTERNAL_PREFIX = "/internal/"
OPEN_PATHS = frozenset(
    {"/v1.0/healthz", "/v1.0/healthz/ready", "/v1.0/healthz/outbound", "/openapi.json", "/ui"}
)
OPEN_PREFIXES = ("/ui/",)
OPEN_METHODS = frozenset({"GET", "HEAD"})
CALLER_KEY = web.RequestKey("caller", Caller)


def needs_admin(path: str) -> bool:
    """Whether `path` is an admin path, however it is spelled: its dot segments resolved and
    empty segments dropped, as a proxy in front of the node might."""
    path = normalized(path)
    return path in (METRICS_PATH, ADMIN_PREFIX) or path.startswith(ADMIN_PREFIX + "/")


def normalized(path: str) -> str:
    segments: list[str] = []
    for segment in path.split("/"):
        if segment == "..":
            if segments:
                segments.pop()
        elif segment not in ("", "."):
            segments.append(segment)
    return "/" + "/".join(segments)


def is_open(method: str, path: str) -> bool:
    return method in OPEN_METHODS and (path in OPEN_PATHS or path.startswith(OPEN_PREFIXES))


def access_middleware(access: Access) -> Middleware:
    @web.middleware
    async def check_access(request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.path
        if needs_admin(path) or needs_admin(_route_path(request)):
            access.require_admin(request.headers.get(AUTHORIZATION))
        elif not (
            is_open(request.method, path)
            or path.startswith(INTERNAL_PREFIX)
            or request.match_info.http_exception is not None
        ):
            request[CALLER_KEY] = await access.caller(
                request.headers.get, request.match_info.get("appId")
            )
        return await handler(request)

    return check_access


def caller_of(request: web.Request) -> Caller:
    """Who a Jobs API request acts for, as the access middleware resolved it."""
    return request[CALLER_KEY]


def _route_path(request: web.Request) -> str:
    """The path of the route that matched, as registered: the same admin check holds for a path
    that reaches an admin route under another spelling."""
    route = request.match_info.route
    resource = route.resource if route is not None else None
    return "" if resource is None else resource.canonical
