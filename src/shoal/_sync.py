"""One async core, two faces: a background event loop thread runs every coroutine of the SDK.

Blocking methods submit a coroutine to that loop and wait; ``.aio`` methods await it from the caller's own
loop. Async generators are bridged batch by batch so a million-result map costs few thread hops.
"""

from __future__ import annotations

import asyncio
import atexit
import threading
import time
import weakref
from collections.abc import AsyncIterator, Coroutine, Iterator
from concurrent.futures import Future
from typing import Any, TypeVar

from ._loop import new_event_loop

T = TypeVar("T")

CLOSE_TIMEOUT = 2.0  # seconds to wait for an interrupted generator or task to unwind
_lock = threading.Lock()
_exiting = False
_loop: asyncio.AbstractEventLoop | None = None


def loop() -> asyncio.AbstractEventLoop:
    """The SDK's background event loop (started on first use)."""
    global _loop
    with _lock:
        if _loop is None or _loop.is_closed():
            new_loop = new_event_loop()
            ready = threading.Event()

            def run() -> None:
                asyncio.set_event_loop(new_loop)
                new_loop.call_soon(ready.set)
                new_loop.run_forever()

            threading.Thread(target=run, name="shoal-sdk-loop", daemon=True).start()
            ready.wait()
            _loop = new_loop
        return _loop


def _submit(coro: Coroutine[Any, Any, T]) -> Future[T]:
    return asyncio.run_coroutine_threadsafe(coro, loop())


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on the SDK loop and block for its result (Ctrl-C cancels it)."""
    if threading.current_thread().name == "shoal-sdk-loop":  # (a map iterator collected on that thread ends here)
        coro.close()  # never awaited: closed now, not warned about when collected (an unraisable warning in tests)
        raise RuntimeError("blocking Shoal call made from inside the SDK's own event loop; use the .aio variant")
    if _exiting:  # a generator closed at interpreter exit: the loop is gone, and waiting would hang the exit
        coro.close()
        raise RuntimeError("the Shoal SDK loop has stopped (the interpreter is exiting)")
    future = _submit(coro)
    try:
        return future.result()
    except KeyboardInterrupt:
        future.cancel()
        raise
    except RuntimeError as exc:
        # Ctrl-C landing inside Condition.wait, after it released its lock, makes the `with` around it fail to
        # release it again: "cannot release un-acquired lock", raised while handling the KeyboardInterrupt. It is
        # still a Ctrl-C (a CPython race, seen once in CI in a detached run's interrupt test)
        if isinstance(exc.__context__, KeyboardInterrupt):
            future.cancel()
            raise exc.__context__ from None
        raise


async def run_aio(coro: Coroutine[Any, Any, T]) -> T:
    """Await ``coro`` (running on the SDK loop) from any other event loop."""
    return await asyncio.wrap_future(_submit(coro))


_open: weakref.WeakSet[Any] = weakref.WeakSet()  # generators iter_sync has not finished: close_open() ends them


def iter_sync(agen: AsyncIterator[list[T]]) -> Iterator[T]:
    """Iterate, blocking, over an async generator of batches running on the SDK loop."""
    _open.add(agen)
    try:
        while True:
            try:
                batch: list[T] = run_sync(agen.__anext__())  # type: ignore[arg-type]
            except StopAsyncIteration:
                return
            yield from batch
    finally:
        _open.discard(agen)
        _close_now(agen)


def close_open() -> None:
    """End every iteration this process left unfinished (a Ctrl-C in the middle of a loop over a map's results
    leaves its generator suspended until collected, which may be never before the process exits): each runs
    its ``finally`` now (a map's call is cancelled, or a detached one closed where its submission stopped)."""
    for agen in list(_open):
        _open.discard(agen)
        _close_now(agen)


def _close_now(agen: Any) -> None:
    if getattr(agen, "aclose", None) is not None:
        try:  # one coroutine: run_sync closes it unstarted where it cannot run it (on the SDK loop, at exit)
            run_sync(_close(agen))
        except BaseException:  # noqa: BLE001 - closing must not mask the original error
            pass


async def _close(agen: Any) -> None:
    """Close an async generator once the step an interrupt cancelled has unwound (its ``finally`` ran: a map's
    call cancelled, or a detached one closed), so that the process does not exit before that; bounded."""
    deadline = time.monotonic() + CLOSE_TIMEOUT
    while True:
        try:
            await asyncio.wait_for(agen.aclose(), max(0.0, deadline - time.monotonic()))
            return
        except RuntimeError:  # "already running": the cancelled step is still unwinding
            if time.monotonic() > deadline:
                return
            await asyncio.sleep(0.01)


async def iter_aio(agen: AsyncIterator[list[T]]) -> AsyncIterator[T]:
    """Async-iterate from the caller's loop over an async generator of batches running on the SDK loop."""
    try:
        while True:
            try:
                batch: list[T] = await run_aio(agen.__anext__())  # type: ignore[arg-type]
            except StopAsyncIteration:
                return
            for item in batch:
                yield item
    finally:
        closer = getattr(agen, "aclose", None)
        if closer is not None:
            try:
                await run_aio(closer())
            except BaseException:  # noqa: BLE001
                pass


async def _cancel_all() -> None:
    tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.wait(tasks, timeout=CLOSE_TIMEOUT)


def _shutdown() -> None:
    """At exit: cancel what still runs on the SDK loop (heartbeats, log follower, long polls), then stop it."""
    global _exiting
    _exiting = True
    if _loop is not None and not _loop.is_closed() and _loop.is_running():
        try:
            asyncio.run_coroutine_threadsafe(_cancel_all(), _loop).result(CLOSE_TIMEOUT + 1)
        except BaseException:  # noqa: BLE001 - best effort on the way out
            pass
        _loop.call_soon_threadsafe(_loop.stop)


atexit.register(_shutdown)
