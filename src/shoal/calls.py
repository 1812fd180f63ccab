"""``FunctionCall``: a durable handle on submitted work, usable from any process on the machine."""

from __future__ import annotations

import asyncio
import builtins
import itertools
import re
import time
import weakref
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from ._aio import aio_gen_method, aio_method
from ._map import collect_outputs
from ._payloads import decode_output, inline_value
from .client import Client, client_for, dashboard_link, lookup_urls
from .exception import Error, InvalidError, NotFoundError, OutputExpiredError
from .logs import LogsManager, Target
from .protocol import routes

MAX_WAIT = 25.0
PREFETCH_CALLS = 1024  # sibling spawns a get() asks about in the same request
PREFETCH_BYTES = 16 * 1024 * 1024  # at most this much of their results fetched ahead of their own get()
PREFETCH_QUIET = 0.5  # s without asking about siblings after an ask that found none of them finished


@dataclass
class CallGraphNode:
    """One call in a call graph (``FunctionCall.get_call_graph``)."""

    function_call_id: str
    function_name: str
    status: str
    num_inputs: int | None
    children: list[CallGraphNode] = field(default_factory=list)


class FunctionCall:
    """A handle on a ``spawn``/``spawn_map``/``map`` call. Results are kept for the retention window (7 days).

    Create one with ``Function.spawn`` / ``spawn_map``, or from an id with :meth:`from_id`.
    """

    def __init__(self, object_id: str, url: str | None = None) -> None:
        self.object_id = object_id
        self._url = url
        self._row: list[Any] | None = None  # input 0's output row, when fetched along with a sibling's
        self._known: Client | None = None  # the client of its server, once found

    @property
    def logs(self) -> LogsManager:
        """This call's log lines (Modal 1.5): ``logs.fetch(since=...)``, ``logs.tail(n)``, ``logs.stream()`` (which
        ends once the call has finished and its lines are read); each with ``.aio``."""

        async def target() -> Target:
            return await self._client(), {"call": self.object_id}, self.object_id

        async def finished() -> bool:
            return (await self._info()).get("finished_at") is not None

        return LogsManager(target, finished)

    @classmethod
    def _spawned(cls, object_id: str, client: Client) -> FunctionCall:
        """The handle ``spawn`` returns: its result may be fetched ahead, along with a sibling's (:class:`Spawned`)."""
        call = cls(object_id, client.url)
        call._known = client
        Spawned.on(client.url).add(call)
        return call

    def _fetched(self, timeout: float | None = None, *, index: int = 0) -> tuple[Any] | None:
        """``get()``'s answer when a sibling's get() fetched it and it is an inline success: decoded in the
        caller's thread, without a hop to the SDK's loop."""
        row = self._row
        if index != 0 or row is None or (timeout is not None and timeout < 0):
            return None
        found = inline_value(row[2], row[3])
        if found is None:
            return None
        self._row = None
        return (found[1],)

    def __repr__(self) -> str:
        return f"FunctionCall({self.object_id!r})"

    def __reduce__(self) -> Any:
        return (FunctionCall, (self.object_id,))

    @classmethod
    def from_id(cls, function_call_id: str) -> FunctionCall:
        """A handle on an existing call, e.g. one spawned by another process.

        Raises:
            NotFoundError: (on first use) no running server knows this id.
        """
        if not isinstance(function_call_id, str) or not re.fullmatch(r"fc-[0-9A-Za-z]{1,64}", function_call_id):
            raise NotFoundError(f"{function_call_id!r} is not a function call id (they look like 'fc-1a2b...').")
        return cls(function_call_id)

    @classmethod
    def from_key(cls, function: Any, key: str) -> FunctionCall:
        """The call ``function.spawn_once(key, ...)`` (or ``spawn_map_once``) started, from any process, while its
        results are kept. Blocking (one request to the server); beyond Modal.

        Raises:
            NotFoundError: no call of the function holds that key.
        """
        from ._sync import run_sync

        return run_sync(cls._from_key(function, key))

    @classmethod
    async def _from_key(cls, function: Any, key: str) -> FunctionCall:
        client, function_id = await function._resolve()
        found = await client.request("GET", routes.path(routes.FUNCTION_KEY, function_id=function_id)
                                     + "?" + urlencode({"key": key}))  # fmt: skip
        call = cls(str(found["call_id"]), client.url)
        call._known = client
        return call

    async def _failures(self) -> dict[str, Any]:
        """Its failed inputs per status, and grouped by error (``shoal call status``)."""
        client = await self._client()
        found: dict[str, Any] = await client.request("GET", routes.path(routes.CALL_FAILURES, call_id=self.object_id))
        return found

    def _unknown(self) -> str:
        """Why no server knows this call, in the words that fit where the question was asked."""
        from .config import container_env

        if container_env() is not None:  # only one server to ask: the one the container runs under
            return (f"The Shoal server running this container does not know function call {self.object_id}: check "
                    "the id (ids come from .spawn() or .object_id of a call made on this server).")  # fmt: skip
        return (f"No running Shoal server knows function call {self.object_id}. It may belong to an app run that "
                "has ended (its embedded server stopped with it), or to a server that is not running: start it "
                "with `shoal server`, or set SHOAL_SERVER_URL.")  # fmt: skip

    async def _client(self) -> Client:
        if self._known is not None:
            return self._known
        if self._url is None:
            for url in await asyncio.to_thread(lookup_urls):
                client = client_for(url)
                try:
                    await client.request("GET", routes.path(routes.CALL, call_id=self.object_id))
                except NotFoundError:
                    continue
                self._url = url
                break
            else:
                raise NotFoundError(self._unknown())
        self._known = client_for(self._url)
        return self._known

    async def _info(self) -> dict[str, Any]:
        client = await self._client()
        return await client.request("GET", routes.path(routes.CALL, call_id=self.object_id))  # type: ignore[no-any-return]

    @aio_method
    async def get_dashboard_url(self) -> str:
        """The call's page on its server's dashboard: live progress, failures grouped with their tracebacks, each
        input's attempts and logs.

        Raises:
            NotFoundError: no running server knows this call.
        """
        await self._client()
        assert self._url is not None
        return dashboard_link(self._url, "calls", self.object_id)

    @aio_method
    async def num_inputs(self) -> int:
        """How many inputs the call has (1 for ``spawn``); for a call still being submitted, how many so far."""
        info = await self._info()
        return int(info["num_inputs"] if info["num_inputs"] is not None else info["submitted"])

    @aio_method.answering(_fetched)
    async def get(self, timeout: float | None = None, *, index: int = 0) -> Any:
        """The result of input ``index`` (0 for ``spawn``), waiting up to ``timeout`` seconds (None: forever).

        Raises:
            TimeoutError: (the built-in) the result is not ready within ``timeout``; ``timeout=0`` polls once.
            OutputExpiredError: the result was deleted after the retention window.
            Exception: whatever the function raised, with the remote traceback as ``__cause__``.
        """
        client = await self._client()
        if index == 0 and self._row is None:
            await Spawned.on(client.url).fetch_with(client, self)
        if index == 0 and self._row is not None:
            row, self._row = self._row, None
            return await output_value(client, row)
        return await wait_result(client, self.object_id, index, timeout)

    @aio_gen_method
    async def iter(
        self, *, start: int = 0, end: int | None = None, return_exceptions: bool = False
    ) -> AsyncIterator[list[Any]]:
        """Iterate in input order over the results of inputs ``start..end-1`` (all by default).

        Works for a call made by another (even dead) process: this is how to re-attach to a ``map`` or collect
        a ``spawn_map``. A failed input raises its exception when reached, after every result before it;
        ``return_exceptions=True`` yields the exception in its place instead.
        """
        client = await self._client()
        info = await self._info()

        def total() -> int | None:
            n = int(info["num_inputs"] if info["num_inputs"] is not None else info["submitted"])
            return n if end is None else min(end, n)

        position = start
        async for batch in collect_outputs(
            client, self.object_id, order_outputs=True, return_exceptions=return_exceptions, start=start, end=total
        ):
            info = await self._info()
            limit = total()
            keep = batch if limit is None else batch[: max(0, limit - position)]
            position += len(batch)
            if keep:
                yield keep

    @aio_method
    async def cancel(self, terminate_containers: bool = False) -> None:
        """Cancel the call's unfinished inputs (they end with ``InputCancellation``); finished results stay.

        Args:
            terminate_containers: also kill the containers running its inputs (their other inputs are re-queued).
        """
        client = await self._client()
        await client.request(
            "POST",
            routes.path(routes.CALL_CANCEL, call_id=self.object_id),
            {"terminate_containers": terminate_containers},
        )

    @aio_method
    async def retry_failed(self, *, failed: bool = True, cancelled: bool = False, timed_out: bool = False) -> int:
        """Run again the inputs of this finished call that failed (and, when asked, those cancelled or timed out),
        under the same call id and indexes: results that succeeded stay, ``iter()`` and ``get(index=)`` then see
        the new results where the failures were, and each input's earlier attempts stay on its dashboard page.
        Works from any process and after a server restart, while the call's app runs and its results are kept.
        A deployed app's inputs run on the version deployed now (fix, redeploy, retry); others on the function the
        call ran on. Returns how many inputs were queued again.

        Raises:
            InvalidError: nothing to choose, the call's app has stopped, the call has not finished, or its results
                expired.
        """
        statuses = (["FAILURE", "CRASHED", "INIT_FAILED"] if failed else []) + (["CANCELLED"] if cancelled else [])
        statuses += ["TIMEOUT"] if timed_out else []
        client = await self._client()
        answer = await client.request("POST", routes.path(routes.CALL_RETRY, call_id=self.object_id),
                                      {"statuses": statuses})  # fmt: skip
        self._row = None
        return int(answer["queued"])

    @aio_method
    async def get_call_graph(self) -> list[CallGraphNode]:
        """This call and the calls made from inside its inputs (best effort)."""
        client = await self._client()
        tree = await client.request("GET", routes.path(routes.CALL_GRAPH, call_id=self.object_id))

        def build(node: dict[str, Any]) -> CallGraphNode:
            return CallGraphNode(
                node["call_id"], node["function_name"], node["status"], node["num_inputs"],
                [build(c) for c in node["children"]],
            )  # fmt: skip

        return [build(tree)]

    @staticmethod
    def gather(*function_calls: FunctionCall) -> Sequence[Any]:
        """Wait for every call and return their results in order; raises the first failure."""
        from ._sync import run_sync

        return run_sync(_gather(function_calls))


class Spawned:
    """The handles this process spawned on one server whose results no ``get()`` has fetched yet.

    A ``get()`` that has to ask the server asks, in the same request, for the results of up to
    ``PREFETCH_CALLS`` of its siblings (up to ``PREFETCH_BYTES`` of them) and keeps them on their handles; so the
    common loop ``[h.get() for h in handles]`` over thousands of spawns costs a few round trips, not one each.
    Handles are held weakly: a handle dropped unread takes its fetched result with it. Only the SDK's loop thread
    touches this.
    """

    _servers: dict[str, Spawned] = {}

    def __init__(self) -> None:
        self.handles: weakref.WeakValueDictionary[str, FunctionCall] = weakref.WeakValueDictionary()
        self.quiet_until = 0.0

    @classmethod
    def on(cls, url: str) -> Spawned:
        return cls._servers.setdefault(url, cls())

    def add(self, call: FunctionCall) -> None:
        self.handles[call.object_id] = call

    async def fetch_with(self, client: Client, call: FunctionCall) -> None:
        """Fetch ``call``'s result if it is there, and those of finished siblings; nothing when it has none (the
        caller then waits for it alone), and nothing more for a while after an ask that found no sibling done."""
        self.handles.pop(call.object_id, None)
        if not self.handles or time.monotonic() < self.quiet_until:
            return
        ids = [call.object_id, *itertools.islice(self.handles.keys(), PREFETCH_CALLS - 1)]
        try:
            resp = await client.request(
                "POST", routes.CALLS_FIRST_OUTPUTS, {"call_ids": ids, "wait": 0, "max_bytes": PREFETCH_BYTES},
                packed=True,
            )  # fmt: skip
        except Error:  # e.g. a sibling's call expired and is gone: this get() asks for its own result alone
            self.quiet_until = time.monotonic() + PREFETCH_QUIET
            return
        rows: dict[str, list[Any]] = resp["outputs"]
        for call_id, row in rows.items():
            handle = call if call_id == call.object_id else self.handles.pop(call_id, None)
            if handle is not None:
                handle._row = row
        if len(rows) == (call.object_id in rows):
            self.quiet_until = time.monotonic() + PREFETCH_QUIET


async def _gather(calls: Sequence[FunctionCall]) -> list[Any]:
    """Every call's result, in order: one long poll for all the calls a server has (not one per call)."""
    clients = [await c._client() for c in calls]
    rows = {i: c._row for i, c in enumerate(calls) if c._row is not None}  # fetched along with a sibling's get()
    by_server: dict[str, list[int]] = {}
    for i, client in enumerate(clients):
        if i not in rows:
            by_server.setdefault(client.url, []).append(i)
    for positions in by_server.values():
        client = clients[positions[0]]
        waiting = {calls[i].object_id: i for i in positions}
        while waiting:
            resp = await client.request(
                "POST", routes.CALLS_FIRST_OUTPUTS, {"call_ids": list(waiting), "wait": MAX_WAIT}, packed=True
            )
            for call_id, row in resp["outputs"].items():
                rows[waiting.pop(call_id)] = row
            for call_id, info in resp["calls"].items():
                if info["status"] == "EXPIRED":
                    raise OutputExpiredError(f"The results of {call_id} have expired (past the retention window).")
    return [await output_value(client, rows[i]) for i, client in enumerate(clients)]


async def output_value(client: Client, row: list[Any]) -> Any:
    """The value of an output row ``[seq, index, status, data]``, or raise the failure it holds."""
    _, _, status, data = row
    ok, value = await decode_output(client, status, data)
    if ok:
        return value
    raise value


async def _gather_aio(*function_calls: FunctionCall) -> list[Any]:
    from ._sync import run_aio

    return await run_aio(_gather(function_calls))


FunctionCall.gather.aio = _gather_aio  # type: ignore[attr-defined]


async def wait_result(client: Client, call_id: str, index: int, timeout: float | None) -> Any:
    """Long-poll for the result of input ``index`` of a call; see :meth:`FunctionCall.get`."""
    if timeout is not None and timeout < 0:
        raise InvalidError("timeout must be >= 0 or None")
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        wait = MAX_WAIT if deadline is None else max(0.0, min(MAX_WAIT, deadline - time.monotonic()))
        resp = await client.request(
            "POST", routes.path(routes.CALL_OUTPUT, call_id=call_id), {"index": index, "wait": wait}, packed=True
        )
        if resp["output"] is not None:
            return await output_value(client, resp["output"])
        call = resp["call"]
        if call["status"] == "EXPIRED":
            raise OutputExpiredError(f"The results of {call_id} have expired (past the retention window).")
        total = call["num_inputs"]
        if total is not None and not 0 <= index < total:
            raise InvalidError(f"index {index} is out of range: {call_id} has {total} inputs")
        if deadline is not None and time.monotonic() >= deadline:
            raise builtins.TimeoutError(f"{call_id} has no result yet for input {index}")


async def stream_items(client: Client, call_id: str) -> AsyncIterator[list[Any]]:
    """Batches of a generator call's items as they arrive; raises what the generator raised, after its items."""
    since = -1
    while True:
        resp = await client.request(
            "POST", routes.path(routes.CALL_ITEMS, call_id=call_id), {"since": since, "wait": MAX_WAIT}, packed=True
        )
        batch = []
        for seq, data in resp["items"]:
            since = max(since, seq)
            batch.append((await decode_output(client, "SUCCESS", data))[1])
        if batch:
            yield batch
        elif resp["output"] is not None:  # ended, and every item before the end has been delivered
            _, _, status, data = resp["output"]
            ok, value = await decode_output(client, status, data)
            if not ok:
                raise value
            return
