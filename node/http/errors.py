"""The one place where errors become HTTP answers.

Handlers raise TockError leaves (store/errors.py) and never build an error response themselves;
`error_middleware` turns every exception into `{"errorCode", "message"}` with its status. The
error codes are Dapr's where one fits (as Dapr documents them), so a Dapr user sees the
codes they know; tock's own conditions (no quorum, no such app) get codes of the same form.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from node.http.body import MALFORMED_BODY_PREFIX
from store.errors import (
    AppNotFound,
    DeadLetterNotFound,
    Forbidden,
    JobConflict,
    JobNotFound,
    OutcomeUnknown,
    QuotaExceeded,
    Unauthenticated,
    Unavailable,
    ValidationError,
)

log = logging.getLogger(__name__)

CODE_MALFORMED = "ERR_MALFORMED_REQUEST"
CODE_VALIDATION = "DAPR_SCHEDULER_SCHEDULE_JOB"
# Dapr's own code for the validation messages it has one for; every other 400 is CODE_VALIDATION.
CODES_BY_MESSAGE = {
    "Name is empty": "DAPR_SCHEDULER_JOB_NAME_EMPTY",
    "job must have either a due time or a schedule": "DAPR_SCHEDULER_SCHEDULE_EMPTY",
    "Set the job name in the url only": "DAPR_SCHEDULER_JOB_NAME",
}
CODE_JOB_NOT_FOUND = "DAPR_SCHEDULER_JOB_NOT_FOUND"
CODE_APP_NOT_FOUND = "ERR_APP_NOT_FOUND"
CODE_DEAD_LETTER_NOT_FOUND = "ERR_DEAD_LETTER_NOT_FOUND"
# Dapr answers a duplicate job with this code (and, since 1.16, status 409).
CODE_CONFLICT = "DAPR_SCHEDULER_SCHEDULE_JOB"
CODE_QUOTA_EXCEEDED = "ERR_QUOTA_EXCEEDED"
CODE_UNAVAILABLE = "ERR_UNAVAILABLE"
CODE_OUTCOME_UNKNOWN = "ERR_OUTCOME_UNKNOWN"
CODE_INTERNAL = "ERR_INTERNAL"
CODE_UNAUTHORIZED = "ERR_UNAUTHORIZED"
CODE_FORBIDDEN = "ERR_PERMISSION_DENIED"
CODES_BY_HTTP_STATUS = {
    401: CODE_UNAUTHORIZED,
    404: "ERR_NOT_FOUND",
    405: "ERR_METHOD_NOT_ALLOWED",
    413: "ERR_REQUEST_TOO_LARGE",
}
# Headers of an aiohttp HTTPException that describe its own body, replaced by ours.
_BODY_HEADERS = frozenset({"Content-Type", "Content-Length"})


@dataclass(frozen=True, slots=True)
class ErrorAnswer:
    status: int
    code: str
    message: str
    headers: dict[str, str] = field(default_factory=dict)

    def response(self) -> web.Response:
        body = {"errorCode": self.code, "message": self.message}
        return web.json_response(body, status=self.status, headers=self.headers)


def validation_code(message: str) -> str:
    if message.startswith(MALFORMED_BODY_PREFIX):
        return CODE_MALFORMED
    return CODES_BY_MESSAGE.get(message, CODE_VALIDATION)


def describe(error: Exception, retry_after_s: int) -> ErrorAnswer:
    """The HTTP answer for an exception a handler raised: status, error code, message."""
    retry = {"Retry-After": str(retry_after_s)}
    match error:
        case ValidationError():
            return ErrorAnswer(400, validation_code(str(error)), str(error))
        case JobNotFound():
            return ErrorAnswer(404, CODE_JOB_NOT_FOUND, str(error))
        case DeadLetterNotFound():
            return ErrorAnswer(404, CODE_DEAD_LETTER_NOT_FOUND, str(error))
        case AppNotFound():
            return ErrorAnswer(404, CODE_APP_NOT_FOUND, str(error))
        case JobConflict():
            return ErrorAnswer(409, CODE_CONFLICT, str(error))
        case QuotaExceeded():
            return ErrorAnswer(429, CODE_QUOTA_EXCEEDED, str(error))
        case Unauthenticated():
            return ErrorAnswer(401, CODE_UNAUTHORIZED, str(error), {"WWW-Authenticate": "Bearer"})
        case Forbidden():
            return ErrorAnswer(403, CODE_FORBIDDEN, str(error))
        case Unavailable():
            return ErrorAnswer(503, CODE_UNAVAILABLE, str(error), retry)
        case OutcomeUnknown():
            return ErrorAnswer(503, CODE_OUTCOME_UNKNOWN, str(error), retry)
        case web.HTTPException():
            code = CODES_BY_HTTP_STATUS.get(error.status, f"ERR_HTTP_{error.status}")
            headers = {k: v for k, v in error.headers.items() if k not in _BODY_HEADERS}
            return ErrorAnswer(error.status, code, error.text or error.reason, headers)
    return ErrorAnswer(500, CODE_INTERNAL, "internal error; the node's log has the details")


def error_middleware(retry_after_s: int) -> Middleware:
    """Answer every exception as JSON; an unexpected one is logged and answered 500."""

    @web.middleware
    async def map_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPException as error:
            # A success or redirect raised as an exception is an answer, not an error.
            if error.status < 400:
                raise
            return describe(error, retry_after_s).response()
        except Exception as error:
            answer = describe(error, retry_after_s)
            if answer.status == 500:
                log.exception("%s %s failed", request.method, request.path)
            return answer.response()

    return map_errors
