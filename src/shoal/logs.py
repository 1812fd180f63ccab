"""Logs from code, as Modal 1.5 reads them: ``App.logs``, ``Function.logs`` and ``FunctionCall.logs``, each with
``fetch(since=, until=, source=, search_text=)``, ``tail(entries)`` and ``stream(timeout)`` (blocking iterators,
and async ones through ``.aio``), yielding :class:`LogEntry` values."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timezone
from typing import Any, Literal

import msgspec

from ._aio import aio_gen_method
from .client import Client
from .exception import InvalidError
from .protocol import routes

LogSource = Literal["stdout", "stderr", "system"]
PAGE = 1000  # lines per request
STREAM_WAIT = 10.0  # seconds one long poll of stream() waits for a line

# (the client of the server that holds the logs, the query naming the app/function/call, the owner's id)
Target = tuple[Client, dict[str, Any], str]


class LogEntry(msgspec.Struct, frozen=True):
    """One log line: its text, when (UTC), from where (``stdout``, ``stderr``, ``system``: Shoal's own lines), the
    object whose logs were read, and the ids it was written under, widest first (call, input, container)."""

    message: str
    timestamp: datetime
    source: str
    object_id: str
    context_ids: list[str] = msgspec.field(default_factory=list)

    def __str__(self) -> str:
        return self.message


def _utc(value: datetime | None, name: str) -> float | None:
    """Seconds since the epoch of a datetime (naive: local time), as Modal takes them."""
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise InvalidError(f"{name} must be a datetime, not {type(value).__name__}")
    return value.timestamp()


def _source(source: str | None) -> str | None:
    if source not in (None, "stdout", "stderr", "system"):
        raise InvalidError(f"source={source!r}: use 'stdout', 'stderr', 'system' or None")
    return source


class LogsManager:
    """What ``obj.logs`` is: reads the logs of one app, function or function call."""

    def __init__(self, target: Callable[[], Awaitable[Target]], finished: Callable[[], Awaitable[bool]] | None = None):
        self._target = target
        self._finished = finished  # a call's stream ends once the call has, and its lines are read

    async def _query(self, extra: dict[str, Any]) -> tuple[list[LogEntry], str | None, int]:
        client, query, object_id = await self._target()
        answer = await client.request("POST", routes.LOGS, {**query, **extra}, packed=True)
        rows = answer["logs"]
        entries = [self._entry(object_id, row) for row in rows]
        return entries, answer.get("state"), rows[-1][0] if rows else -1

    @staticmethod
    def _entry(object_id: str, row: list[Any]) -> LogEntry:
        seq, ts, stream, text, call_id, input_idx, container_id = row
        from ._ids import input_id

        ids = [call_id, input_id(call_id, input_idx) if call_id and input_idx is not None else None, container_id]
        context = [i for i in ids if i and i != object_id]
        return LogEntry(text, datetime.fromtimestamp(ts, timezone.utc), stream, object_id, context)

    @aio_gen_method
    async def fetch(
        self, *, since: datetime, until: datetime | None = None, source: LogSource | None = None,
        search_text: str = "",
    ) -> AsyncIterator[list[LogEntry]]:  # fmt: skip
        """Every line from ``since`` until ``until`` (default: now) that passes the filters, oldest first."""
        query = {"since_ts": _utc(since, "since"), "until_ts": _utc(until, "until") or time.time(),
                 "source": _source(source), "search": search_text or None, "after": 0, "limit": PAGE}  # fmt: skip
        while True:
            entries, _, last = await self._query(query)
            if entries:
                yield entries
            if len(entries) < PAGE:
                return
            query["after"] = last

    @aio_gen_method
    async def tail(self, entries: int = 100, *, source: LogSource | None = None) -> AsyncIterator[list[LogEntry]]:
        """The last ``entries`` lines (at most 5,000), oldest first."""
        if entries < 1:
            raise InvalidError(f"entries={entries}: ask for at least 1")
        found, _, _ = await self._query({"tail": min(entries, 5000), "source": _source(source)})
        if found:
            yield found

    @aio_gen_method
    async def stream(self, timeout: float | None = None) -> AsyncIterator[list[LogEntry]]:
        """New lines as they are written, until none comes for ``timeout`` seconds (None: until the app stops, or
        for a call, until it has finished and its lines are read)."""
        if timeout is not None and timeout <= 0:
            return
        _, _, after = await self._query({"tail": 1})
        after = max(after, 0)
        idle_since = time.monotonic()
        while True:
            wait = (
                STREAM_WAIT if timeout is None else max(0.0, min(STREAM_WAIT, idle_since + timeout - time.monotonic()))
            )
            entries, state, last = await self._query({"after": after, "wait": wait, "limit": PAGE})
            if entries:
                yield entries
                after, idle_since = last, time.monotonic()
                continue
            if state != "RUNNING" or (self._finished is not None and await self._finished()):
                return
            if timeout is not None and time.monotonic() - idle_since >= timeout:
                return
