"""`GET /admin/export` and `POST /admin/import`: the jobs of the cluster as NDJSON, streamed both
ways (node/backup.py). Admin routes: the admin token guards them with every other /admin path."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from node.backup import IMPORT_LINE_BYTES_MAX, Backup, lines_of
from node.scope import checked_text
from store.errors import ValidationError

NDJSON = "application/x-ndjson"
# The largest chunk read from an import body at a time.
_READ_CHUNK_BYTES = 1 << 16
# The scope and prefix filters of an export: the bounds of a namespace, app and name.
_FILTER_CHARS_MAX = 256


class BackupRoutes:
    def __init__(self, backup: Backup, read_timeout_s: float) -> None:
        self._backup = backup
        self._read_timeout_s = read_timeout_s

    def register(self, router: web.UrlDispatcher) -> None:
        router.add_route("GET", "/admin/export", self.export)
        router.add_route("POST", "/admin/import", self.import_)

    async def export(self, request: web.Request) -> web.StreamResponse:
        query = request.query
        filters = {
            field: checked_text(field, query.get(field, ""), _FILTER_CHARS_MAX)
            for field in ("namespace", "app", "prefix")
        }
        lines = self._backup.export(
            filters["namespace"], filters["app"], filters["prefix"], self._read_timeout_s
        )
        # The first line is read before the answer starts: a failed barrier is still a 503.
        first = await anext(lines, None)
        response = web.StreamResponse(headers={"Content-Type": NDJSON})
        await response.prepare(request)
        if first is not None:
            await response.write(first)
            async for line in lines:
                await response.write(line)
        await response.write_eof()
        return response

    async def import_(self, request: web.Request) -> web.Response:
        overwrite = request.query.get("overwrite", "false")
        if overwrite not in ("true", "false"):
            raise ValidationError("overwrite must be true or false")
        lines = lines_of(_chunks(request), IMPORT_LINE_BYTES_MAX)
        counts = await self._backup.import_lines(lines, overwrite == "true")
        return web.json_response({"imported": counts.imported, "skipped": counts.skipped})


async def _chunks(request: web.Request) -> AsyncIterator[bytes]:
    # The body is streamed, not read whole: client_max_size does not bound it, the line bound
    # and the batches do.
    async for chunk in request.content.iter_chunked(_READ_CHUNK_BYTES):
        yield chunk
