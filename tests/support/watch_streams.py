"""What the watch-stream tests at every level (one node, a cluster) check alike."""

from __future__ import annotations

import asyncio

from node.client.client import WatchStream


async def hand_over_on_close(one: WatchStream, two: WatchStream, timeout_s: float) -> None:
    """One trigger is due for an app watched by `one` and `two`. The stream that gets it closes
    without acking; the other must then get the same trigger, still as attempt 1 (a closed
    stream is no failed attempt), and acks it."""
    async with asyncio.timeout(timeout_s):
        streams = {asyncio.create_task(anext(stream)): stream for stream in (one, two)}
        done, pending = await asyncio.wait(streams, return_when=asyncio.FIRST_COMPLETED)
        (got,) = done
        (waiting,) = pending
        (first,) = got.result()
        await streams[got].close()
        (second,) = await waiting
        assert (second.trigger_id, second.attempt) == (first.trigger_id, 1)
        await streams[waiting].ack([(second.id, "SUCCESS")])
