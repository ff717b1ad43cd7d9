"""Every HTTP request gets an id: the caller's `x-request-id` when it is a plain token, else a
fresh one. The id is echoed in the answer's `x-request-id` and carried by every log line written
while the request is handled (node/logs.py), so a caller's report and the node's log meet.

Each request also gets one access line at DEBUG: method, path, status and duration.
"""

from __future__ import annotations

import logging
import re
import time
import uuid

from aiohttp import web
from aiohttp.typedefs import Handler

from node.logs import log_fields

log = logging.getLogger(__name__)

REQUEST_ID_HEADER = "x-request-id"
# What a caller's id may be: short, and nothing a log reader or a header could misread.
_ACCEPTED_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def request_id_of(request: web.Request) -> str:
    given = request.headers.get(REQUEST_ID_HEADER, "")
    return given if _ACCEPTED_ID.fullmatch(given) else uuid.uuid4().hex


@web.middleware
async def request_id_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    request_id = request_id_of(request)
    began = time.monotonic()
    with log_fields(request_id=request_id):
        response = await handler(request)
        # A stream (a watch's WebSocket) has sent its headers already.
        if not response.prepared:
            response.headers[REQUEST_ID_HEADER] = request_id
        log.debug(
            "%s %s %d",
            request.method,
            request.path,
            response.status,
            extra={"duration_ms": round((time.monotonic() - began) * 1000, 3)},
        )
    return response
