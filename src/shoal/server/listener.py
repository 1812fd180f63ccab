"""The gateway's HTTP/1.1 front: an asyncio protocol per client connection, parsed by httptools.

A general ASGI server (uvicorn) spent about a third of the gateway's time turning each request into ASGI messages
and back, and wrote every answer in two sends. This front hands the gateway a ``Request`` (its head parsed, its
body streamed as it arrives, with back-pressure) and a ``Reply`` that writes the answer's head together with its
first body chunk. An ``Upgrade`` request (a websocket) gets the raw connection: the gateway tunnels its bytes.
Requests on one connection are answered in order; a client that goes away cancels the request it was waiting for.
Heads are bounded in size and time, bodies may not stall, and all endpoint ports share one connection budget
(``http_limits.py``).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from http import HTTPStatus

import httptools

from .http_limits import ConnectionBudget, HeadGuard, IdleConnections, process_idle, refuse_and_linger

Headers = list[tuple[bytes, bytes]]
BUFFERED = 1 << 20  # bytes of request body held before the client is paused
BACKLOG = 2048  # connections the kernel holds until accepted (asyncio's default, 100, resets a herd's)
KEEP_ALIVE = 75.0  # seconds an idle client connection stays open (longer than common clients' pools keep one)
REASONS = {int(s): s.phrase.encode() for s in HTTPStatus}


class Request:
    """One parsed request: its head now, its body as the handler reads it."""

    def __init__(self, connection: Connection, method: bytes, target: bytes, headers: Headers, version: str) -> None:
        self.connection = connection
        self.method = method.decode("latin-1")
        self.target = target  # the path and query, as the client sent them
        self.headers = headers  # names lowercased
        self.version = version
        self.client = connection.peer
        self.client_port = connection.peer_port
        self.keep_alive = True
        self.upgrade = False
        self.length: int | None = None
        self.chunked = False
        for name, value in headers:
            if name == b"content-length":
                self.length = int(value)
            elif name == b"transfer-encoding":
                self.chunked = b"chunked" in value.lower()
        self._chunks: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._complete = False
        self._arrived: asyncio.Event | None = None
        self.arrived = time.perf_counter()  # when its head was parsed (the time it waited is measured from here)
        self.followed = False  # another request came behind this one on its connection (pipelined)
        self._on_followed: list[Callable[[], None]] = []

    def when_followed(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` when the client sends another request behind this one (at once if it has): a held
        request (a container's quiet beat) answers then, so that the next goes out on the same connection."""
        if self.followed:
            callback()
        else:
            self._on_followed.append(callback)

    def _follow(self) -> None:
        if not self.followed:
            self.followed = True
            callbacks, self._on_followed = self._on_followed, []
            for callback in callbacks:
                callback()

    @property
    def path(self) -> str:
        return self.target.partition(b"?")[0].decode("latin-1")

    def header(self, name: bytes) -> bytes | None:
        return next((v for k, v in self.headers if k == name), None)

    async def body(self) -> AsyncIterator[bytes]:
        """The body as it arrives (never buffered whole); it ends early when the client goes away."""
        while (chunk := await self.read()) is not None:
            yield chunk

    async def read(self) -> bytes | None:
        """The next piece of the body as it arrives; None at its end, or when the client went away."""
        while not self._chunks:
            if self._complete or self.connection.closed:
                return None
            self._arrived = asyncio.Event()
            await self._arrived.wait()
        chunk = self._chunks.popleft()
        self._buffered -= len(chunk)
        if self._buffered < BUFFERED:
            self.connection.resume()
        return chunk

    def arrived_whole(self) -> bytes | None:
        """What is left of the body, at once, if all of it has arrived (as a small request's does with its head);
        else None (read it piece by piece with :meth:`read`)."""
        if not self._complete:
            return None
        body = b"".join(self._chunks)
        self._chunks.clear()
        self._buffered = 0
        self.connection.resume()
        return body

    @property
    def complete(self) -> bool:
        """Whether the whole body has arrived."""
        return self._complete

    def _feed(self, chunk: bytes) -> None:
        self._chunks.append(chunk)
        self._buffered += len(chunk)
        if self._buffered >= BUFFERED:
            self.connection.pause()
        self._wake()

    def _finish(self) -> None:
        self._complete = True
        self._wake()

    def _wake(self) -> None:
        if self._arrived is not None:
            self._arrived.set()
            self._arrived = None


class Reply:
    """The answer to one request: ``start`` keeps the head, the first ``send`` (or ``end``) writes it with the body."""

    def __init__(self, connection: Connection, request: Request) -> None:
        self.connection = connection
        self.request = request
        self.started = False
        self._head: bytes | None = None
        self._chunked = False
        self._no_body = request.method == "HEAD"  # its answer's head says what a GET's body would be: none is sent
        self._close = not request.keep_alive

    def start(self, status: int, headers: Headers) -> None:
        """Keep the head of the answer; ``headers`` carry its framing (content-length) when it is known."""
        self.started = True
        lines = [b"HTTP/1.1 %d %s" % (status, REASONS.get(status, b""))]
        framed = any(k == b"content-length" for k, _ in headers)
        bodiless = self.request.method == "HEAD" or status in (204, 304) or status < 200
        if not framed and not bodiless:
            if self.request.version == "1.1":
                self._chunked = True
                lines.append(b"transfer-encoding: chunked")
            else:
                self._close = True  # an HTTP/1.0 client reads to the connection's end
        if self._close:
            lines.append(b"connection: close")
        lines += (k + b": " + v for k, v in headers)
        self._head = b"\r\n".join(lines) + b"\r\n\r\n"

    async def send(self, chunk: bytes) -> None:
        """One piece of the body (written at once; waits while the client reads slower than the app writes)."""
        if self._no_body:
            self.connection.write(self._take_head())
            return
        if not chunk:
            return
        data = b"%x\r\n%s\r\n" % (len(chunk), chunk) if self._chunked else chunk
        self.connection.write(self._take_head() + data)
        await self.connection.drain()

    def end(self, last: bytes = b"") -> None:
        """The end of the answer (with its last piece of body, if any); the connection serves its next request."""
        data = self._take_head()
        if last and not self._no_body:
            data += b"%x\r\n%s\r\n" % (len(last), last) if self._chunked else last
        if self._chunked:
            data += b"0\r\n\r\n"
        if data:
            self.connection.write(data)
        if self._close:
            self.connection.close()

    def close_after(self) -> None:
        """Close the connection once this answer is written (it cannot serve another request)."""
        self.request.keep_alive = False
        self._close = True

    def answer(self, status: int, text: str) -> None:
        """A whole plain-text answer, unless one has started (then the connection is closed: it cannot be told)."""
        if self.started:
            self.connection.close()
            return
        body = (text + "\n").encode()
        self.start(status, [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", b"%d" % len(body))])
        self.end(body)

    def _take_head(self) -> bytes:
        head, self._head = self._head or b"", None
        return head


Handler = Callable[[Request, Reply], Awaitable[None]]


class Connection(asyncio.Protocol):
    """One client connection: requests parsed as they arrive, answered one at a time by ``handler``."""

    def __init__(
        self, handler: Handler, connections: set[Connection], budget: ConnectionBudget, idle: IdleConnections
    ) -> None:
        self.handler = handler
        self.connections = connections
        self.budget = budget
        self.reclaim = idle  # the process's idle keep-alive connections, closed first when descriptors run short
        self.counted = False
        self.guard = HeadGuard(self._refuse)
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.peer = ""
        self.peer_port = 0
        self.closed = False
        self.queue: collections.deque[Request] = collections.deque()
        self.task: asyncio.Task[None] | None = None
        self.tunnel: Callable[[bytes], None] | None = None  # an upgraded connection: where its bytes go
        self.early = b""  # bytes after an upgrade request's head, before the tunnel is made
        self._paused = False
        self._idle: asyncio.TimerHandle | None = None
        self._writable: asyncio.Event | None = None
        self._url = b""
        self._headers: Headers = []
        self._parsing: Request | None = None
        self._lost: asyncio.Future[None] | None = None

    # ---- asyncio.Protocol ---------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's TCP transport is no asyncio.Transport
        if not self.budget.take():  # every endpoint port's connections together: never the API's descriptors
            transport.close()
            return
        self.counted = True
        self.connections.add(self)
        self.reclaim.opened(self)
        self._went_idle()
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple):
            self.peer, self.peer_port = peer[0], peer[1]

    def data_received(self, data: bytes) -> None:
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
            self.reclaim.busy(self)
        if self.tunnel is not None:
            self.tunnel(data)
            return
        if self._parsing is not None and self._parsing.upgrade:
            self.early += data
            return
        if self.guard.refused:
            return
        self.guard.received(len(data))
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            self.early = data[upgrade.args[0] :] if upgrade.args else b""
        except httptools.HttpParserError:
            self.write(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
            self.close()
            return
        if not self.guard.refused:
            self.guard.parsed()

    def _refuse(self, answer: bytes) -> None:
        """A limit was passed (``http_limits.py``): answer, and close the connection."""
        if self.task is not None:  # a request is being answered: its answer would be cut short anyway
            self.task.cancel()
        if self.transport is not None and not self.closed:
            refuse_and_linger(self.transport, answer)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.guard.stop()
        if self.counted:
            self.counted = False
            self.budget.give_back()
            self.reclaim.closed(self)
        self.connections.discard(self)
        if self._idle is not None:
            self._idle.cancel()
        for request in self.queue:
            request._wake()
        if self.task is not None:
            self.task.cancel()  # nobody waits for its answer: free the container's slot
        if self._writable is not None:
            self._writable.set()
        if self._lost is not None and not self._lost.done():
            self._lost.set_result(None)

    def pause_writing(self) -> None:
        self._writable = asyncio.Event()

    def resume_writing(self) -> None:
        if self._writable is not None:
            self._writable.set()
            self._writable = None

    # ---- httptools callbacks ------------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._url, self._headers = b"", []

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.guard.header()
        self._headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        self.guard.head_done(self._url, self._headers)
        if self.guard.refused:
            return
        request = Request(self, self.parser.get_method(), self._url, self._headers, self.parser.get_http_version())
        request.keep_alive = self.parser.should_keep_alive()
        request.upgrade = self.parser.should_upgrade()
        self._parsing = request
        self.queue.append(request)
        if self.task is None:
            self._next()
        else:
            self.queue[0]._follow()

    def on_body(self, body: bytes) -> None:
        if self._parsing is not None:
            self._parsing._feed(body)

    def on_message_complete(self) -> None:
        self.guard.message_done()
        if self._parsing is not None:
            self._parsing._finish()
            if not self._parsing.upgrade:
                self._parsing = None
        if len(self.queue) > 1:
            self.pause()  # a pipelining client waits until the answers before its next request were written

    # ---- serving ------------------------------------------------------------------------------------

    def _next(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._serve_queue())

    async def _serve_queue(self) -> None:
        """Answer the queued requests in order, in one task: a request pipelined behind another (a container's
        exchange behind its held beat) starts as soon as that one's answer is written, not a loop turn later."""
        while True:
            request = self.queue[0]
            reply = Reply(self, request)
            try:
                await self.handler(request, reply)
            except asyncio.CancelledError:
                return
            except Exception:  # a bug of the gateway's: the client gets a 502 rather than a hung connection
                import logging

                logging.getLogger("shoal.gateway").exception("request %s %s failed", request.method, request.path)
                reply.answer(502, "The gateway failed to forward the request.")
            self.queue.popleft()
            if self.closed or self.transport is None or self.transport.is_closing():
                self.task = None
                return
            if not request._complete and not request.upgrade:  # the app answered before reading the whole body
                self.task = None
                self.close()
                return
            if not self.queue:
                self.task = None
                self._went_idle()
                self.resume()
                return
            self.resume()

    def _went_idle(self) -> None:
        """No request in flight: closed after ``KEEP_ALIVE`` seconds, or sooner to make room for new clients."""
        self._idle = asyncio.get_running_loop().call_later(KEEP_ALIVE, self.close)
        self.reclaim.idle(self)

    # ---- transport ----------------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if not self.closed and self.transport is not None:
            self.transport.write(data)

    async def drain(self) -> None:
        if self._writable is not None and not self.closed:
            await self._writable.wait()

    def pause(self) -> None:
        if not self._paused and self.transport is not None and not self.closed:
            self._paused = True
            self.transport.pause_reading()
            self.guard.stop()  # a body we stopped reading is not stalling

    def resume(self) -> None:
        if self._paused and self.transport is not None and not self.closed:
            self._paused = False
            self.transport.resume_reading()
            self.guard.resumed()

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    async def lost(self) -> None:
        """Wait until the client has gone (the connection closed)."""
        if self.closed:
            return
        if self._lost is None:
            self._lost = asyncio.get_running_loop().create_future()
        await asyncio.shield(self._lost)

    def take_over(self, sink: Callable[[bytes], None]) -> None:
        """An upgraded connection: its bytes (those that came already, then each arrival) go to ``sink``."""
        self.tunnel = sink
        early, self.early = self.early, b""
        if early:
            sink(early)


async def serve(
    handler: Handler,
    sock: socket.socket,
    budget: ConnectionBudget | None = None,
    backlog: int = BACKLOG,
    idle: IdleConnections | None = None,
) -> tuple[asyncio.AbstractServer, set[Connection]]:
    """Listen on ``sock`` (bound already) with ``handler`` answering every request, within ``budget`` (shared by
    all endpoint ports), with ``backlog`` connections waiting to be accepted, idle connections closed early when
    the process's connections near its file limit (``idle``: the process's by default); returns the server and its
    open connections (to close them with it)."""
    connections: set[Connection] = set()
    loop = asyncio.get_running_loop()
    shared, reclaim = budget or ConnectionBudget(), idle or process_idle()
    server = await loop.create_server(
        lambda: Connection(handler, connections, shared, reclaim), sock=sock, backlog=backlog
    )
    return server, connections


async def close(server: asyncio.AbstractServer, connections: set[Connection], grace: float) -> None:
    """Stop listening; let requests in flight finish for up to ``grace`` seconds, then close every connection."""
    server.close()
    busy = [c.task for c in connections if c.task is not None]
    if busy:
        await asyncio.wait(busy, timeout=grace)
    for connection in list(connections):
        connection.close()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(server.wait_closed(), grace)
