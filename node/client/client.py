"""A Python client for a node's Jobs API, job operations, backup and watch stream: for `tock job
...`, tests, benchmarks.

Error answers come back as the TockError classes the server raised (ValidationError for a 400,
Unauthenticated for a 401, Forbidden for a 403, JobNotFound for a 404, JobConflict for a 409,
Unavailable or OutcomeUnknown for a 503), so callers handle them as they would in-process.
Answers without a leaf of their own (500) raise RequestFailed, which carries the status and
Dapr's error code.

Credentials: `token` is an app token (sent as `dapr-api-token`: in token mode it alone decides
the app), `admin_token` the cluster's admin token (sent as `Authorization: Bearer`: the admin
routes need it, and with it the Jobs API acts as the app the headers name).

The watch stream is `client.watch()`: while it is open, the app's triggers come to it
rather than to the app's URL, from whichever node owns each job:

    async with client.watch() as stream:
        async for batch in stream:
            await stream.ack([(trigger.id, "SUCCESS") for trigger in batch])

or `await stream.serve(handler)`, with an async handler that returns True for success.

Export and import stream NDJSON (one job a line) both ways, so a million jobs never sit in the
client's memory: `async for line in client.export(): ...`, `await client.export_to(file)`, and
`await client.import_(path_or_file_or_lines)`.
"""

from __future__ import annotations

import asyncio
import builtins
import json
import os
import ssl
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any
from urllib.parse import quote

import aiohttp
from yarl import URL

from node.access import APP_TOKEN_HEADER, AUTHORIZATION
from node.backup import IMPORT_LINE_BYTES_MAX, lines_of
from node.http.backup import NDJSON
from node.http.errors import CODE_APP_NOT_FOUND, CODE_DEAD_LETTER_NOT_FOUND, CODE_OUTCOME_UNKNOWN
from node.scope import APP_ID_HEADER, DEFAULT_SCOPE_PART, NAMESPACE_HEADER
from node.watch.frames import decode_triggers, encode_acks
from store.errors import (
    AppNotFound,
    DeadLetterNotFound,
    Forbidden,
    JobConflict,
    JobNotFound,
    OutcomeUnknown,
    TockError,
    Unauthenticated,
    Unavailable,
    ValidationError,
)

API_PREFIX = "/v1.0"
REQUEST_TIMEOUT_S = 30.0
# The largest frame of triggers a watch stream accepts from a node.
WATCH_FRAME_BYTES_MAX = 256 * 1024 * 1024
SUCCESS = "SUCCESS"
FAILED = "FAILED"
# The bytes read from an import file, and from an export answer, at a time.
STREAM_CHUNK_BYTES = 1 << 16
NEWLINE = b"\n"

# Told, as an import's body goes out, how many bytes and lines have been sent so far.
ImportProgress = Callable[[int, int], None]
# What an import reads: a file's path, a binary file, or the lines themselves.
ImportSource = str | os.PathLike[str] | IO[bytes] | AsyncIterable[bytes]
Chunks = AsyncIterator[bytes]


class RequestFailed(TockError):
    """An error answer with no TockError leaf of its own (a wrong token, a server fault)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code


def error_of(status: int, code: str, message: str) -> TockError:
    """The TockError a node's error answer stands for."""
    if status in (400, 413):
        return ValidationError(message)
    if status == 401:
        return Unauthenticated(message)
    if status == 403:
        return Forbidden(message)
    if status == 404:
        if code == CODE_APP_NOT_FOUND:
            return AppNotFound(message)
        if code == CODE_DEAD_LETTER_NOT_FOUND:
            return DeadLetterNotFound(message)
        return JobNotFound(message)
    if status == 409:
        return JobConflict(message)
    if status == 503:
        return OutcomeUnknown(message) if code == CODE_OUTCOME_UNKNOWN else Unavailable(message)
    return RequestFailed(status, code, message)


def job_body(
    *,
    schedule: str | None = None,
    due_time: str | None = None,
    repeats: int | None = None,
    ttl: str | None = None,
    data: object = None,
    overwrite: bool = False,
    failure_policy: dict[str, object] | None = None,
    misfire_policy: str | None = None,
    jitter: str | None = None,
    delivery_timeout: str | None = None,
) -> dict[str, object]:
    """The JSON body of a create, camelCase, without the fields left unset."""
    fields: dict[str, object] = {
        "schedule": schedule,
        "dueTime": due_time,
        "repeats": repeats,
        "ttl": ttl,
        "data": data,
        "failurePolicy": failure_policy,
        "misfirePolicy": misfire_policy,
        "jitter": jitter,
        "deliveryTimeout": delivery_timeout,
    }
    body = {key: value for key, value in fields.items() if value is not None}
    if overwrite:
        body["overwrite"] = True
    return body


@dataclass(frozen=True, slots=True)
class WatchTrigger:
    """One trigger as a watch stream delivers it; ack it by `id`."""

    id: int
    name: str
    data: bytes
    scheduled_time: str
    attempt: int
    trigger_id: str

    @classmethod
    def from_frame(cls, item: dict[str, Any]) -> WatchTrigger:
        return cls(
            id=item["id"],
            name=str(item.get("name", "")),
            data=bytes(item.get("data") or b""),
            scheduled_time=str(item.get("scheduledTime", "")),
            attempt=int(item.get("attempt", 1)),
            trigger_id=str(item.get("triggerId", "")),
        )


class WatchStream:
    """An open watch stream: iterate it for batches of triggers, and ack each by id."""

    def __init__(self, socket: aiohttp.ClientWebSocketResponse) -> None:
        self._socket = socket

    def __aiter__(self) -> WatchStream:
        return self

    async def __anext__(self) -> list[WatchTrigger]:
        """The next frame's triggers; the iteration ends when the node closes the stream."""
        message = await self._socket.receive()
        if message.type is aiohttp.WSMsgType.BINARY:
            frame = decode_triggers(message.data, WATCH_FRAME_BYTES_MAX)
            return [WatchTrigger.from_frame(item) for item in frame]
        raise StopAsyncIteration

    async def ack(self, acks: Iterable[tuple[int, str]]) -> None:
        """Report outcomes, `(id, "SUCCESS" | "FAILED")`, in one frame."""
        await self._socket.send_bytes(encode_acks(list(acks)))

    async def serve(self, handler: Callable[[WatchTrigger], Awaitable[bool]]) -> None:
        """Run `handler` on every trigger (a frame's concurrently) and ack each: SUCCESS when
        it returns True, FAILED when it returns anything else or raises. Ends with the stream."""
        async for batch in self:
            results = await asyncio.gather(*map(handler, batch), return_exceptions=True)
            await self.ack(
                (trigger.id, SUCCESS if result is True else FAILED)
                for trigger, result in zip(batch, results, strict=True)
            )

    @property
    def closed(self) -> bool:
        return self._socket.closed

    async def close(self) -> None:
        await self._socket.close()


class TockClient:
    """One node's Jobs API, acting for one (namespace, app). Use it as an async context manager,
    or call `close()`: it holds a connection pool.

    An `app_id` or `namespace` of None is not sent: the node takes "default" in open mode, and
    the app token's own in token mode."""

    def __init__(
        self,
        base_url: str,
        app_id: str | None = DEFAULT_SCOPE_PART,
        namespace: str | None = DEFAULT_SCOPE_PART,
        token: str | None = None,
        timeout_s: float = REQUEST_TIMEOUT_S,
        admin_token: str | None = None,
        *,
        ca_file: Path | None = None,
    ) -> None:
        """`ca_file`: the CA an https:// node's certificate is checked against (default: the
        system's store)."""
        self.base_url = base_url.rstrip("/")
        self._app_id = app_id
        self._ssl = ssl.create_default_context(cafile=None if ca_file is None else str(ca_file))
        self._headers: dict[str, str] = {}
        if app_id is not None:
            self._headers[APP_ID_HEADER] = app_id
        if namespace is not None:
            self._headers[NAMESPACE_HEADER] = namespace
        if token:
            self._headers[APP_TOKEN_HEADER] = token
        if admin_token:
            self._headers[AUTHORIZATION] = f"Bearer {admin_token}"
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        # An export or import takes as long as the jobs take to stream: only each wait for the
        # node (to connect, or for the next bytes of its answer) is bounded.
        self._stream_timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=timeout_s, sock_read=timeout_s
        )
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> TockClient:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- jobs ------------------------------------------------------------------------------

    async def create(self, name: str, **fields: Any) -> None:
        """Schedule a job; `fields` are those of `job_body` (schedule=, due_time=, ...)."""
        await self._call("POST", _job_path(name), json=job_body(**fields))

    async def create_raw(self, name: str, body: object) -> None:
        """Schedule a job from a body as given, for callers that build their own."""
        await self._call("POST", _job_path(name), json=body)

    async def get(self, name: str) -> dict[str, Any]:
        answer: dict[str, Any] = await self._call("GET", _job_path(name))
        return answer

    async def list(
        self, prefix: str = "", limit: int | None = None, cursor: str | None = None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One page of jobs and the cursor of the next page (None on the last page)."""
        params = {"prefix": prefix}
        if limit is not None:
            params["limit"] = str(limit)
        if cursor is not None:
            params["cursor"] = cursor
        answer = await self._call("GET", f"{API_PREFIX}/jobs", params=params)
        return answer["jobs"], answer["nextCursor"]

    async def list_all(self, prefix: str = "", page_size: int | None = None) -> builtins.list[Any]:
        """Every job whose name starts with `prefix`, following the cursor page by page."""
        return await _every_page(lambda cursor: self.list(prefix, page_size, cursor))

    async def delete(self, name: str) -> None:
        await self._call("DELETE", _job_path(name))

    async def delete_prefix(self, prefix: str) -> int:
        answer = await self._call("DELETE", f"{API_PREFIX}/jobs", params={"prefix": prefix})
        deleted: int = answer["deleted"]
        return deleted

    # -- job operations --------------------------------------------------------------------

    async def pause(self, name: str) -> None:
        """Stop the job firing until `resume` (its occurrences meanwhile are skipped)."""
        await self._call("POST", _job_path(name) + "/pause")

    async def resume(self, name: str) -> None:
        """Let a paused job fire again, from its next occurrence after now."""
        await self._call("POST", _job_path(name) + "/resume")

    async def run(self, name: str) -> None:
        """One extra trigger of the job as soon as possible; its schedule and count stay."""
        await self._call("POST", _job_path(name) + "/run")

    async def history(self, name: str, limit: int | None = None) -> builtins.list[dict[str, Any]]:
        """The job's last attempts, newest first."""
        params = {} if limit is None else {"limit": str(limit)}
        answer = await self._call("GET", _job_path(name) + "/history", params=params)
        history: builtins.list[dict[str, Any]] = answer["history"]
        return history

    # -- dead letters ----------------------------------------------------------------------

    async def dead_letters(
        self, prefix: str = "", limit: int | None = None, cursor: str | None = None
    ) -> tuple[builtins.list[dict[str, Any]], str | None]:
        """One page of the app's dead letters (job names starting with `prefix`), oldest first,
        and the cursor of the next page (None on the last page)."""
        params = {"prefix": prefix}
        if limit is not None:
            params["limit"] = str(limit)
        if cursor is not None:
            params["cursor"] = cursor
        answer = await self._call("GET", f"{API_PREFIX}/deadletters", params=params)
        return answer["deadLetters"], answer["nextCursor"]

    async def dead_letters_all(
        self, prefix: str = "", page_size: int | None = None
    ) -> builtins.list[dict[str, Any]]:
        """Every dead letter of the app whose job name starts with `prefix`, page by page."""
        return await _every_page(lambda cursor: self.dead_letters(prefix, page_size, cursor))

    async def redrive(self, letter_id: str) -> None:
        """Deliver a dead letter again now, with its own trigger id; it stays listed."""
        await self._call("POST", _dead_letter_path(letter_id) + "/redrive")

    async def delete_dead_letter(self, letter_id: str) -> None:
        """Forget a dead letter (also done for an id that names none)."""
        await self._call("DELETE", _dead_letter_path(letter_id))

    # -- backup ----------------------------------------------------------------------------

    async def export(
        self, namespace: str = "", app: str = "", prefix: str = ""
    ) -> AsyncIterator[bytes]:
        """Every job of the cluster with its whole state, one NDJSON line at a time (without
        its newline), narrowed by namespace, app and name prefix when given: an admin call, not
        limited to this client's app. Leaving the iteration early: close it (`aclose()`)."""
        async with self._export(namespace, app, prefix) as chunks:
            async for line in lines_of(chunks, IMPORT_LINE_BYTES_MAX):
                yield line

    async def export_to(
        self, file: IO[bytes], namespace: str = "", app: str = "", prefix: str = ""
    ) -> int:
        """Write the export (see `export`) to a binary file as it comes; how many jobs it has."""
        jobs = 0
        async with self._export(namespace, app, prefix) as chunks:
            async for chunk in chunks:
                await asyncio.to_thread(file.write, chunk)
                jobs += chunk.count(NEWLINE)
        await asyncio.to_thread(file.flush)
        return jobs

    async def import_(
        self,
        source: ImportSource,
        overwrite: bool = False,
        progress: ImportProgress | None = None,
    ) -> tuple[int, int]:
        """Import exported jobs with their whole state, streamed: `source` is a file's path, a
        binary file, or an async iterable of lines (with or without their newline). Existing
        names are skipped unless `overwrite`. Returns (imported, skipped); a bad line is a
        ValidationError that names it. `progress` is told the bytes and lines sent so far."""
        body = _counted(_import_chunks(source), progress)
        answer = await self._call(
            "POST",
            "/admin/import",
            params={"overwrite": "true" if overwrite else "false"},
            data=body,
            headers={"Content-Type": NDJSON},
            timeout=self._stream_timeout,
        )
        return int(answer["imported"]), int(answer["skipped"])

    @asynccontextmanager
    async def _export(self, namespace: str, app: str, prefix: str) -> AsyncIterator[Chunks]:
        filters = {"namespace": namespace, "app": app, "prefix": prefix}
        params = {field: value for field, value in filters.items() if value}
        async with self._request(
            "GET", "/admin/export", params=params, timeout=self._stream_timeout
        ) as response:
            yield response.content.iter_chunked(STREAM_CHUNK_BYTES)

    # -- apps ------------------------------------------------------------------------------

    async def register_app(
        self, url: str, app_id: str | None = None, token: str | None = None
    ) -> None:
        """Register where the triggers of `app_id` (default: this client's app) go, and the
        token they carry as `dapr-api-token`."""
        body = {"url": url} if token is None else {"url": url, "token": token}
        await self._call("PUT", self._app_path(app_id), json=body)

    async def app_info(self, app_id: str | None = None) -> dict[str, Any]:
        """`{"url", "hasToken"}` of a registered app."""
        answer: dict[str, Any] = await self._call("GET", self._app_path(app_id))
        return answer

    async def app_url(self, app_id: str | None = None) -> str:
        answer = await self._call("GET", self._app_path(app_id))
        url: str = answer["url"]
        return url

    async def unregister_app(self, app_id: str | None = None) -> None:
        await self._call("DELETE", self._app_path(app_id))

    # -- the watch stream ------------------------------------------------------------------

    @asynccontextmanager
    async def watch(self, app_id: str | None = None) -> AsyncIterator[WatchStream]:
        """Hold a watch stream for `app_id` (default: this client's app) on this node. Once it
        is open, the cluster has recorded it (or gave up waiting for a quorum)."""
        url = URL(self.base_url + self._app_path(app_id) + "/watch", encoded=True)
        try:
            socket = await self._client().ws_connect(
                url, headers=self._headers, max_msg_size=WATCH_FRAME_BYTES_MAX
            )
        except aiohttp.WSServerHandshakeError as error:
            raise error_of(error.status, "", error.message) from None
        except aiohttp.ClientConnectorError as error:
            raise Unavailable(f"cannot reach {self.base_url}: {error}") from None
        stream = WatchStream(socket)
        try:
            yield stream
        finally:
            await stream.close()

    # -- admin (these need the admin token) ------------------------------------------------

    async def create_app_token(self, app_id: str | None = None) -> dict[str, str]:
        """A new app token of `app_id` (default: this client's app) in this client's namespace:
        `{"id", "token"}`. The token is shown this once."""
        answer: dict[str, str] = await self._call("POST", self._tokens_path(app_id))
        return answer

    async def app_tokens(self, app_id: str | None = None) -> builtins.list[dict[str, str]]:
        """The app's tokens, oldest first: `{"id", "createdAt"}` each (never the token)."""
        answer = await self._call("GET", self._tokens_path(app_id))
        tokens: builtins.list[dict[str, str]] = answer["tokens"]
        return tokens

    async def revoke_app_token(self, token_id: str, app_id: str | None = None) -> None:
        await self._call("DELETE", f"{self._tokens_path(app_id)}/{quote(token_id, safe='')}")

    async def cluster_status(self) -> dict[str, Any]:
        answer: dict[str, Any] = await self._call("GET", "/admin/cluster")
        return answer

    async def ready(self) -> bool:
        """Whether the node has caught up with a leader (GET /v1.0/healthz/ready)."""
        try:
            await self._call("GET", "/v1.0/healthz/ready")
        except Unavailable:
            return False
        return True

    # -- transport -------------------------------------------------------------------------

    def _app(self, app_id: str | None) -> str:
        return quote(app_id or self._app_id or DEFAULT_SCOPE_PART, safe="")

    def _app_path(self, app_id: str | None) -> str:
        return f"{API_PREFIX}/apps/{self._app(app_id)}"

    def _tokens_path(self, app_id: str | None) -> str:
        return f"/admin/apps/{self._app(app_id)}/tokens"

    async def _call(self, method: str, path: str, **options: Any) -> Any:
        """Send one request; the decoded JSON answer (None when empty), or the typed error."""
        async with self._request(method, path, **options) as response:
            body = await response.read()
        return json.loads(body) if body else None

    @asynccontextmanager
    async def _request(
        self, method: str, path: str, headers: dict[str, str] | None = None, **options: Any
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """One request whose answer the caller reads; an error answer raises its TockError."""
        # encoded=True: the path is already quoted, and a name's '%2F' must stay as it is.
        url = URL(self.base_url + path, encoded=True)
        try:
            async with self._client().request(
                method, url, headers={**self._headers, **(headers or {})}, **options
            ) as response:
                if response.status >= 400:
                    raise _error_answer(response.status, await response.read())
                yield response
        except aiohttp.ClientConnectorError as error:
            raise Unavailable(f"cannot reach {self.base_url}: {error}") from None
        except (aiohttp.ClientError, TimeoutError) as error:
            # The request left: a write may have been committed even though no answer came.
            raise OutcomeUnknown(f"no answer from {self.base_url}: {error!r}") from None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(ssl=self._ssl)
            self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout)
        return self._session


def _job_path(name: str) -> str:
    return f"{API_PREFIX}/jobs/{quote(name, safe='')}"


def _dead_letter_path(letter_id: str) -> str:
    return f"{API_PREFIX}/deadletters/{quote(letter_id, safe='')}"


Page = tuple[list[Any], str | None]


async def _every_page(page: Callable[[str | None], Awaitable[Page]]) -> list[Any]:
    """Every item of a paged list: `page(cursor)` is one page and the next page's cursor."""
    items, cursor = await page(None)
    while cursor is not None:
        more, cursor = await page(cursor)
        items.extend(more)
    return items


async def _import_chunks(source: ImportSource) -> AsyncIterator[bytes]:
    """The bytes of an import, a chunk at a time, whatever form its source takes."""
    if isinstance(source, str | os.PathLike):
        with await asyncio.to_thread(open, source, "rb") as file:
            async for chunk in _file_chunks(file):
                yield chunk
    elif isinstance(source, AsyncIterable):
        async for line in source:
            yield line if line.endswith(NEWLINE) else line + NEWLINE
    else:
        async for chunk in _file_chunks(source):
            yield chunk


async def _file_chunks(file: IO[bytes]) -> AsyncIterator[bytes]:
    # Read in a thread: a slow disk or pipe must not stall the loop that sends the body.
    while chunk := await asyncio.to_thread(file.read, STREAM_CHUNK_BYTES):
        yield chunk


async def _counted(
    chunks: AsyncIterator[bytes], progress: ImportProgress | None
) -> AsyncIterator[bytes]:
    sent_bytes = sent_lines = 0
    async for chunk in chunks:
        yield chunk
        sent_bytes += len(chunk)
        sent_lines += chunk.count(NEWLINE)
        if progress is not None:
            progress(sent_bytes, sent_lines)


def _error_answer(status: int, body: bytes) -> TockError:
    try:
        answer = json.loads(body)
        return error_of(status, str(answer["errorCode"]), str(answer["message"]))
    except (ValueError, KeyError, TypeError):
        return RequestFailed(status, "", body.decode(errors="replace")[:500])
