"""An ASGI app (the control plane's API) served on this package's own HTTP/1.1 front (``listener.py``).

The API was served by uvicorn. Importing it was 31 ms of an embedded server's ~230 ms start (its command line,
reloaders and WSGI middleware come with it), on the path of every cold ``app.run()``; and at thousands of
containers its per-request work was a tenth of the server's time. The gateway's front already parses requests
with httptools, streams bodies with back-pressure, bounds heads (``http_limits.py``) and answers pipelined
requests in order, so the API now runs on it: :class:`AsgiFront` turns each request into an ASGI ``http`` scope
and its messages, and :class:`Lifespan` runs the app's ``lifespan`` protocol (the control plane's start and stop).

What it does not do: websockets (the API has none; an endpoint's go through the gateway) and ``Expect:
100-continue`` (no client of the API sends it). A ``send`` after the client has gone raises
:class:`ClientDisconnected` (an ``OSError``, as ASGI 2.4 servers do), and ``receive`` then says
``http.disconnect``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import unquote

from .listener import Reply, Request

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[MutableMapping[str, Any], Receive, Send], Awaitable[None]]

log = logging.getLogger("shoal.server")

ASGI = {"version": "3.0", "spec_version": "2.4"}
_BODY_END: Message = {"type": "http.request", "body": b"", "more_body": False}


class ClientDisconnected(OSError):
    """The client went away before the answer was written."""


class AsgiFront:
    """A ``listener.Handler`` that answers each request with an ASGI app."""

    def __init__(self, app: App, server: tuple[str, int]) -> None:
        self.app = app
        self.server = server

    async def __call__(self, request: Request, reply: Reply) -> None:
        target = request.target
        path, _, query = target.partition(b"?")
        scope = {
            "type": "http", "asgi": ASGI, "http_version": request.version, "method": request.method,
            "scheme": "http", "path": unquote(path.decode("latin-1")), "raw_path": path, "query_string": query,
            "root_path": "", "headers": request.headers, "client": (request.client, request.client_port),
            "server": self.server, "state": {},
            "extensions": {"shoal.when_followed": request.when_followed, "shoal.arrived": request.arrived},
        }  # fmt: skip
        exchange = _Exchange(request, reply)
        try:
            await self.app(scope, exchange.receive, exchange.send)
        except asyncio.CancelledError:
            raise
        except ClientDisconnected:  # the client left before its answer: nobody to tell
            request.connection.close()
            return
        except Exception:  # a bug of ours: the client gets a 500 (or a cut connection) and the log the traceback
            log.exception("%s %s failed", request.method, scope["path"])
            exchange.abort()
            return
        if not exchange.ended:
            log.error("%s %s: the app returned without finishing its answer", request.method, scope["path"])
            exchange.abort()


class _Exchange:
    """One request's ``receive`` and ``send``."""

    def __init__(self, request: Request, reply: Reply) -> None:
        self.request = request
        self.reply = reply
        self.body_done = False
        self.ended = False

    async def receive(self) -> Message:
        request = self.request
        if self.body_done or self.ended:  # the app waits for the client to go away (a long poll, a stream)
            await request.connection.lost()
            return {"type": "http.disconnect"}
        whole = request.arrived_whole()  # a small request's body came with its head: one message
        if whole is not None:
            self.body_done = True
            return {"type": "http.request", "body": whole, "more_body": False}
        chunk = await request.read()
        if chunk is not None:
            return {"type": "http.request", "body": chunk, "more_body": True}
        if request.connection.closed and not request.complete:
            return {"type": "http.disconnect"}
        self.body_done = True
        return _BODY_END

    async def send(self, message: Message) -> None:
        reply = self.reply
        if self.request.connection.closed:
            raise ClientDisconnected("the client closed the connection")
        kind = message["type"]
        if kind == "http.response.start":
            if reply.started:
                raise RuntimeError("the answer has started already")
            reply.start(message["status"], message.get("headers", []))
        elif kind == "http.response.body":
            if not reply.started or self.ended:
                raise RuntimeError("a body sent before the answer's start, or after its end")
            body = message.get("body", b"")
            if message.get("more_body", False):
                await reply.send(body)
            else:
                self.ended = True
                reply.end(body)
        else:
            raise RuntimeError(f"unexpected ASGI message {kind!r}")

    def abort(self) -> None:
        """The app failed: a 500 if nothing was sent yet; the connection is closed after it, or cut (an answer was
        sent, perhaps only in part: the client must not read the next one from where this one stopped)."""
        if self.reply.started:
            self.request.connection.close()
            return
        self.ended = True
        self.reply.close_after()
        self.reply.answer(500, "Internal Server Error")


class Lifespan:
    """Runs an ASGI app's ``lifespan`` protocol: :meth:`startup` before serving, :meth:`shutdown` after."""

    def __init__(self, app: App) -> None:
        self.app = app
        self._inbox: asyncio.Queue[Message] = asyncio.Queue()
        self._outbox: asyncio.Queue[Message] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    async def startup(self) -> None:
        """Raises:
        RuntimeError: the app's startup failed (its message says why)."""
        scope = {"type": "lifespan", "asgi": ASGI, "state": {}}
        self._task = asyncio.ensure_future(self.app(scope, self._inbox.get, self._outbox.put))
        await self._step("lifespan.startup")

    async def shutdown(self) -> None:
        if self._task is None:
            return
        try:
            await self._step("lifespan.shutdown")
        finally:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _step(self, event: str) -> None:
        assert self._task is not None
        self._inbox.put_nowait({"type": event})
        answer = asyncio.ensure_future(self._outbox.get())
        await asyncio.wait([answer, self._task], return_when=asyncio.FIRST_COMPLETED)
        if not answer.done():
            answer.cancel()
            self._task.result()  # the app raised: that error
            raise RuntimeError(f"the app ended its lifespan at {event}")
        message = answer.result()
        if message["type"] != f"{event}.complete":
            await asyncio.wait([self._task], timeout=1.0)  # it raises after it says so; its error is in the message
            if self._task.done() and not self._task.cancelled():
                self._task.exception()
            raise RuntimeError(f"{event} failed: {message.get('message', '')}")
