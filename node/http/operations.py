"""The HTTP routes of the job operations beyond Dapr's Jobs API: pause, resume, run now, a job's
history, and dead letters (list, redrive, forget). Scope and errors as for the Jobs API; each
handler only translates between HTTP and JobService."""

from __future__ import annotations

from aiohttp import web

from node.http.api import parse_limit, scope_of
from node.http.openapi import API_PREFIXES
from node.service import JobService
from store.dead_letters import DeadLetter
from store.history import Attempt
from store.schedule import format_rfc3339_ms


class OperationRoutes:
    """Registered before the Jobs API's routes: `jobs/{name:.*}` would take `jobs/x/pause`."""

    def __init__(self, service: JobService) -> None:
        self._service = service

    def register(self, router: web.UrlDispatcher) -> None:
        for prefix in API_PREFIXES:
            job = f"{prefix}/jobs/{{name}}"
            router.add_route("POST", f"{job}/pause", self.pause)
            router.add_route("POST", f"{job}/resume", self.resume)
            router.add_route("POST", f"{job}/run", self.run)
            router.add_route("GET", f"{job}/history", self.history)
            router.add_route("GET", f"{prefix}/deadletters", self.dead_letters)
            router.add_route("POST", f"{prefix}/deadletters/{{id}}/redrive", self.redrive)
            router.add_route("DELETE", f"{prefix}/deadletters/{{id}}", self.forget)

    async def pause(self, request: web.Request) -> web.Response:
        await self._service.pause(scope_of(request), request.match_info["name"])
        return web.Response(status=204)

    async def resume(self, request: web.Request) -> web.Response:
        await self._service.resume(scope_of(request), request.match_info["name"])
        return web.Response(status=204)

    async def run(self, request: web.Request) -> web.Response:
        await self._service.run_now(scope_of(request), request.match_info["name"])
        return web.Response(status=204)

    async def history(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        limit = parse_limit(request.query.get("limit"))
        attempts = await self._service.history(scope_of(request), name, limit)
        job = await self._service.get(scope_of(request), name)
        return web.json_response({"history": [attempt_json(job.uid, a) for a in attempts]})

    async def dead_letters(self, request: web.Request) -> web.Response:
        query = request.query
        letters, cursor = await self._service.dead_letters(
            scope_of(request),
            prefix=query.get("prefix", ""),
            limit=parse_limit(query.get("limit")),
            cursor=query.get("cursor"),
        )
        body = {"deadLetters": [dead_letter_json(letter) for letter in letters]}
        return web.json_response({**body, "nextCursor": cursor})

    async def redrive(self, request: web.Request) -> web.Response:
        await self._service.redrive(scope_of(request), request.match_info["id"])
        return web.Response(status=202)

    async def forget(self, request: web.Request) -> web.Response:
        await self._service.forget_dead_letter(scope_of(request), request.match_info["id"])
        return web.Response(status=204)


def attempt_json(uid: str, attempt: Attempt) -> dict[str, object]:
    return {
        "triggerId": f"{attempt.scheduled_ms}:{uid}",
        "scheduledTime": format_rfc3339_ms(attempt.scheduled_ms),
        "attempt": attempt.attempt,
        "outcome": str(attempt.outcome),
        "node": attempt.node,
        "startedAt": format_rfc3339_ms(attempt.started_ms) if attempt.started_ms else None,
        "durationMs": attempt.duration_ms,
        "status": attempt.status,
        "manual": attempt.manual,
    }


def dead_letter_json(letter: DeadLetter) -> dict[str, object]:
    return {
        "id": letter.id,
        "name": letter.name,
        "scheduledTime": format_rfc3339_ms(letter.scheduled_ms),
        "attempts": letter.attempts,
        "lastOutcome": letter.last_outcome,
        "failedAt": format_rfc3339_ms(letter.failed_ms),
        "redriving": letter.redrive_ms is not None,
    }
