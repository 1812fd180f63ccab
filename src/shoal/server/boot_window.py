"""How many launched containers may be booting at once: the start of a big fleet, paced by the server itself.

A container's first requests (its spec, "started", its first lease) come within milliseconds of its process. A
plane that launched 10,000 at once would get ~30,000 requests in a few seconds, and every container's first
lease would wait behind the herd (1-5 s at 10,000 on 2 cores). So at most ``size`` containers are *booting*
(launched, placed by the backend, spec not yet fetched); the next ones launch as those fetch theirs. The start
is then clocked by how fast the server answers, like a TCP window, and a slow-loading container (a model's
weights in ``@enter``) does not hold the window: it booted when it fetched its spec.

Containers the backend has not placed (a Ray cluster waiting for nodes) are not booting: they hold no room, so
the cluster's autoscaler still sees the whole demand.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection

BOOT_WINDOW = 256  # containers booting at once (SHOAL_BOOT_WINDOW, config.py); a start of 100 is not slowed


class BootWindow:
    """Containers launched and not booted yet; :meth:`room` waits until fewer than ``size`` are."""

    def __init__(self, size: int, unplaced: Callable[[], Collection[str]]) -> None:
        self.size = max(1, size)
        self._unplaced = unplaced  # the backend's containers not placed yet (they hold no room)
        self._booting: set[str] = set()
        self._changed = asyncio.Event()

    def booting(self) -> int:
        """Containers launched, placed, and not booted."""
        unplaced = self._unplaced()
        return sum(1 for c in self._booting if c not in unplaced) if unplaced else len(self._booting)

    async def room(self, wanted: int) -> int:
        """Wait until there is room, then say how many of ``wanted`` launches fit now (at least one)."""
        while (free := self.size - self.booting()) <= 0:
            self._changed.clear()
            try:  # a container the backend places later takes room without telling: look again after a while
                await asyncio.wait_for(self._changed.wait(), 1.0)
            except asyncio.TimeoutError:  # (not the built-in TimeoutError before Python 3.11)
                pass
        return min(wanted, free)

    def launched(self, container_id: str) -> None:
        self._booting.add(container_id)

    def booted(self, container_id: str) -> None:
        """It fetched its spec (or ended, or was never started): its room is free."""
        if container_id in self._booting:
            self._booting.discard(container_id)
            self._changed.set()
