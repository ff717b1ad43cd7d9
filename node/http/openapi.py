"""The OpenAPI 3 description of every HTTP route of a node, served at GET /openapi.json.

Written as data, not generated from the handlers: it is the contract of the Jobs and admin APIs as a
client sees it. A test checks that every route the server registers is described here.
"""

from __future__ import annotations

from typing import Any

from node.scope import APP_ID_HEADER, NAMESPACE_HEADER
from store.bounds import SCOPE_CHARS_MAX, UINT32_MAX
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


def _app_path() -> Json:
    registration = {
        "type": "object",
        "required": ["url"],
        "properties": {
            "url": _forms(
                "http://, https:// or grpc:// HOST:PORT[/path], at most 2048 characters",
                2048,
                "^(http|https|grpc)://[a-z][a-z0-9.-]{0,30}:[1-9][0-9]{0,4}(/[a-z0-9/-]{0,20})?$",
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
        "/openapi.json": {
            "get": _operation(
                "This document", {"200": _answer("OpenAPI 3", {"type": "object"})}, OPEN
            )
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
    return {
        "description": "what happens when a delivery fails: drop it, or retry at a constant "
        "interval; unset: 3 retries 1 s apart",
        "nullable": True,
        "oneOf": [drop, constant],
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
    }


def openapi_document() -> Json:
    paths: Json = {}
    for prefix in API_PREFIXES:
        paths[f"{prefix}/jobs/{{name}}"] = _job_path()
        paths[f"{prefix}/jobs"] = _jobs_path()
        paths[f"{prefix}/apps/{{appId}}"] = _app_path()
        paths[f"{prefix}/apps/{{appId}}/watch"] = _watch_path()
    paths["/internal/v1/deliver"] = _internal_path()
    paths.update(_admin_paths())
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
