"""A server's garbage collector on a clock (``_loop.settle_gc``): automatic collection off, cyclic garbage still
collected within a young round, and the collector automatic again once the clock stops."""

from __future__ import annotations

import asyncio
import gc
import weakref

from shoal import _loop


class Node:
    def __init__(self) -> None:
        self.me = self  # a cycle: only the collector frees it


def test_the_clock_collects_cyclic_garbage_while_automatic_collection_is_off_and_gives_it_back() -> None:
    async def scenario() -> None:
        _loop.settle_gc()
        try:
            assert not gc.isenabled()
            freed = asyncio.Event()
            node = Node()
            weakref.finalize(node, freed.set)
            del node
            await asyncio.wait_for(freed.wait(), 10 * _loop.YOUNG_EVERY + 5)  # a young round found it
        finally:
            assert _loop._clock is not None
            _loop._clock.cancel()
            await asyncio.gather(_loop._clock, return_exceptions=True)
        assert gc.isenabled()

    try:
        asyncio.run(scenario())
    finally:
        gc.unfreeze()
        gc.enable()
