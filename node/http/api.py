"""The Dapr-compatible HTTP face: the jobs and apps routes, under /v1.0-alpha1/ and /v1.0/.

Handlers only translate: they take the scope the access middleware resolved (node/http/access.py)
and the body as JSON, call JobService (the one implementation, shared with the gRPC face) and
write its answer. Errors are raised as TockError leaves and turned into HTTP answers by
http_errors.error_middleware.

`build_app` assembles the whole HTTP server of a node: these routes, the admin routes, the
dashboard, the request id, error and access middlewares, and the request body bound.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from aiohttp import web

from node.access import Access
from node.http.access import access_middleware, caller_of
from node.http.admin import AdminView, add_admin_routes
from node.http.body import read_json_object
from node.http.errors import error_middleware
from node.http.openapi import API_PREFIXES
from node.http.request_id import request_id_middleware
from node.http.ui import UiRoutes
from node.scope import Scope
from node.service import JobService
from store.errors import AppNotFound, ValidationError
from store.jobs import job_to_json
from store.time_formats import format_rfc3339_ms

# A limit is at most list_limit_max (a few digits): longer text is refused before int() reads
# it, so a hostile limit of thousands of digits costs nothing.
LIMIT_DIGITS_MAX = 9


@dataclass(frozen=True, kw_only=True)
class ApiConfig:
    """The HTTP face's own knobs."""

    # The longest app callback URL accepted by PUT /apps/{appId}.
    url_chars_max: int = 2048
    # The Retry-After header of a 503: when a client may try again.
    retry_after_s: int = 1
    # How long a stopping node lets the requests in progress finish.
    stop_grace_s: float = 10.0

    def validate(self) -> None:
        if min(self.url_chars_max, self.retry_after_s, self.stop_grace_s) <= 0:
            raise ValidationError("url_chars_max, retry_after_s and stop_grace_s must be positive")


class Routes(Protocol):
    """A set of routes served beside the jobs API (the watch stream, the internal hop)."""

    def register(self, router: web.UrlDispatcher) -> None: ...


def build_app(
    service: JobService,
    admin: AdminView,
    config: ApiConfig,
    routes: Sequence[Routes] = (),
    *,
    body_bytes_max: int,
    access: Access,
) -> web.Application:
    """The HTTP server of one node: jobs, apps, admin and `routes` behind the middlewares.

    Bodies above `body_bytes_max` are refused with 413 before they are parsed; `access` decides
    who may call each route."""
    config.validate()
    # The request id outermost: the error answers carry it too.
    middlewares = [
        request_id_middleware,
        error_middleware(config.retry_after_s),
        access_middleware(access),
    ]
    app = web.Application(client_max_size=body_bytes_max, middlewares=middlewares)
    # `routes` first: the Jobs API's `jobs/{name:.*}` would also match `jobs/x/pause`.
    for extra in routes:
        extra.register(app.router)
    JobRoutes(service, config).register(app.router)
    UiRoutes().register(app.router)
    add_admin_routes(app, admin)
    return app


def scope_of(request: web.Request) -> Scope:
    """The (namespace, app) a request acts for: its app token's in token mode, else Dapr's
    headers, each defaulting to "default", the `{appId}` of the path instead of the app id
    header where the path has one."""
    return caller_of(request).scope


def parse_limit(text: str | None, what: str = "limit") -> int | None:
    if text is None or text == "":
        return None
    if len(text) > LIMIT_DIGITS_MAX or not text.isascii() or not text.isdecimal():
        raise ValidationError(f"{what} must be a positive integer: got {text!r:.40}")
    return int(text)


class JobRoutes:
    """The handlers of the jobs and apps routes, bound to one JobService."""

    def __init__(self, service: JobService, config: ApiConfig) -> None:
        self._service = service
        self._config = config

    def register(self, router: web.UrlDispatcher) -> None:
        # `{name:.*}` also matches the empty name and names with a slash, so that they get the
        # validation message ("Name is empty", "must not contain '/'") rather than a bare 404.
        for prefix in API_PREFIXES:
            # Before the job's own routes, whose name would match "NAME/next" too.
            router.add_route("GET", f"{prefix}/jobs/{{name}}/next", self.upcoming)
            job = f"{prefix}/jobs/{{name:.*}}"
            router.add_route("POST", job, self.schedule)
            router.add_route("GET", job, self.get)
            router.add_route("DELETE", job, self.delete)
            router.add_route("GET", f"{prefix}/jobs", self.list)
            router.add_route("DELETE", f"{prefix}/jobs", self.delete_prefix)
            app = f"{prefix}/apps/{{appId}}"
            router.add_route("PUT", app, self.register_app)
            router.add_route("GET", app, self.app_url)
            router.add_route("DELETE", app, self.unregister_app)

    async def schedule(self, request: web.Request) -> web.Response:
        body = await read_json_object(request)
        await self._service.schedule(scope_of(request), request.match_info["name"], body)
        return web.Response(status=204)

    async def get(self, request: web.Request) -> web.Response:
        job = await self._service.get(scope_of(request), request.match_info["name"])
        return web.json_response(job_to_json(job))

    async def upcoming(self, request: web.Request) -> web.Response:
        count = parse_limit(request.query.get("count"), "count")
        times = await self._service.upcoming(scope_of(request), request.match_info["name"], count)
        return web.json_response({"next": [format_rfc3339_ms(ms) for ms in times]})

    async def delete(self, request: web.Request) -> web.Response:
        await self._service.delete(scope_of(request), request.match_info["name"])
        return web.Response(status=204)

    async def list(self, request: web.Request) -> web.Response:
        query = request.query
        jobs, cursor = await self._service.list(
            scope_of(request),
            prefix=query.get("prefix", ""),
            limit=parse_limit(query.get("limit")),
            cursor=query.get("cursor"),
        )
        return web.json_response({"jobs": [job_to_json(j) for j in jobs], "nextCursor": cursor})

    async def delete_prefix(self, request: web.Request) -> web.Response:
        prefix = request.query.get("prefix", "")
        deleted = await self._service.delete_prefix(scope_of(request), prefix)
        return web.json_response({"deleted": deleted})

    async def register_app(self, request: web.Request) -> web.Response:
        scope = scope_of(request)
        body = await read_json_object(request) or {}
        url = body.get("url")
        token = body.get("token")
        if token is None:
            token = ""
        if not isinstance(url, str) or not url or not isinstance(token, str):
            raise ValidationError('the body must be {"url": "http://host:port", "token": "..."}')
        if len(url) > self._config.url_chars_max:
            raise ValidationError(
                f"url is too long: {len(url)} characters, at most {self._config.url_chars_max}"
            )
        await self._service.register_app(scope, url, token)
        return web.Response(status=204)

    async def app_url(self, request: web.Request) -> web.Response:
        scope = scope_of(request)
        route = await self._service.app_route(scope)
        if route is None:
            raise AppNotFound(f"app {scope.app!r} has no registered url")
        # The token itself never leaves the cluster: only whether one is set.
        return web.json_response({"url": route.url, "hasToken": bool(route.token)})

    async def unregister_app(self, request: web.Request) -> web.Response:
        await self._service.unregister_app(scope_of(request))
        return web.Response(status=204)
