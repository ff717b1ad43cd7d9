"""What the engine knows of one delivery in flight: whether its trigger is out, waiting for the
app's answer, and whether the lease that sent it has lapsed since.

When this node's lease lapses, the engine abandons its deliveries in flight: nothing of theirs
may reach the app later than the lease allowed. Most cannot be told apart from a request still
on its way (HTTP, gRPC: the connection is reset). A trigger pushed on a watch stream can: once
its frame is written, the app has it, or will, whatever this node does. Abandoning that delivery
would lose only the app's ack, and the job would fire again once the lease is back: a duplicate
for a node that was merely slow to commit a heartbeat. So the engine spares a delivery whose
trigger is `out`; it is `fenced` instead: it waits for its answer but sends nothing more. If its
stream closes first, it ends in `Fenced`, as an abandoned delivery ends, never in a push to
another watcher, node or URL.

The engine sets `SENDING` in each delivery's task; the watch stream reads it (node/watch/route.py).
Elsewhere (a trigger forwarded from another node, a test's direct delivery) it is None: nothing is
spared, nothing is fenced.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(slots=True)
class Sending:
    # A frame carrying the trigger has been written to a watch stream, and its ack is awaited.
    out: bool = False
    # The lease lapsed after the trigger went out: wait for the ack, send nothing more.
    fenced: bool = False


class Fenced(Exception):
    """A delivery spared by a lease lapse lost its stream before the app answered: it ends
    without an outcome, as an abandoned one does, and its job fires again under a lease."""


SENDING: ContextVar[Sending | None] = ContextVar("SENDING", default=None)
