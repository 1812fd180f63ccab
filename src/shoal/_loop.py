"""Event loops on uvloop where it is installed (``uvicorn[standard]`` brings it on Linux).

uvloop's socket I/O costs about half of the stdlib loop's; the control plane (API and gateway), a web
container's app server, the SDK's background loop and a container's client are I/O-bound, so they run on it.
User code's own async functions keep the stdlib loop. Without uvloop (another platform, a slim image) the stdlib
loop runs the same code.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)``, on a uvloop loop when uvloop can be imported."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A new event loop for the SDK's own I/O (its background loop, a container's client): uvloop's when it can be
    imported (a thread hop onto it costs about 95 us against the stdlib loop's 120), else the stdlib's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


GC_THRESHOLDS = (10_000, 20, 50)  # young collections every 10,000 allocations (Python's default: 700)


def settle_gc() -> None:
    """For a long-running server, once it has started: move what start-up made (modules, routes, the control
    plane) out of the collector's sight, and collect less often. A full collection over everything stalls the
    event loop, and every request waits behind it; most garbage here is freed by reference counting anyway."""
    import gc

    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
