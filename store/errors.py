"""The one exception root of tock, and its few meaningful leaves.

Errors are for operating conditions (bad input, no quorum, a timeout); a broken invariant is an
assertion and crashes the process. The HTTP and gRPC faces map these classes to status codes in
one place each, so a new leaf here needs a line there and nowhere else.
"""

from __future__ import annotations


class TockError(Exception):
    """Root of every error tock raises on purpose."""


class ValidationError(TockError, ValueError):
    """Bad input: a job, a schedule, a request body. Maps to 400 / InvalidArgument."""


class ScheduleError(ValidationError):
    """A schedule, dueTime or ttl that cannot be parsed or makes no sense."""


class JobNotFound(TockError, LookupError):
    """The job does not exist. Maps to 404 / NotFound."""


class DeadLetterNotFound(TockError, LookupError):
    """The dead letter does not exist (never, or forgotten). Maps to 404."""


class JobConflict(TockError, KeyError):
    """The job exists and overwrite was not asked for. Maps to 409 / AlreadyExists."""

    def __str__(self) -> str:
        # KeyError's __str__ quotes its argument; a conflict message is meant for people.
        return str(self.args[0]) if self.args else ""


class CodecError(TockError, ValueError):
    """Bytes that are not a valid command or snapshot of a version we know."""


class Unavailable(TockError):
    """No quorum or no leader right now; retrying later may succeed. Maps to 503."""


class OutcomeUnknown(TockError):
    """The write may or may not have been committed (lost leadership, timeout). Maps to 503."""


class QuotaExceeded(TockError):
    """An app would hold more jobs or data bytes than its quota allows. Maps to 429 /
    RESOURCE_EXHAUSTED: the request is valid, and succeeds once the app deletes some jobs."""


class AppNotFound(TockError, LookupError):
    """No callback URL is registered for the app. Maps to 404 (HTTP only: gRPC has no apps)."""


class Unauthenticated(TockError):
    """No credential, or one that is wrong, unknown or revoked. Maps to 401 / UNAUTHENTICATED."""


class Forbidden(TockError):
    """A valid credential asking for what it may not do: an app token acting for another app.
    Maps to 403 / PERMISSION_DENIED."""
