"""Pausing Python's cyclic garbage collector while a batch of objects is built.

Building a million objects that stay (a restore of a snapshot) makes the collector run again
and again, each full run walking every tracked object: half the time of the build, to find
nothing, since freshly decoded data holds no cycles. Reference counting still frees everything
as usual meanwhile.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def collector_paused() -> Iterator[None]:
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
