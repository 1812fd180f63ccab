"""``Queue``: a durable FIFO queue on the server with optional partitions (Modal's API)."""

from __future__ import annotations

import queue as stdlib_queue
import time
from collections.abc import AsyncIterator
from typing import Any, ClassVar

from ._aio import aio_gen_method, aio_method
from ._kv import ServerObject
from .objects import KVObjects
from .protocol import routes
from .serialization import dumps, loads

POLL = 25.0


class Queue(ServerObject):
    """``Queue.from_name("jobs", create_if_missing=True)`` or ``with Queue.ephemeral() as q:``.

    Each partition (default: one unnamed partition) holds up to 5,000 items of up to 1 MiB; every item is
    delivered to exactly one getter. Every method has an ``.aio`` variant.
    """

    kind = "queue"
    objects: ClassVar[KVObjects[Queue]]  # Queue.objects.create/list/delete

    async def _call(self, op: str, **body: Any) -> dict[str, Any]:
        client, oid = await self._ready()
        return await client.request("POST", routes.path(routes.QUEUE_OP, object_id=oid, op=op), body, packed=True)  # type: ignore[no-any-return]

    @aio_method
    async def put(
        self, v: Any, block: bool = True, timeout: float | None = None, *, partition: str | None = None
    ) -> None:
        """Add ``v``. When the partition is full: wait (``block``, up to ``timeout``), else raise ``queue.Full``."""
        await self.put_many._core(self, [v], block, timeout, partition=partition)

    @aio_method
    async def put_many(
        self, vs: list[Any], block: bool = True, timeout: float | None = None, *, partition: str | None = None
    ) -> None:
        """Add every value of ``vs``, all or none."""
        values = [dumps(v) for v in vs]
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            wait = 0.0 if not block else POLL if deadline is None else max(0.0, deadline - time.monotonic())
            resp = await self._call("put", partition=partition or "", values=values, wait=wait)
            if not resp["full"]:
                return
            if not block or (deadline is not None and time.monotonic() >= deadline):
                raise stdlib_queue.Full(f"{self!r} is full")

    @aio_method
    async def get(self, block: bool = True, timeout: float | None = None, *, partition: str | None = None) -> Any:
        """Remove and return the oldest item. Empty queue: wait (``block``; ``queue.Empty`` after ``timeout``),
        or return None when not blocking."""
        values = await self.get_many._core(self, 1, block, timeout, partition=partition)
        return values[0] if values else None

    @aio_method
    async def get_many(
        self, n_values: int, block: bool = True, timeout: float | None = None, *, partition: str | None = None
    ) -> list[Any]:
        """Remove and return up to ``n_values`` items (at least one when blocking)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            wait = 0.0 if not block else POLL if deadline is None else max(0.0, deadline - time.monotonic())
            resp = await self._call("get", partition=partition or "", n=n_values, wait=wait)
            if resp["values"] or not block:
                return [loads(v) for v in resp["values"]]
            if deadline is not None and time.monotonic() >= deadline:
                raise stdlib_queue.Empty(f"{self!r} stayed empty for {timeout}s")

    @aio_method
    async def len(self, *, partition: str | None = None, total: bool = False) -> int:
        """Items in a partition (default: the unnamed one), or in all of them with ``total=True``."""
        return int((await self._call("len", partition=None if total else (partition or "")))["len"])

    @aio_method
    async def clear(self, *, partition: str | None = None, all: bool = False) -> None:  # noqa: A002 - Modal's name
        """Remove every item of a partition, or of all partitions with ``all=True``."""
        await self._call("clear", partition=None if all else (partition or ""))

    @aio_gen_method
    async def iterate(
        self, *, partition: str | None = None, item_poll_timeout: float = 0.0
    ) -> AsyncIterator[list[Any]]:
        """Read items in order without removing them, until none arrives for ``item_poll_timeout`` seconds."""
        after = 0
        while True:
            resp = await self._call("scan", partition=partition or "", after=after, wait=item_poll_timeout)
            if not resp["items"]:
                return
            after = resp["items"][-1][0]
            yield [loads(v) for _, v in resp["items"]]


Queue.objects = KVObjects(Queue)
