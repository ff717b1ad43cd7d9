"""HTTP requests with header values that are raw bytes, which urllib and aiohttp refuse to send.

A hostile client is not bound by the rules a good HTTP library follows: it can send header bytes
that are not UTF-8 (`dapr-app-id: \\xff\\xfe`). http.client passes `bytes` header values through
untouched, so it can play that client.
"""

from __future__ import annotations

import http.client
from urllib.parse import urlsplit

from tests.integration.node_helpers import HTTP_TIMEOUT_S, Answer


def raw_call(
    node_url: str,
    method: str,
    path: str,
    headers: dict[str, bytes],
    body: bytes | None = None,
) -> Answer:
    """One request with `headers` sent byte for byte; a `101 Switching Protocols` answer is
    returned with an empty body and the connection closed, never used as a WebSocket."""
    address = urlsplit(node_url)
    assert address.hostname is not None and address.port is not None, node_url
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=HTTP_TIMEOUT_S)
    try:
        connection.request(method, path, body=body, headers=headers)
        reply = connection.getresponse()
        # http.client reads no body for a 1xx answer, so this returns at once after a 101.
        return Answer(reply.status, reply.read(), dict(reply.getheaders()))
    finally:
        connection.close()
