"""The Dapr-compatible gRPC face: the job methods of `dapr.proto.runtime.v1.Dapr`.

It serves ScheduleJob, GetJob, DeleteJob, ListJobs and DeleteJobsByPrefix and their Alpha1 twins
with the request and response types of the stubs the official `dapr` package ships, so Dapr's
SDKs talk to a node unchanged. Only these methods are registered: every other method of the Dapr
service is unknown to the server, which answers UNIMPLEMENTED by itself.

Handlers only translate, as the HTTP face's do: the scope comes from the call's metadata as
node/access.py decides (the `dapr-api-token` app token in token mode, else the `dapr-app-id` and
`dapr-namespace` metadata), the work is JobService's (the one implementation under both faces),
and TockError leaves become gRPC status codes in `status_of`, the one place that maps them. The
server is grpcio's asyncio server, on the node's event loop.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import TypeVar

import grpc
from dapr.proto.runtime.v1 import jobs_pb2
from google.protobuf.message import Message

from node.access import Access
from node.grpc.jobs import proto_of, spec_from_proto
from node.scope import Scope
from node.service import JobService
from store.errors import (
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

DAPR_SERVICE = "dapr.proto.runtime.v1.Dapr"

Request = TypeVar("Request", bound=Message)
Context = grpc.aio.ServicerContext[Message, Message]
ListReply = jobs_pb2.ListJobsResponse | jobs_pb2.ListJobsResponseAlpha1
PrefixReply = jobs_pb2.DeleteJobsByPrefixResponse | jobs_pb2.DeleteJobsByPrefixResponseAlpha1


@dataclass(frozen=True, kw_only=True)
class GrpcApiConfig:
    # How long stop() lets calls in progress finish before cancelling them.
    stop_grace_s: float = 5.0

    def validate(self) -> None:
        if self.stop_grace_s <= 0:
            raise ValidationError("stop_grace_s must be positive")


def status_of(error: Exception) -> tuple[grpc.StatusCode, str]:
    """The gRPC status for an exception a handler raised: code and message."""
    match error:
        case ValidationError():
            return grpc.StatusCode.INVALID_ARGUMENT, str(error)
        case JobNotFound():
            return grpc.StatusCode.NOT_FOUND, str(error)
        case JobConflict():
            return grpc.StatusCode.ALREADY_EXISTS, str(error)
        case QuotaExceeded():
            return grpc.StatusCode.RESOURCE_EXHAUSTED, str(error)
        case Unavailable() | OutcomeUnknown():
            return grpc.StatusCode.UNAVAILABLE, str(error)
        case Unauthenticated():
            return grpc.StatusCode.UNAUTHENTICATED, str(error)
        case Forbidden():
            return grpc.StatusCode.PERMISSION_DENIED, str(error)
    return grpc.StatusCode.INTERNAL, "internal error; the node's log has the details"


class GrpcApi:
    """One node's gRPC server at `address`; created, started and stopped on the node's event loop.

    Requests above `message_bytes_max` are refused (RESOURCE_EXHAUSTED) before they are parsed;
    `access` decides who each call acts for, and refuses it otherwise. With `credentials`, the
    port serves TLS only."""

    def __init__(
        self,
        service: JobService,
        config: GrpcApiConfig,
        *,
        address: str,
        message_bytes_max: int,
        access: Access,
        credentials: grpc.ServerCredentials | None = None,
    ) -> None:
        config.validate()
        self._service = service
        self._config = config
        self._address = address
        self._message_bytes_max = message_bytes_max
        self._access = access
        self._credentials = credentials
        self._server: grpc.aio.Server | None = None

    async def start(self) -> None:
        limit = self._message_bytes_max
        server = grpc.aio.server(options=[("grpc.max_receive_message_length", limit)])
        handlers = grpc.method_handlers_generic_handler(DAPR_SERVICE, self._handlers())
        server.add_generic_rpc_handlers((handlers,))
        port = (
            server.add_insecure_port(self._address)
            if self._credentials is None
            else server.add_secure_port(self._address, self._credentials)
        )
        if port == 0:
            raise OSError(f"cannot listen for gRPC on {self._address}")
        await server.start()
        self._server = server

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop(self._config.stop_grace_s)
            self._server = None

    # -- the method table ------------------------------------------------------------------

    def _handlers(self) -> dict[str, grpc.RpcMethodHandler[Message, Message]]:
        handlers: dict[str, grpc.RpcMethodHandler[Message, Message]] = {}
        for suffix in ("", "Alpha1"):
            handlers[f"ScheduleJob{suffix}"] = self._unary(
                jobs_pb2.ScheduleJobRequest, self._schedule
            )
            handlers[f"GetJob{suffix}"] = self._unary(jobs_pb2.GetJobRequest, self._get)
            handlers[f"DeleteJob{suffix}"] = self._unary(jobs_pb2.DeleteJobRequest, self._delete)
        handlers["ListJobs"] = self._unary(
            jobs_pb2.ListJobsRequest, partial(self._list, jobs_pb2.ListJobsResponse)
        )
        handlers["ListJobsAlpha1"] = self._unary(
            jobs_pb2.ListJobsRequestAlpha1, partial(self._list, jobs_pb2.ListJobsResponseAlpha1)
        )
        handlers["DeleteJobsByPrefix"] = self._unary(
            jobs_pb2.DeleteJobsByPrefixRequest,
            partial(self._delete_prefix, jobs_pb2.DeleteJobsByPrefixResponse),
        )
        handlers["DeleteJobsByPrefixAlpha1"] = self._unary(
            jobs_pb2.DeleteJobsByPrefixRequestAlpha1,
            partial(self._delete_prefix, jobs_pb2.DeleteJobsByPrefixResponseAlpha1),
        )
        return handlers

    def _unary(
        self, request_type: type[Request], call: Callable[[Request, Scope], Awaitable[Message]]
    ) -> grpc.RpcMethodHandler[Message, Message]:
        """A unary handler around `call`: who the call acts for, and errors as codes."""

        async def handle(request: Request, context: Context) -> Message:
            try:
                caller = await self._access.caller(_metadata(context).get)
                return await call(request, caller.scope)
            except Exception as error:
                code, message = status_of(error)
                if code is grpc.StatusCode.INTERNAL:
                    log.exception("gRPC %s failed", request_type.DESCRIPTOR.name)
                await context.abort(code, message)

        return grpc.unary_unary_rpc_method_handler(
            handle,
            request_deserializer=request_type.FromString,
            response_serializer=_serialize,
        )

    # -- the methods -----------------------------------------------------------------------

    async def _schedule(
        self, request: jobs_pb2.ScheduleJobRequest, scope: Scope
    ) -> jobs_pb2.ScheduleJobResponse:
        if not request.HasField("job"):
            raise ValidationError("Job is empty")
        spec = spec_from_proto(request.job, self._service.limits)
        await self._service.schedule_spec(scope, spec, request.overwrite)
        return jobs_pb2.ScheduleJobResponse()

    async def _get(self, request: jobs_pb2.GetJobRequest, scope: Scope) -> jobs_pb2.GetJobResponse:
        job = await self._service.get(scope, request.name)
        return jobs_pb2.GetJobResponse(job=proto_of(job.spec))

    async def _delete(
        self, request: jobs_pb2.DeleteJobRequest, scope: Scope
    ) -> jobs_pb2.DeleteJobResponse:
        await self._service.delete(scope, request.name)
        return jobs_pb2.DeleteJobResponse()

    async def _list(self, reply: type[ListReply], _request: Message, scope: Scope) -> ListReply:
        """The app's jobs in name order, capped: at most list_limit_max jobs and at most the
        list answer's byte bound. Dapr's ListJobs has no paging (no cursor in its request or
        its response), so an app with more jobs than that sees only the first of them here;
        the HTTP list pages through them all."""
        page, _ = await self._service.list(scope, "", self._service.list_limit_max, None)
        return reply(jobs=[proto_of(job.spec) for job in page])

    async def _delete_prefix(
        self,
        reply: type[PrefixReply],
        request: jobs_pb2.DeleteJobsByPrefixRequest | jobs_pb2.DeleteJobsByPrefixRequestAlpha1,
        scope: Scope,
    ) -> PrefixReply:
        # An unset prefix deletes all of the app's jobs, as an empty one does.
        await self._service.delete_prefix(scope, request.name_prefix)
        return reply()


def _metadata(context: Context) -> dict[str, str]:
    """The call's metadata as text. A value grpc hands over as bytes (not UTF-8) is decoded as
    aiohttp decodes headers, with lone surrogates for its bad bytes, so the scope rule refuses
    it rather than the key seeming absent."""
    pairs = context.invocation_metadata() or ()
    return {
        key: value if isinstance(value, str) else value.decode("utf-8", "surrogateescape")
        for key, value in pairs
    }


def _serialize(message: Message) -> bytes:
    return message.SerializeToString()
