"""The OpenAPI 3 description of every HTTP route of a node, served at GET /openapi.json.

Written as data, not generated from the handlers: it is the contract of SPEC §2 and §6 as a
client sees it. A test checks that every route the server registers is described here.
"""

from __future__ import annotations

from typing import Any

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


def _operation(summary: str, answers: dict[str, Json], **extra: Any) -> Json:
    common = {
        "401": _error("a token is configured and dapr-api-token is missing or wrong"),
        "500": _error("an unexpected error; the node's log has the details"),
    }
    return {"summary": summary, "responses": {**answers, **common}, **extra}


def _path_parameter(name: str, description: str) -> Json:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": {"type": "string"},
    }


def _query_parameter(name: str, description: str, schema: Json) -> Json:
    return {"name": name, "in": "query", "description": description, "schema": schema}


def _header_parameter(name: str, description: str) -> Json:
    return {"name": name, "in": "header", "description": description, "schema": {"type": "string"}}


SCOPE_HEADERS = [
    _header_parameter("dapr-app-id", 'the app the jobs belong to (default "default")'),
    _header_parameter("dapr-namespace", 'the namespace of the app (default "default")'),
]
NAME = _path_parameter("name", "the job name, unique within (namespace, app)")
APP_ID = _path_parameter("appId", "the app id")
UNAVAILABLE = _error("no quorum or no leader right now; retry after Retry-After seconds")
BAD_INPUT = _error("bad input: nothing was changed")


def _job_path() -> Json:
    return {
        "parameters": [NAME, *SCOPE_HEADERS],
        "post": _operation(
            "Schedule a job; answers once a majority has committed it",
            {
                "204": _answer("scheduled"),
                "400": BAD_INPUT,
                "409": _error("the name exists and overwrite is not true"),
                "413": _error("the body is over the configured limit"),
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
    prefix = _query_parameter("prefix", "only names starting with this", {"type": "string"})
    page = {
        "type": "object",
        "properties": {
            "jobs": {"type": "array", "items": _ref("Job")},
            "nextCursor": {"type": "string", "nullable": True},
        },
    }
    deleted = {"type": "object", "properties": {"deleted": {"type": "integer"}}}
    return {
        "parameters": SCOPE_HEADERS,
        "get": _operation(
            "One page of the app's jobs, in name order",
            {"200": _answer("a page", page), "400": BAD_INPUT, "503": UNAVAILABLE},
            parameters=[
                prefix,
                _query_parameter("limit", "page size", {"type": "integer", "minimum": 1}),
                _query_parameter("cursor", "nextCursor of the previous page", {"type": "string"}),
            ],
        ),
        "delete": _operation(
            "Delete every job of the app whose name starts with prefix (empty: all of them)",
            {"200": _answer("how many were deleted", deleted), "503": UNAVAILABLE},
            parameters=[prefix],
        ),
    }


def _app_path() -> Json:
    text = {"type": "string"}
    token = {"type": "string", "description": "sent as dapr-api-token with every trigger"}
    registration = {
        "type": "object",
        "required": ["url"],
        "properties": {"url": text, "token": token},
    }
    registered = {
        "type": "object",
        "required": ["url", "hasToken"],
        "properties": {"url": text, "hasToken": {"type": "boolean"}},
    }
    return {
        "parameters": [APP_ID, SCOPE_HEADERS[1]],
        "put": _operation(
            "Register where the app's triggers go (http://, https:// or grpc://), and the "
            "token they carry",
            {"204": _answer("registered"), "400": BAD_INPUT, "503": UNAVAILABLE},
            requestBody={"content": _json_content(registration)},
        ),
        "get": _operation(
            "The app's registered callback URL, and whether it has a token (never the token)",
            {
                "200": _answer("the url", registered),
                "404": _error("the app has no registered url"),
                "503": UNAVAILABLE,
            },
        ),
        "delete": _operation(
            "Forget the app's callback URL",
            {"204": _answer("unregistered"), "503": UNAVAILABLE},
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
            "trigger not acked within the delivery timeout is FAILED",
            {"101": _answer("switching to the WebSocket protocol"), "400": BAD_INPUT},
        ),
    }


def _internal_path() -> Json:
    msgpack = {"application/msgpack": {"schema": {"type": "string", "format": "binary"}}}
    return {
        "post": _operation(
            "Internal, between members: push a batch of triggers down this node's watch "
            "streams; requires tock-internal-token (derived from the cluster secret)",
            {"200": {"description": "one outcome per trigger", "content": msgpack}},
            requestBody={"content": msgpack},
        )
    }


def _admin_paths() -> Json:
    text = {"text/plain": {"schema": {"type": "string"}}}
    member = {
        "type": "object",
        "required": ["id", "raft", "http"],
        "properties": {k: {"type": "string"} for k in ("id", "raft", "http")},
    }
    return {
        "/v1.0/healthz": {"get": _operation("Liveness", {"204": _answer("serving")})},
        "/v1.0/healthz/ready": {
            "get": _operation(
                "Readiness: caught up with a leader",
                {"204": _answer("ready"), "503": _error("not caught up with a leader")},
            )
        },
        "/v1.0/healthz/outbound": {
            "get": _operation("Dapr SDK readiness probe", {"204": _answer("serving")})
        },
        "/admin/cluster": {
            "get": _operation(
                "This node's view of the cluster", {"200": _answer("status", _ref("Cluster"))}
            )
        },
        "/admin/members": {
            "post": _operation(
                "Add a node to the cluster",
                {"204": _answer("added"), "400": BAD_INPUT, "503": UNAVAILABLE},
                requestBody={"content": _json_content(member)},
            )
        },
        "/admin/members/{id}": {
            "parameters": [_path_parameter("id", "the node id")],
            "delete": _operation(
                "Remove a node from the cluster",
                {"204": _answer("removed"), "400": BAD_INPUT, "503": UNAVAILABLE},
            ),
        },
        "/admin/quiesce": {
            "post": _operation(
                "Stop firing and settle deliveries in flight (before stopping the node)",
                {"204": _answer("quiesced")},
            )
        },
        "/metrics": {
            "get": _operation(
                "Prometheus metrics", {"200": {"description": "metrics", "content": text}}
            )
        },
        "/openapi.json": {
            "get": _operation("This document", {"200": _answer("OpenAPI 3", {"type": "object"})})
        },
    }


def _schemas() -> Json:
    failure_policy = {
        "type": "object",
        "description": '{"drop": {}} or {"constant": {"interval": "1s", "maxRetries": 3}}',
    }
    text = {"type": "string"}
    job_fields = {
        "schedule": {"type": "string", "description": "cron (6 fields), @every D, @daily, ..."},
        "dueTime": {"type": "string", "description": "RFC3339, Go duration or ISO 8601"},
        "repeats": {"type": "integer", "minimum": 1},
        "ttl": text,
        "data": {"description": "any JSON value"},
        "failurePolicy": failure_policy,
        "misfirePolicy": {"type": "string", "enum": ["all", "latest", "skip"]},
    }
    status = {
        "type": "object",
        "properties": {
            "count": {"type": "integer"},
            "lastTrigger": {"type": "string", "nullable": True},
            "nextTrigger": text,
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
            "properties": {"errorCode": text, "message": text},
        },
        "JobRequest": {
            "type": "object",
            "properties": {**job_fields, "overwrite": {"type": "boolean", "default": False}},
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
            "description": "Dapr's Jobs API on a Raft-replicated scheduler cluster",
        },
        "components": {
            "schemas": _schemas(),
            "securitySchemes": {
                "daprApiToken": {"type": "apiKey", "in": "header", "name": "dapr-api-token"}
            },
        },
        "security": [{"daprApiToken": []}],
        "paths": paths,
    }
