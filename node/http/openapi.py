"""The OpenAPI 3 description of every HTTP route of a node, served at GET /openapi.json.

Written as data, not generated from the handlers: it is the contract of the Jobs and admin APIs as a
client sees it. A test checks that every route the server registers is described here.
"""

from __future__ import annotations

from typing import Any

from node.http.backup import NDJSON
from node.scope import APP_ID_HEADER, NAMESPACE_HEADER
from node.service import (
    DEAD_LETTER_ID_CHARS_MAX,
    HISTORY_LIMIT_DEFAULT,
    UPCOMING_COUNT_DEFAULT,
    UPCOMING_COUNT_MAX,
)
from store.bounds import SCOPE_CHARS_MAX, UINT32_MAX
from store.failure_policy import MULTIPLIER_MAX
from store.history import AttemptOutcome
from store.jobs import NAME_CHARS_MAX, TEXT_CHARS_MAX

OPENAPI_VERSION = "3.0.3"
API_PREFIXES = ("/v1.0-alpha1", "/v1.0")

Json = dict[str, Any]


def _ref(name: str) -> Json:
    return {"$ref": f"#/components/schemas/{name}"}


def _json_content(schema: Json) -> Json:
    return {"application/json": {"schema": schema}}


def _answer(description: str, schema: Json | None = None) -> Json:
    answer: Json = {"description": description}
    if schema is not None:
        answer["content"] = _json_content(schema)
    return answer


def _error(description: str) -> Json:
    return _answer(description, _ref("Error"))


# Who may call a route (node/access.py): the security requirements and the refusals of each kind.
JOBS = "jobs"
ADMIN = "admin"
OPEN = "open"
INTERNAL = "internal"
_SECURITY: dict[str, list[Json]] = {
    # An app token (token mode), the admin token, or nothing at all (open mode).
    JOBS: [{"appToken": []}, {"adminToken": []}, {}],
    ADMIN: [{"adminToken": []}],
    OPEN: [],
    INTERNAL: [],
}
_REFUSALS: dict[str, Json] = {
    JOBS: {
        "401": _error(
            "token mode: dapr-api-token is missing or not a valid app token; or the "
            "Authorization header does not carry the admin token"
        ),
        "403": _error(
            "token mode: dapr-app-id, dapr-namespace or the path's app id names another app "
            "than the app token's"
        ),
    },
    ADMIN: {"401": _error("Authorization: Bearer <admin token> is missing or wrong")},
    OPEN: {},
    INTERNAL: {"401": _error("tock-signature is missing, wrong, stale or replayed")},
}


def _operation(summary: str, answers: dict[str, Json], access: str = JOBS, **extra: Any) -> Json:
    # No route lists 500: no input, however hostile, may cause one.
    responses = {**answers, **_REFUSALS[access]}
    return {"summary": summary, "responses": responses, "security": _SECURITY[access], **extra}


def _path_parameter(name: str, description: str, schema: Json | None = None) -> Json:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": schema or {"type": "string"},
    }


def _query_parameter(name: str, description: str, schema: Json) -> Json:
    return {"name": name, "in": "query", "description": description, "schema": schema}


def _header_parameter(name: str, description: str) -> Json:
    return {"name": name, "in": "header", "description": description, "schema": SCOPE_TEXT}


def _text(chars_max: int, **extra: Any) -> Json:
    return {"type": "string", "maxLength": chars_max, **extra}


def _forms(description: str, chars_max: int, *patterns: str) -> Json:
    """A string of one of the usual `patterns`. The node reads more forms than these (cron
    ranges and lists, ISO 8601, ...), as `description` says, and answers 400 naming the field
    for what it cannot read; the patterns show a reader, and a request generator, what
    well-formed values look like."""
    usual = [_text(chars_max, pattern=pattern) for pattern in patterns]
    return (
        {"description": description, "anyOf": usual}
        if len(usual) > 1
        else {
            "description": description,
            **usual[0],
        }
    )


# protojson reads a uint32 from a JSON number or a decimal string.
UINT32 = {"type": "integer", "minimum": 0, "maximum": UINT32_MAX}
UINT32_TEXT = {"type": "string", "pattern": "^[0-9]{1,10}$"}
GO_DURATION = "^[1-9][0-9]{0,3}(ms|s|m|h)$"
RFC3339 = (
    "^(19[7-9][0-9]|20[0-9][0-9])-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])"
    "T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\\.[0-9]{3})?Z$"
)


# Namespaces and app ids: valid UTF-8 without control characters, else a 400 naming the header.
NO_CONTROL = "^[^\\x00-\\x1f\\x7f-\\x9f]*$"
SCOPE_TEXT = _text(SCOPE_CHARS_MAX, minLength=1, pattern=NO_CONTROL)
SCOPE_HEADERS = [
    _header_parameter(APP_ID_HEADER, 'the app the jobs belong to (default "default")'),
    _header_parameter(NAMESPACE_HEADER, 'the namespace of the app (default "default")'),
]
NAME = _path_parameter(
    "name",
    "the job name, unique within (namespace, app): no '/', '\\', '#', '?' or control characters",
    _text(NAME_CHARS_MAX, minLength=1, pattern="^[^/\\\\#?\\x00-\\x1f\\x7f-\\x9f]*$"),
)
APP_ID = _path_parameter("appId", "the app id", SCOPE_TEXT)
UNAVAILABLE = _error("no quorum or no leader right now; retry after Retry-After seconds")
BAD_INPUT = _error("bad input, the message names the field: nothing was changed")
TOO_LARGE = _error("the body is over the configured limit: nothing was changed")
QUOTA = _error("the app is at its quota of jobs or data bytes (ERR_QUOTA_EXCEEDED)")


def _job_path() -> Json:
    return {
        "parameters": [NAME, *SCOPE_HEADERS],
        "post": _operation(
            "Schedule a job; answers once a majority has committed it",
            {
                "204": _answer("scheduled"),
                "400": BAD_INPUT,
                "409": _error("the name exists and overwrite is not true"),
                "413": TOO_LARGE,
                "429": QUOTA,
                "503": UNAVAILABLE,
            },
            requestBody={"content": _json_content(_ref("JobRequest"))},
        ),
        "get": _operation(
            "The job as submitted, with its status",
            {
                "200": _answer("the job", _ref("Job")),
                "400": BAD_INPUT,
                "404": _error("no such job"),
                "503": UNAVAILABLE,
            },
        ),
        "delete": _operation(
            "Delete a job (also answers 204 for a name that does not exist)",
            {"204": _answer("deleted"), "400": BAD_INPUT, "503": UNAVAILABLE},
        ),
    }


def _upcoming_path() -> Json:
    count = _query_parameter(
        "count",
        f"how many (default {UPCOMING_COUNT_DEFAULT})",
        {"type": "integer", "minimum": 1, "maximum": UPCOMING_COUNT_MAX},
    )
    upcoming = {
        "type": "object",
        "required": ["next"],
        "properties": {"next": {"type": "array", "items": {"type": "string"}}},
    }
    return {
        "parameters": [NAME, *SCOPE_HEADERS],
        "get": _operation(
            "The scheduled times (RFC3339, UTC) of the job's next occurrences, the current one "
            "first, computed from its schedule, repeats and ttl; none for a quarantined job",
            {
                "200": _answer("the times", upcoming),
                "400": BAD_INPUT,
                "404": _error("no such job"),
                "503": UNAVAILABLE,
            },
            parameters=[count],
        ),
    }


def _jobs_path() -> Json:
    prefix = _query_parameter("prefix", "only names starting with this", _text(NAME_CHARS_MAX))
    page = {
        "type": "object",
        "required": ["jobs", "nextCursor"],
        "properties": {
            "jobs": {"type": "array", "items": _ref("Job")},
            "nextCursor": {"type": "string", "nullable": True},
        },
    }
    deleted = {
        "type": "object",
        "required": ["deleted"],
        "properties": {"deleted": {"type": "integer", "minimum": 0}},
    }
    limit = _query_parameter(
        "limit",
        "page size, at most the node's list limit (1000 by default); a page also ends once its "
        "jobs' JSON reaches the node's list byte bound (4 MiB by default), at least one job",
        {"type": "integer", "minimum": 1},
    )
    cursor = _query_parameter("cursor", "nextCursor of the previous page", _text(NAME_CHARS_MAX))
    return {
        "parameters": SCOPE_HEADERS,
        "get": _operation(
            "One page of the app's jobs, in name order",
            {"200": _answer("a page", page), "400": BAD_INPUT, "503": UNAVAILABLE},
            parameters=[prefix, limit, cursor],
        ),
        "delete": _operation(
            "Delete every job of the app whose name starts with prefix (empty: all of them)",
            {
                "200": _answer("how many were deleted", deleted),
                "400": BAD_INPUT,
                "503": UNAVAILABLE,
            },
            parameters=[prefix],
        ),
    }


def _job_operation_path(summary: str, success: Json) -> Json:
    return {
        "parameters": [NAME, *SCOPE_HEADERS],
        "post": _operation(
            summary,
            {"204": success, "400": BAD_INPUT, "404": _error("no such job"), "503": UNAVAILABLE},
        ),
    }


def _history_path() -> Json:
    limit = _query_parameter(
        "limit",
        f"at most this many attempts (default {HISTORY_LIMIT_DEFAULT}); a job keeps its last "
        "attempts only, as many as the node is configured to",
        {"type": "integer", "minimum": 1, "maximum": 999_999_999},
    )
    history = {
        "type": "object",
        "required": ["history"],
        "properties": {"history": {"type": "array", "items": _ref("Attempt")}},
    }
    return {
        "parameters": [NAME, *SCOPE_HEADERS],
        "get": _operation(
            "The job's last attempts, newest first (replicated: every node answers alike)",
            {
                "200": _answer("the attempts", history),
                "400": BAD_INPUT,
                "404": _error("no such job"),
                "503": UNAVAILABLE,
            },
            parameters=[limit],
        ),
    }


def _dead_letters_path() -> Json:
    prefix = _query_parameter(
        "prefix", "only dead letters of jobs whose name starts with this", _text(NAME_CHARS_MAX)
    )
    limit = _query_parameter(
        "limit",
        "page size, at most the node's list limit (1000 by default)",
        {"type": "integer", "minimum": 1},
    )
    cursor = _query_parameter(
        "cursor", "nextCursor of the previous page", _text(DEAD_LETTER_ID_CHARS_MAX)
    )
    page = {
        "type": "object",
        "required": ["deadLetters", "nextCursor"],
        "properties": {
            "deadLetters": {"type": "array", "items": _ref("DeadLetter")},
            "nextCursor": {"type": "string", "nullable": True},
        },
    }
    return {
        "parameters": SCOPE_HEADERS,
        "get": _operation(
            "One page of the app's dead letters (occurrences given up after their last "
            "allowed attempt), oldest first",
            {"200": _answer("a page", page), "400": BAD_INPUT, "503": UNAVAILABLE},
            parameters=[prefix, limit, cursor],
        ),
    }


DEAD_LETTER_ID = _path_parameter(
    "id",
    "the dead letter's id, its trigger id: `{scheduled ms}:{job uid}`",
    _text(DEAD_LETTER_ID_CHARS_MAX, minLength=1, pattern="^[0-9]{1,15}:[A-Za-z0-9_-]{1,48}$"),
)


def _dead_letter_paths() -> dict[str, Json]:
    not_found = _error("no such dead letter")
    return {
        "/redrive": {
            "parameters": [DEAD_LETTER_ID, *SCOPE_HEADERS],
            "post": _operation(
                "Deliver the dead letter again now, with its own tock-trigger-id, even if its "
                "job has ended or was deleted; it stays listed until deleted",
                {
                    "202": _answer("the redrive is recorded; its outcome shows on the letter"),
                    "400": BAD_INPUT,
                    "404": not_found,
                    "503": UNAVAILABLE,
                },
            ),
        },
        "": {
            "parameters": [DEAD_LETTER_ID, *SCOPE_HEADERS],
            "delete": _operation(
                "Forget the dead letter (also answers 204 for an id that names none)",
                {"204": _answer("forgotten"), "400": BAD_INPUT, "503": UNAVAILABLE},
            ),
        },
    }


def _backup_paths() -> Json:
    ndjson = {NDJSON: {"schema": {"type": "string"}}}
    filter_text = _text(SCOPE_CHARS_MAX, pattern=NO_CONTROL)
    filters = [
        _query_parameter("namespace", "only jobs of this namespace", filter_text),
        _query_parameter("app", "only jobs of this app id", filter_text),
        _query_parameter("prefix", "only jobs whose name starts with this", filter_text),
    ]
    overwrite = _query_parameter(
        "overwrite",
        "replace jobs that exist under the same names (default: skip them)",
        {"type": "string", "enum": ["true", "false"]},
    )
    counts = {
        "type": "object",
        "required": ["imported", "skipped"],
        "properties": {
            "imported": {"type": "integer", "minimum": 0},
            "skipped": {"type": "integer", "minimum": 0},
        },
    }
    return {
        "/admin/export": {
            "get": _operation(
                "Every job with its whole state (schedule position, count, pause, history), as "
                'NDJSON streamed: one job a line, {"namespace", "app", "name", "definition", '
                '"status", "state"}, no header or trailer lines; key order',
                {
                    "200": {"description": "one job a line", "content": ndjson},
                    "400": BAD_INPUT,
                    "503": UNAVAILABLE,
                },
                ADMIN,
                parameters=filters,
            )
        },
        "/admin/import": {
            "post": _operation(
                "Put in the jobs of an export with their whole state, streamed (any content "
                "type), in batches each committed on its own: a bad line is a 400 that names it "
                "and says how many jobs came in before it",
                {
                    "200": _answer("how many jobs were imported and skipped", counts),
                    "400": BAD_INPUT,
                    "503": UNAVAILABLE,
                },
                ADMIN,
                parameters=[overwrite],
                requestBody={"required": True, "content": ndjson},
            )
        },
    }


def _app_path() -> Json:
    registration = {
        "type": "object",
        "required": ["url"],
        "properties": {
            "url": _forms(
                "http:// or https:// HOST[:PORT][/path], or grpc://HOST:PORT; no userinfo, "
                "query or fragment; at most 2048 characters",
                2048,
                "^https?://[a-z][a-z0-9.-]{0,30}:[1-9][0-9]{0,4}(/[a-z0-9/-]{0,20})?$",
                "^grpc://[a-z][a-z0-9.-]{0,30}:[1-9][0-9]{0,4}$",
            ),
            "token": {
                "type": "string",
                "nullable": True,
                "pattern": "^[!-~]{0,512}$",
                "description": "sent as dapr-api-token with every trigger; printable ASCII",
            },
        },
    }
    registered = {
        "type": "object",
        "required": ["url", "hasToken"],
        "properties": {"url": {"type": "string"}, "hasToken": {"type": "boolean"}},
    }
    return {
        "parameters": [APP_ID, SCOPE_HEADERS[1]],
        "put": _operation(
            "Register where the app's triggers go (http://, https:// or grpc://), and the "
            "token they carry",
            {
                "204": _answer("registered"),
                "400": BAD_INPUT,
                "413": TOO_LARGE,
                "503": UNAVAILABLE,
            },
            requestBody={"required": True, "content": _json_content(registration)},
        ),
        "get": _operation(
            "The app's registered callback URL, and whether it has a token (never the token)",
            {
                "200": _answer("the url", registered),
                "400": BAD_INPUT,
                "404": _error("the app has no registered url"),
                "503": UNAVAILABLE,
            },
        ),
        "delete": _operation(
            "Forget the app's callback URL",
            {"204": _answer("unregistered"), "400": BAD_INPUT, "503": UNAVAILABLE},
        ),
    }


def _watch_path() -> Json:
    return {
        "parameters": [APP_ID, SCOPE_HEADERS[1]],
        "get": _operation(
            "Watch stream: a WebSocket on which the app gets its triggers while it is connected "
            "(to any node), instead of at its URL. Binary msgpack frames: the node sends "
            '{"triggers": [{"id", "name", "data", "scheduledTime", "attempt", "triggerId"}]}, '
            'the app answers {"acks": [[id, "SUCCESS" | "FAILED"]]}; unknown or repeated ids '
            "are ignored, unacked triggers of a stream that closes are redelivered, and a "
            "trigger not acked within the delivery timeout is FAILED. A request that is not a "
            "WebSocket upgrade is a 400",
            {
                "101": _answer("switching to the WebSocket protocol"),
                "400": BAD_INPUT,
                "503": _error("this node holds as many watch streams as it may"),
            },
        ),
    }


def _internal_path() -> Json:
    msgpack = {"application/msgpack": {"schema": {"type": "string", "format": "binary"}}}
    return {
        "post": _operation(
            "Internal, between members: push a batch of triggers down this node's watch "
            "streams; requires tock-signature, signed with a key derived from the cluster "
            "secret over the method, path, body digest, time and a nonce (fresh, never replayed)",
            {
                "200": {"description": "one outcome per trigger", "content": msgpack},
                "400": BAD_INPUT,
                "413": TOO_LARGE,
                "503": _error("too many internal requests within the signature window"),
            },
            INTERNAL,
            requestBody={"content": msgpack},
        )
    }


def _admin_paths() -> Json:
    text = {"text/plain": {"schema": {"type": "string"}}}
    html = {"text/html": {"schema": {"type": "string"}}}
    address = {"type": "string", "description": "HOST:PORT"}
    member = {
        "type": "object",
        "required": ["id", "raft", "http"],
        "properties": {"id": {"type": "string"}, "raft": address, "http": address},
    }
    digest = {
        "type": "object",
        "required": ["digest", "appliedIndex"],
        "properties": {"digest": {"type": "string"}, "appliedIndex": {"type": "integer"}},
    }
    return {
        "/v1.0/healthz": {"get": _operation("Liveness", {"204": _answer("serving")}, OPEN)},
        "/v1.0/healthz/ready": {
            "get": _operation(
                "Readiness: caught up with a leader",
                {"204": _answer("ready"), "503": _error("not caught up with a leader")},
                OPEN,
            )
        },
        "/v1.0/healthz/outbound": {
            "get": _operation("Dapr SDK readiness probe", {"204": _answer("serving")}, OPEN)
        },
        "/admin/cluster": {
            "get": _operation(
                "This node's view of the cluster",
                {"200": _answer("status", _ref("Cluster"))},
                ADMIN,
            )
        },
        "/admin/digest": {
            "get": _operation(
                "A hash of this node's whole replicated state after a barrier read (every write "
                "acknowledged before the call is in it), and its applied index: equal digests "
                "mean equal replicas, and a digest unchanged across a request means that the "
                "request wrote nothing. It hashes the whole state: slow on a big one",
                {"200": _answer("the digest", digest), "503": UNAVAILABLE},
                ADMIN,
            )
        },
        "/admin/members": {
            "post": _operation(
                "Add a node to the cluster",
                {
                    "204": _answer("added"),
                    "400": BAD_INPUT,
                    "413": TOO_LARGE,
                    "503": UNAVAILABLE,
                },
                ADMIN,
                requestBody={"content": _json_content(member)},
            )
        },
        "/admin/members/{id}": {
            "parameters": [_path_parameter("id", "the node id")],
            "delete": _operation(
                "Remove a node from the cluster",
                {"204": _answer("removed"), "400": BAD_INPUT, "503": UNAVAILABLE},
                ADMIN,
            ),
        },
        "/admin/quiesce": {
            "post": _operation(
                "Stop firing and settle deliveries in flight (before stopping the node)",
                {"204": _answer("quiesced"), "503": UNAVAILABLE},
                ADMIN,
            )
        },
        **_app_token_paths(),
        "/metrics": {
            "get": _operation(
                "Prometheus metrics", {"200": {"description": "metrics", "content": text}}, ADMIN
            )
        },
        "/admin/stats": {
            "get": _operation(
                "Trigger counters for the dashboard's live charts: this node's (scope=node) or "
                "every live member's (scope=cluster, the default), each as {node, timeMs, "
                "triggers: {success, failed, skipped, undelivered}, latency: {count, "
                "sumSeconds, buckets: [[upper bound s, cumulative count]]}, "
                "deliveriesInFlight}, or {node, error} for a member that did not answer",
                {"200": _answer("the counters", {"type": "object"}), "400": BAD_INPUT},
                ADMIN,
                parameters=[
                    _query_parameter(
                        "scope", "whose counters", {"type": "string", "enum": ["cluster", "node"]}
                    )
                ],
            )
        },
        "/openapi.json": {
            "get": _operation(
                "This document", {"200": _answer("OpenAPI 3", {"type": "object"})}, OPEN
            )
        },
        "/ui": {
            "get": _operation(
                "The dashboard: an HTML page served by the node, needing no credential itself "
                "(its calls carry the token entered in it); /ui?app=A&prefix=P opens the jobs "
                "of app A whose names start with P",
                {"200": {"description": "the page", "content": html}},
                OPEN,
            )
        },
        "/ui/{file}": {
            "parameters": [_path_parameter("file", "a file of the dashboard")],
            "get": _operation(
                "The dashboard's script, style sheet and chart library",
                {"200": _answer("the file"), "404": _error("no such file")},
                OPEN,
            ),
        },
    }


def _app_token_paths() -> Json:
    issued = {
        "type": "object",
        "required": ["id", "token"],
        "properties": {
            "id": {"type": "string", "description": "names the token in lists and revocations"},
            "token": {
                "type": "string",
                "description": "the app token, for dapr-api-token; shown this once",
            },
        },
    }
    listed = {
        "type": "object",
        "required": ["tokens"],
        "properties": {
            "tokens": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "string"},
                        "createdAt": {"type": "string", "description": "RFC3339"},
                    },
                },
            }
        },
    }
    token_id = _path_parameter(
        "id", "the token's id", {"type": "string", "pattern": "^[0-9a-f]{16}$"}
    )
    namespace = _header_parameter(NAMESPACE_HEADER, 'the namespace of the app (default "default")')
    return {
        "/admin/apps/{appId}/tokens": {
            "parameters": [APP_ID, namespace],
            "post": _operation(
                "Issue an app token: in token mode it alone decides the app its requests act "
                "for. Only its digest is kept (replicated); the token is in this answer only. "
                "It works on every node once this answers",
                {
                    "201": _answer("the token", issued),
                    "400": BAD_INPUT,
                    "429": _error("the app holds as many tokens as it may: revoke one first"),
                    "503": UNAVAILABLE,
                },
                ADMIN,
            ),
            "get": _operation(
                "The app's tokens, oldest first: ids and creation times, never the tokens",
                {"200": _answer("the tokens", listed), "400": BAD_INPUT, "503": UNAVAILABLE},
                ADMIN,
            ),
        },
        "/admin/apps/{appId}/tokens/{id}": {
            "parameters": [APP_ID, token_id, namespace],
            "delete": _operation(
                "Revoke an app token: it stops working on every node within a second (also "
                "answers 204 for an id the app does not have)",
                {"204": _answer("revoked"), "400": BAD_INPUT, "503": UNAVAILABLE},
                ADMIN,
            ),
        },
    }


def _failure_policy() -> Json:
    interval = _forms(
        'a protobuf Duration ("1s", "0.5s") or a Go duration ("500ms")',
        TEXT_CHARS_MAX,
        "^[0-9]{1,4}(\\.[0-9]{1,3})?s$",
        GO_DURATION,
    )
    retries = {"oneOf": [UINT32, UINT32_TEXT], "description": "unset: retry without end"}
    drop = {
        "type": "object",
        "required": ["drop"],
        "additionalProperties": False,
        "properties": {"drop": {"type": "object", "additionalProperties": False}},
    }
    constant = {
        "type": "object",
        "required": ["constant"],
        "additionalProperties": False,
        "properties": {
            "constant": {
                "type": "object",
                "properties": {"interval": interval, "maxRetries": retries},
            }
        },
    }
    exponential = {
        "type": "object",
        "required": ["exponential"],
        "additionalProperties": False,
        "properties": {
            "exponential": {
                "type": "object",
                "description": "the n-th retry waits initialInterval * multiplier^(n-1), at "
                "most maxInterval; unset fields: 1s, 5m, 2",
                "properties": {
                    "initialInterval": interval,
                    "maxInterval": interval,
                    "multiplier": {"type": "number", "minimum": 1, "maximum": MULTIPLIER_MAX},
                    "maxRetries": retries,
                },
            }
        },
    }
    return {
        "description": "what happens when a delivery fails: drop it, or retry at a constant or "
        "exponentially growing interval; unset: 3 retries 1 s apart",
        "nullable": True,
        "oneOf": [drop, constant, exponential],
    }


def _schemas() -> Json:
    text = {"type": "string"}
    job_fields = {
        "schedule": _forms(
            "cron (6 fields, a CRON_TZ= prefix allowed), @every D, @daily, ...",
            TEXT_CHARS_MAX,
            "^@every " + GO_DURATION.removeprefix("^"),
            "^@(yearly|annually|monthly|weekly|daily|midnight|hourly)$",
            "^([0-5]?[0-9]|\\*) ([0-5]?[0-9]|\\*) ([01]?[0-9]|2[0-3]|\\*) \\* \\* \\*$",
        ),
        "dueTime": _forms(
            "RFC3339 time, Go duration from now, or ISO 8601", TEXT_CHARS_MAX, RFC3339, GO_DURATION
        ),
        "repeats": {
            "oneOf": [UINT32, UINT32_TEXT],
            "nullable": True,
            "description": "how many times the job fires at most (needs a schedule)",
        },
        "ttl": _forms(
            "RFC3339 time or duration: when the job ends", TEXT_CHARS_MAX, RFC3339, GO_DURATION
        ),
        "data": {"description": "any JSON value, sent with every trigger", "nullable": True},
        "failurePolicy": _failure_policy(),
        "misfirePolicy": {
            "type": "string",
            "nullable": True,
            "enum": ["all", "latest", "skip"],
            "description": "what to do with occurrences missed while nobody could fire them",
        },
        "jitter": _forms(
            "each occurrence is delayed by a pseudo-random amount in [0, jitter), the same on "
            "every node; a Go duration of at most 24h",
            TEXT_CHARS_MAX,
            "^[0-9]{1,3}(ms|s|m)$",
            "^([0-9]|1[0-9]|2[0-4])h$",
        ),
        "deliveryTimeout": _forms(
            "how long the app may take to answer a trigger (default the node's, 5s); a Go "
            "duration between 100ms and 1h",
            TEXT_CHARS_MAX,
            "^[1-9][0-9]{2}ms$",
            "^[1-9][0-9]{0,2}s$",
            "^([1-9]|[1-5][0-9])m$",
        ),
    }
    status = {
        "type": "object",
        "properties": {
            "count": {"type": "integer"},
            "lastTrigger": {"type": "string", "nullable": True},
            "nextTrigger": text,
            "error": {
                "type": "string",
                "nullable": True,
                "description": "why the job is quarantined (it does not fire); absent if not",
            },
            "paused": {"type": "boolean", "description": "paused: its occurrences are skipped"},
        },
    }
    member = {
        "type": "object",
        "properties": {
            "id": text,
            "http": text,
            "raft": text,
            "alive": {"type": "boolean"},
            "partitions": {"type": "integer"},
        },
    }
    cluster_ints = ("term", "commitIndex", "appliedIndex", "epoch", "partitions", "jobs")
    cluster = {
        "type": "object",
        "properties": {
            "node": text,
            "role": text,
            "leader": {"type": "string", "nullable": True},
            **{key: {"type": "integer"} for key in cluster_ints},
            "members": {"type": "array", "items": member},
        },
    }
    return {
        "Error": {
            "type": "object",
            "required": ["errorCode", "message"],
            "properties": {"errorCode": text, "message": text},
        },
        "JobRequest": {
            "type": "object",
            "description": "keys may also be snake_case; unknown keys are ignored",
            # A job needs a schedule, a dueTime or both.
            "anyOf": [{"required": ["schedule"]}, {"required": ["dueTime"]}],
            "properties": {
                **job_fields,
                "overwrite": {"type": "boolean", "default": False, "nullable": True},
            },
        },
        "Job": {
            "type": "object",
            "properties": {"name": text, **job_fields, "status": status},
        },
        "Cluster": cluster,
        "Attempt": _attempt(),
        "DeadLetter": _dead_letter(),
    }


def _attempt() -> Json:
    time = {"type": "string", "description": "RFC3339 UTC, milliseconds"}
    return {
        "type": "object",
        "required": ["triggerId", "scheduledTime", "attempt", "outcome", "node"],
        "properties": {
            "triggerId": {
                "type": "string",
                "description": "the tock-trigger-id the attempt carried",
            },
            "scheduledTime": time,
            "attempt": {
                "type": "integer",
                "minimum": 0,
                "description": "1, 2, ... for the attempts at one occurrence; 0 when skipped",
            },
            "outcome": {"type": "string", "enum": [str(outcome) for outcome in AttemptOutcome]},
            "node": {"type": "string", "description": "the node that delivered it"},
            "startedAt": {**time, "nullable": True},
            "durationMs": {"type": "integer", "minimum": 0},
            "status": {
                "type": "integer",
                "description": "the app's HTTP status or gRPC code; 0 when it did not answer",
            },
            "manual": {"type": "boolean", "description": "asked for by POST .../run"},
        },
    }


def _dead_letter() -> Json:
    time = {"type": "string", "description": "RFC3339 UTC, milliseconds"}
    return {
        "type": "object",
        "required": ["id", "name", "scheduledTime", "attempts", "lastOutcome", "failedAt"],
        "properties": {
            "id": {"type": "string", "description": "its trigger id"},
            "name": {"type": "string", "description": "the job's name"},
            "scheduledTime": time,
            "attempts": {"type": "integer", "minimum": 0},
            "lastOutcome": {"type": "string", "enum": ["failed", "timeout", "success"]},
            "failedAt": time,
            "redriving": {"type": "boolean", "description": "a redrive is asked for, not yet made"},
        },
    }


def openapi_document() -> Json:
    paths: Json = {}
    for prefix in API_PREFIXES:
        paths[f"{prefix}/jobs/{{name}}"] = _job_path()
        paths[f"{prefix}/jobs/{{name}}/next"] = _upcoming_path()
        paths[f"{prefix}/jobs"] = _jobs_path()
        paths[f"{prefix}/apps/{{appId}}"] = _app_path()
        paths[f"{prefix}/apps/{{appId}}/watch"] = _watch_path()
        job = f"{prefix}/jobs/{{name}}"
        paths[f"{job}/pause"] = _job_operation_path(
            "Pause the job: its occurrences are skipped, uncounted, until it is resumed "
            "(idempotent)",
            _answer("paused"),
        )
        paths[f"{job}/resume"] = _job_operation_path(
            "Resume a paused job from its next occurrence after now (idempotent)",
            _answer("resumed"),
        )
        paths[f"{job}/run"] = _job_operation_path(
            "Trigger the job once as soon as possible (header tock-manual: true), paused or "
            "not; its schedule, repeats and count stay as they are",
            _answer("the run is recorded"),
        )
        paths[f"{job}/history"] = _history_path()
        paths[f"{prefix}/deadletters"] = _dead_letters_path()
        for suffix, path in _dead_letter_paths().items():
            paths[f"{prefix}/deadletters/{{id}}{suffix}"] = path
    paths["/internal/v1/deliver"] = _internal_path()
    paths.update(_admin_paths())
    paths.update(_backup_paths())
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "tock",
            "version": "0.1.0",
            "description": "Dapr's Jobs API on a Raft-replicated scheduler cluster. Every error "
            'answer is {"errorCode", "message"}; bad input is a 400 naming the field and '
            "changes nothing.",
        },
        "components": {
            "schemas": _schemas(),
            "securitySchemes": {
                "appToken": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "dapr-api-token",
                    "description": "an app token (POST /admin/apps/{appId}/tokens): needed by "
                    "the Jobs API of a node in token mode, where it alone decides the app",
                },
                "adminToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "the admin token: every /admin route and /metrics need it; "
                    "on the Jobs API it acts as the app the headers name",
                },
            },
        },
        "paths": paths,
    }
