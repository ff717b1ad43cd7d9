"""The reference `scripts/bench trigger` measures tock's burst against: one aiohttp client
process posting trigger-shaped requests (`POST /job/{name}`, the headers tock sends) to the same
sink, `in_flight` at a time over keep-alive connections, with nothing scheduled, replicated or
acked. What the sink can take from one ordinary Python client is the ceiling a delivering node
would meet too; the harness runs this as a process of its own, like a node.

    python scripts/bench_ceiling.py SINK_URL PREFIX COUNT IN_FLIGHT
"""

from __future__ import annotations

import asyncio
import sys
import time

import aiohttp
import uvloop


async def post_all(url: str, prefix: str, count: int, in_flight: int) -> None:
    connector = aiohttp.TCPConnector(limit=in_flight)
    async with aiohttp.ClientSession(connector=connector, auto_decompress=False) as session:
        names = iter(range(count))

        async def worker() -> None:
            for i in names:
                scheduled_ms = time.time_ns() // 1_000_000
                scheduled = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(scheduled_ms / 1000))
                headers = {
                    "content-type": "application/json",
                    "dapr-app-id": "bench",
                    "dapr-namespace": "default",
                    "tock-trigger-id": f"{scheduled_ms}:{prefix}-{i}",
                    "tock-scheduled-time": f"{scheduled}.{scheduled_ms % 1000:03d}Z",
                    "tock-attempt": "1",
                    "tock-node": "ceiling",
                }
                async with session.post(
                    f"{url}/job/{prefix}-{i:06d}",
                    data=b'{"i":%d}' % i,
                    headers=headers,
                    allow_redirects=False,
                ) as reply:
                    await reply.read()
                    reply.raise_for_status()

        await asyncio.gather(*(worker() for _ in range(in_flight)))


# Not `main`: scripts/bench lists every bench_*.py with a main() as a case, and this is a
# helper process of the trigger case, not a case of its own.
def run_client(argv: list[str]) -> None:
    url, prefix, count, in_flight = argv
    uvloop.run(post_all(url, prefix, int(count), int(in_flight)))


if __name__ == "__main__":
    run_client(sys.argv[1:])
