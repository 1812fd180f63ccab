"""Event loops on uvloop where it is installed (``uvicorn[standard]`` brings it on Linux).

uvloop's socket I/O costs about half of the stdlib loop's; the control plane (API and gateway), a web
container's app server, the SDK's background loop and a container's client are I/O-bound, so they run on it.
User code's own async functions keep the stdlib loop. Without uvloop (another platform, a slim image) the stdlib
loop runs the same code.
"""

from __future__ import annotations

import asyncio
import time
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


YOUNG_EVERY = 0.1  # seconds between a server's young collections (collect_on_a_clock)
FULL_EVERY = 600.0  # seconds between full collections (the cyclic garbage of a server is rare: not kept forever)

_clock: asyncio.Task[None] | None = None


def settle_gc() -> None:
    """For a long-running server, once it has started (on its event loop): move what start-up made (modules,
    routes, the control plane) out of the collector's sight, and collect on a clock (:func:`collect_on_a_clock`)
    instead of CPython's allocation count."""
    import gc

    global _clock
    gc.collect()
    gc.freeze()
    gc.disable()
    _clock = asyncio.get_running_loop().create_task(collect_on_a_clock())


async def collect_on_a_clock() -> None:
    """The server's collections: the young generation every ``YOUNG_EVERY`` seconds, everything every
    ``FULL_EVERY`` seconds; until cancelled (the collector is automatic again then). No middle collections: they
    found nothing to free at 10,000 containers and each held the loop up to 90 ms, once a second; the objects that
    outlive a young collection wait for the full one (a young collection does not walk them).

    CPython starts a young collection when allocations exceed deallocations by a threshold, and deallocations of
    *older* objects count. Under a steady churn (10,000 containers' held beats and exchanges: new objects living
    for seconds while older ones die) that balance stays low while the youngest generation grows: in
    ``bench/scale.py`` at 10,000 containers young collections walked 100,000-450,000 objects, 0.1-0.4 s each,
    on the event loop every request waits on (``gc_pauses``). On a clock, each walks what 0.1 s left alive."""
    import gc

    full_at = time.monotonic()
    try:
        while True:
            await asyncio.sleep(YOUNG_EVERY)
            if time.monotonic() - full_at >= FULL_EVERY:
                full_at = time.monotonic()
                gc.collect()
            else:
                gc.collect(0)
    finally:
        gc.enable()
