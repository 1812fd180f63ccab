"""The streaming map engine: a bounded input pump, a batched submitter, and an output collector.

* The user's iterator is read by a thread (it may block or be infinite); at most ``window`` inputs are in
  flight (read but not yet handed back), so memory stays bounded for any number of inputs.
* Inputs go to the server in batches (one request per batch); outputs come back by long-polling in batches.
* ``order_outputs=True`` uses a reorder buffer, bounded by the same window.
* An exception raised by the iterator itself ends the map promptly and is raised to the caller.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import sys
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import msgspec

from ._output import MapProgress, output_enabled
from ._payloads import check_size, decode_output, inline_value, to_payloads
from .client import Client
from .config import INLINE_PAYLOAD_LIMIT, settings
from .protocol import chunks, routes
from .protocol.messages import OutputStatus
from .serialization import serialize_args

DEFAULT_WINDOW = 5_000
SUBMIT_BATCH = 2_000
SUBMIT_BATCH_BYTES = 8 * 1024 * 1024
BIG_INPUT = 64 * 1024  # pickled bytes: inputs above it count towards READY_BYTES
READY_BYTES = 64 * 1024 * 1024  # large inputs read ahead of the submitter at most (memory bounded by bytes too)
POLL_WAIT = 25.0


class Pumped(msgspec.Struct):
    """An input read and pickled by the pump (with its blob id when it goes to the blob store)."""

    index: int
    data: bytes
    digest: str | None


class _End(msgspec.Struct):
    count: int


class _IteratorFailed(msgspec.Struct):
    error: BaseException


class Window:
    """How many more inputs the pump may read: taken in handfuls (a lock per input would cost more than pickling
    it), given back as results are handed over."""

    def __init__(self, size: int) -> None:
        self._free = size
        self._changed = threading.Condition()

    def take(self, most: int) -> int:
        """Wait for room, then take up to ``most`` slots."""
        with self._changed:
            while self._free <= 0:
                self._changed.wait()
            n = min(most, self._free)
            self._free -= n
            return n

    def give(self, n: int) -> None:
        with self._changed:
            self._free += n
            self._changed.notify()


class InputPump:
    """Reads ``(args, kwargs)`` items in a thread, pickles them, and hands them to the submitter.

    Items go through a deque; the event loop is woken only when the submitter is waiting for one, so a fast
    iterator costs no cross-thread call per item.
    """

    def __init__(self, items: Iterator[tuple[tuple[Any, ...], dict[str, Any]]], function_name: str, window: int | None):
        self.items = items
        self.function_name = function_name
        self.slots = Window(window) if window else None
        self.ready: collections.deque[Pumped | _End | _IteratorFailed] = collections.deque()
        self._ready_bytes = 0  # pickled bytes waiting in ``ready``: the pump waits above READY_BYTES
        self._drained = threading.Condition()
        self.stopped = threading.Event()
        self._loop = asyncio.get_running_loop()
        self._wakeup = asyncio.Event()
        self._waiting = False
        self._limit = settings().max_payload_bytes

    def start(self) -> None:
        threading.Thread(target=self._run, name="shoal-map-pump", daemon=True).start()

    def stop(self) -> None:
        self.stopped.set()
        with self._drained:
            self._drained.notify_all()
        if self.slots is not None:
            self.slots.give(1)  # unblock a pump waiting for a slot

    def done(self, count: int) -> None:
        if self.slots is not None and count > 0:
            self.slots.give(count)

    async def get(self) -> Pumped | _End | _IteratorFailed:
        """The next item, waiting for the pump thread when none is ready."""
        while not self.ready:
            self._wakeup.clear()
            self._waiting = True
            if self.ready:  # it came between the check and the flag
                break
            await self._wakeup.wait()
        self._waiting = False
        return self._taken(self.ready.popleft())

    def get_nowait(self) -> Pumped | _End | _IteratorFailed | None:
        return self._taken(self.ready.popleft()) if self.ready else None

    def _taken(self, item: Pumped | _End | _IteratorFailed) -> Pumped | _End | _IteratorFailed:
        if isinstance(item, Pumped) and len(item.data) > BIG_INPUT:
            with self._drained:
                self._ready_bytes -= len(item.data)
                self._drained.notify()
        return item

    def _put(self, item: Pumped | _End | _IteratorFailed) -> None:
        if isinstance(item, Pumped) and len(item.data) > BIG_INPUT:  # large inputs: bound the bytes read ahead
            with self._drained:
                while self._ready_bytes > READY_BYTES and not self.stopped.is_set():
                    self._drained.wait(0.5)
                self._ready_bytes += len(item.data)
        self.ready.append(item)
        if self._waiting:
            self._waiting = False
            self._loop.call_soon_threadsafe(self._wakeup.set)

    def _run(self) -> None:
        index = 0
        room = 0  # slots taken and not used yet
        try:
            while True:
                if self.slots is not None and room == 0:
                    room = self.slots.take(256)
                room -= 1
                if self.stopped.is_set():
                    return
                try:
                    args, kwargs = next(self.items)
                except StopIteration:
                    break
                data = serialize_args(args, kwargs, self.function_name)
                check_size(data, self.function_name, self._limit)
                # a blob's id is hashed here, on the pump's thread (hashing releases the GIL): not on the loop
                digest = hashlib.sha256(data).hexdigest() if len(data) > INLINE_PAYLOAD_LIMIT else None
                self._put(Pumped(index, data, digest))
                index += 1
        except BaseException as exc:  # noqa: BLE001 - handed to the caller, whatever it is
            self._put(_IteratorFailed(exc))
            return
        self._put(_End(index))


async def submit_inputs(client: Client, call_id: str, pump: InputPump, on_submitted: Callable[[int], None]) -> int:
    """Send the pump's inputs in batches; close the call at the end. Returns the number of inputs."""
    while True:
        item: Any = await pump.get()
        batch: list[Pumped] = []
        end: _End | None = None
        size = 0
        for attempt in range(2):
            while item is not None:
                if isinstance(item, _IteratorFailed):
                    raise item.error
                if isinstance(item, _End):
                    end = item
                    break
                batch.append(item)
                size += len(item.data)
                if len(batch) >= SUBMIT_BATCH or size >= SUBMIT_BATCH_BYTES:
                    break
                item = pump.get_nowait()
            if end is not None or len(batch) >= SUBMIT_BATCH or size >= SUBMIT_BATCH_BYTES or attempt:
                break
            await asyncio.sleep(0)  # take what arrives within a blink: fewer, fuller requests
            item = pump.get_nowait()
        if batch or end is not None:
            start = batch[0].index if batch else end.count  # type: ignore[union-attr]
            payloads = await to_payloads(client, [x.data for x in batch], [x.digest for x in batch])
            body = {"start": start, "inputs": payloads, "close": end is not None}
            await client.request("POST", routes.path(routes.CALL_INPUTS, call_id=call_id), body, packed=True)
            on_submitted(len(batch))
        if end is not None:
            return end.count


async def collect_outputs(
    client: Client, call_id: str, *, order_outputs: bool, return_exceptions: bool, start: int = 0,
    end: Callable[[], int | None], on_delivered: Callable[[int], None] = lambda _: None,
    progress: MapProgress | None = None,
) -> AsyncIterator[list[Any]]:  # fmt: skip
    """Yield batches of results (values, or exceptions when ``return_exceptions``) until ``end()`` are delivered.

    Without ``return_exceptions`` a failed input ends the stream, but never hides a result that comes before it:
    in input order, every result before the first failing index is yielded, then its exception is raised; out of
    order, every result that arrived before the failure is yielded first.
    """
    since = 0
    delivered = 0
    next_index = start
    buffer: dict[int, tuple[bool, Any]] = {}
    while True:
        total = end()
        if total is not None and delivered >= total - start:
            return
        resp = await client.request(
            "POST",
            routes.path(routes.CALL_OUTPUTS, call_id=call_id),
            {"since": since, "wait": POLL_WAIT, "limit": 5_000, "chunks": True},
            packed=True,
        )
        batch: list[Any] = []
        failure: BaseException | None = None
        n_ok = n_failed = n_cancelled = 0
        stop = end()
        for seq, index, status, data in _per_input(resp["outputs"]):
            since = max(since, seq)
            if index < start or (stop is not None and index >= stop):
                continue
            found = inline_value(status, data)  # most outputs: no await per input
            ok, value = found if found is not None else await decode_output(client, status, data)
            if ok:
                n_ok += 1
            elif status == OutputStatus.CANCELLED.value:  # not a failure of the input's: counted apart
                n_cancelled += 1
            else:
                n_failed += 1
            if order_outputs:
                buffer[index] = (ok, value)
                while failure is None and next_index in buffer:
                    ok_next, value_next = buffer.pop(next_index)
                    if not ok_next and not return_exceptions:
                        failure = value_next
                        break
                    batch.append(value_next)
                    next_index += 1
            elif not ok and not return_exceptions:
                failure = value
            else:
                batch.append(value)
            if failure is not None:
                break
        delivered += len(batch)
        on_delivered(len(batch))
        if progress is not None:
            progress.completed(n_ok, n_failed, n_cancelled)
        if batch:
            yield batch
        if failure is not None:
            raise failure
        if resp["call"]["status"] == "EXPIRED":
            from .exception import OutputExpiredError

            raise OutputExpiredError(f"The results of {call_id} have expired (past the retention window).")


def _per_input(rows: list[list[Any]]) -> Iterator[tuple[int, int, str, bytes]]:
    """Output rows input by input: a chunk's (five fields: its count last) split into its inputs' outputs."""
    for row in rows:
        seq, index, status, data, count = row
        if count == 1:
            yield seq, index, status, data
        else:
            for i, item in enumerate(chunks.unpack(data)):
                yield seq, index + i, status, item


async def run_map(
    client: Client, function_id: str, function_name: str,
    items: Iterator[tuple[tuple[Any, ...], dict[str, Any]]], *, order_outputs: bool, return_exceptions: bool,
    parent_input: str | None, window: int = DEFAULT_WINDOW, on_call: Callable[[str], None] = lambda _: None,
    detached: bool = False, expected: int | None = None,
) -> AsyncIterator[list[Any]]:  # fmt: skip
    """Run a whole map: create the call, pump and submit inputs, and yield result batches as they come.

    Leaving early (an error, Ctrl-C, ``break``) cancels the call's unfinished inputs, unless the app is
    ``detached``: then the inputs already sent go on, and the call is closed at what was submitted. ``expected``:
    how many inputs there are, when the iterables say (:func:`known_length`), for the call's progress.
    """
    body = _call_body("map", parent_input, expected)
    made = await client.request("POST", routes.path(routes.FUNCTION_CALLS, function_id=function_id), body)
    call_id = made["call_id"]
    on_call(call_id)
    pump = InputPump(items, function_name, window)
    total: list[int] = []
    progress = MapProgress(f"{function_name}.map")
    submitted = [0]

    def on_submitted(n: int) -> None:
        submitted[0] += n
        progress.submitted(submitted[0])

    pump.start()
    submitter = asyncio.create_task(submit_inputs(client, call_id, pump, on_submitted))
    submitter.add_done_callback(lambda t: total.append(t.result()) if not t.cancelled() and not t.exception() else None)
    finished = False
    next_batch: asyncio.Future[list[Any]] | None = None
    try:
        outputs = collect_outputs(
            client, call_id, order_outputs=order_outputs, return_exceptions=return_exceptions,
            end=lambda: total[0] if total else None, on_delivered=pump.done, progress=progress,
        )  # fmt: skip
        while True:
            next_batch = asyncio.ensure_future(outputs.__anext__())
            done, _ = await asyncio.wait({next_batch, submitter}, return_when=asyncio.FIRST_COMPLETED)
            if submitter in done and submitter.exception() is not None:
                next_batch.cancel()
                raise submitter.exception()  # type: ignore[misc]
            try:
                batch = await next_batch
            except StopAsyncIteration:
                finished = True
                return
            yield batch
    finally:
        pump.stop()
        if not finished and detached and not total:  # said before any await: the process may be about to exit
            say_unsubmitted(function_name, "map", submitted[0])
        for task in (submitter, next_batch):  # interrupted (Ctrl-C): neither is left to end unawaited, whose
            if task is None:  # InputCancellation would print "Task exception was never retrieved"
                continue
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        if not finished:
            await abandon_call(client, call_id, detached, submitted_all=bool(total))


async def spawn_map(
    client: Client, function_id: str, function_name: str,
    items: Iterator[tuple[tuple[Any, ...], dict[str, Any]]], parent_input: str | None, detached: bool = False,
    key: str | None = None, expected: int | None = None,
) -> str:  # fmt: skip
    """Submit every input (streaming, bounded memory) and return the call id without waiting for results; with
    ``key``, once per key (the call the key started, if any, is returned, and nothing is submitted).

    Interrupted, the call is cancelled; in a ``detached`` app it is closed at what was submitted instead.
    """
    body = _call_body("spawn_map", parent_input, expected)
    if key is not None:
        body["key"] = key
    made = await client.request("POST", routes.path(routes.FUNCTION_CALLS, function_id=function_id), body)
    call_id = made["call_id"]
    if made.get("existing"):
        return str(call_id)
    pump = InputPump(items, function_name, window=4 * SUBMIT_BATCH)
    progress = MapProgress(f"{function_name}.spawn_map (submitting)")
    submitted = [0]

    def on_submitted(n: int) -> None:
        pump.done(n)
        submitted[0] += n
        progress.submitted(submitted[0])
        progress.completed(n, 0)

    pump.start()
    try:
        await submit_inputs(client, call_id, pump, on_submitted)
    except BaseException:
        pump.stop()
        if detached:
            say_unsubmitted(function_name, "spawn_map", submitted[0])
        await abandon_call(client, call_id, detached, submitted_all=False)
        raise
    return str(call_id)


def _call_body(kind: str, parent_input: str | None, expected: int | None) -> dict[str, Any]:
    body: dict[str, Any] = {"kind": kind, "parent_input": parent_input}
    if expected is not None:
        body["expected"] = expected
    return body


def known_length(*iterables: Any) -> int | None:
    """How many inputs zipping ``iterables`` gives, when each has a length (a list, a range); None for an iterator
    (never consumed here to find out)."""
    if not iterables or not all(hasattr(it, "__len__") for it in iterables):
        return None
    try:
        return min(len(it) for it in iterables)
    except (TypeError, OverflowError):  # a __len__ that refuses (an unsized view, a length over sys.maxsize)
        return None


def say_unsubmitted(function_name: str, how: str, submitted: int) -> None:
    """A detached call cut off while its inputs were being submitted: how many go on, and that the rest never
    will (the call is closed at what was submitted)."""
    if output_enabled():
        rest = "the rest of its inputs were never submitted (it stopped while submitting them)"
        print(f"✓ {submitted:,} inputs of {function_name}.{how} were submitted and go on without this process; {rest}.",
              file=sys.stderr)  # fmt: skip


async def abandon_call(client: Client, call_id: str, detached: bool, submitted_all: bool) -> None:
    """The caller left before the call's end (an error, Ctrl-C, ``break``): cancel its unfinished inputs, unless
    its app is ``detached``; then close it where submission stopped (if it had not finished), so that it can end.
    Best effort: the server may be gone too."""
    with contextlib.suppress(Exception):
        if not detached:
            await client.request(
                "POST", routes.path(routes.CALL_CANCEL, call_id=call_id), {"terminate_containers": False}
            )
        elif not submitted_all:
            await client.request(
                "POST",
                routes.path(routes.CALL_INPUTS, call_id=call_id),
                {"start": 0, "inputs": [], "close": True},
                packed=True,
            )


def zip_items(iterables: tuple[Any, ...], kwargs: dict[str, Any]) -> Iterator[tuple[tuple[Any, ...], dict[str, Any]]]:
    """``map``'s inputs: zip the iterables (stopping at the shortest), each with the same kwargs."""
    for args in zip(*iterables):
        yield args, kwargs


def star_items(iterable: Any, kwargs: dict[str, Any]) -> Iterator[tuple[tuple[Any, ...], dict[str, Any]]]:
    for args in iterable:
        yield tuple(args), kwargs
