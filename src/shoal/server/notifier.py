"""Wake-ups for long polls: waiters block on a key until someone notifies it (no polling loops)."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
MAX_LONG_POLL = 30.0


class Notifier:
    def __init__(self) -> None:
        self._events: dict[str, asyncio.Event] = {}
        self.closed = False  # the server is stopping: waits return at once

    def notify(self, key: str) -> None:
        event = self._events.pop(key, None)
        if event is not None:
            event.set()

    def notify_all(self) -> None:
        """Wake every waiter (the server is stopping: long polls answer now)."""
        self.closed = True
        events, self._events = self._events, {}
        for event in events.values():
            event.set()

    async def poll(
        self, key: str | tuple[str, ...], wait: float, fetch: Callable[[], T], ready: Callable[[T], bool] = bool
    ) -> T:
        """A long poll: ``fetch()`` until ``ready`` of its result, sleeping on ``key`` (or any of several) in
        between, for at most ``wait`` seconds (capped at MAX_LONG_POLL); returns the last result."""
        deadline = time.monotonic() + min(wait, MAX_LONG_POLL)
        while True:
            result = fetch()
            remaining = deadline - time.monotonic()
            if ready(result) or remaining <= 0 or self.closed:
                return result
            if isinstance(key, str):
                await self.wait(key, remaining)
            else:
                await self.wait_any(key, remaining)

    async def wait_any(self, keys: tuple[str, ...], timeout: float) -> None:
        """Return when any of ``keys`` is notified or after ``timeout`` seconds."""
        if timeout <= 0 or self.closed:
            return
        waiters = [asyncio.ensure_future(self._events.setdefault(key, asyncio.Event()).wait()) for key in keys]
        try:
            await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()

    async def wait(self, key: str, timeout: float) -> None:
        """Return when ``key`` is notified or after ``timeout`` seconds, whichever comes first."""
        if timeout <= 0 or self.closed:
            return
        event = self._events.get(key)
        if event is None:
            event = self._events[key] = asyncio.Event()
        if sys.version_info >= (3, 11):  # no task of its own (wait_for's): a notified waiter runs a turn sooner
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await event.wait()
        else:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(event.wait(), timeout)
