"""A small HTTP/1.1 client for Shoal's own protocol: keep-alive connections, one request each at a time (but
one pipelined behind a request the server releases when followed: :class:`AsyncHTTP`).

Shoal talks to one control plane over loopback (or a LAN) with short bodies: a general client (httpx) spends
more time per request than the server does. This one writes the request in one ``send``, reads a
``Content-Length`` (or chunked) body, and reuses connections: a pool per event loop (a thread drives its own
through ``client.SyncClient``; a container's threads share one through ``client.SharedClient``). A connection
that fails is dropped; the caller decides whether to retry.
"""

from __future__ import annotations

import asyncio
import atexit
import socket
import weakref
from urllib.parse import urlsplit

import msgspec


class TransportError(OSError):
    """The connection failed before a whole response arrived (refused, reset, closed, timed out)."""


class Response(msgspec.Struct):
    status: int
    headers: dict[str, str]  # lower-case names
    content: bytes

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")


def _split(url: str) -> tuple[str, int, bool]:
    parts = urlsplit(url)
    tls = parts.scheme == "https"
    return parts.hostname or "127.0.0.1", parts.port or (443 if tls else 80), tls


def _head(method: str, path: str, host: str, body: bytes, headers: dict[str, str]) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"host: {host}", f"content-length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


SLICE = 1 << 20  # bytes of a request body handed to the transport at a time

_pools: weakref.WeakSet[AsyncHTTP] = weakref.WeakSet()


@atexit.register
def _close_idle_connections() -> None:
    """Idle pooled connections are closed on the way out (no ResourceWarning from a daemon loop's leftovers)."""
    for pool in list(_pools):
        pool.close_idle()


class _Conn(msgspec.Struct, eq=False):
    """A keep-alive connection, and when the last request written on it will have been read (``done``: True if
    its answer was read whole, False if the connection broke first): a request pipelined behind it reads after."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    done: asyncio.Future[bool] | None = None


class _Broken(OSError):
    """The request this one was pipelined behind did not get its answer: this one was never answered either."""


class AsyncHTTP:
    """A pool of keep-alive connections to one server, for one event loop.

    ``url`` may name several servers, comma-separated (an active server and its standbys over one PostgreSQL
    store): requests go to one of them; when it cannot be connected to, the next is tried on the next request.

    A *releasable* request is one the server holds until something happens, and answers at once when the client
    sends another request behind it on the same connection (a container's quiet heartbeat: ``ControlPlane
    .release_held``). A request that finds no idle connection goes behind a releasable one (HTTP/1.1
    pipelining) rather than open another: 10,000 containers each holding a beat then hold 10,000 connections,
    not 20,000 (a server's descriptor limit is often 20,000 or less).
    """

    def __init__(self, url: str, headers: dict[str, str], timeout: float = 90.0, max_idle: int = 32) -> None:
        self.endpoints = [_split(u.strip()) for u in url.split(",") if u.strip()] or [_split(url)]
        self._at = 0
        self.host, self.port, self.tls = self.endpoints[0]
        self.headers = headers
        self.timeout = timeout
        self.max_idle = max_idle
        self._idle: list[_Conn] = []
        self._held: list[_Conn] = []  # a releasable request is in flight on each, nothing behind it yet
        self.connects = 0  # connections opened (tests, benchmarks)
        _pools.add(self)

    async def request(
        self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None, *,
        releasable: bool = False,
    ) -> Response:  # fmt: skip
        """Send one request and read its response; a stale pooled connection is replaced once. ``releasable``:
        the server holds it until another request follows it on its connection (see the class)."""
        head = _head(method, path, self.host, body, {**self.headers, **(headers or {})})
        while True:
            behind: asyncio.Future[bool] | None = None
            if self._idle:
                conn, reused = self._idle.pop(), True
            elif self._held:
                conn, reused = self._held.pop(), True
                behind = conn.done
            else:
                conn, reused = await self._connect(), False
            mine: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
            conn.done = mine
            if releasable:
                self._held.append(conn)
            try:
                response = await asyncio.wait_for(self._exchange(conn, head, body, method == "HEAD", behind),
                                                  self.timeout)  # fmt: skip
            except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ValueError, RuntimeError) as exc:
                self._drop(conn, mine)
                if isinstance(exc, RuntimeError) and "closed" not in str(exc):
                    raise  # not uvloop's "the handler is closed" (a write to a connection the server dropped)
                if reused and not isinstance(exc, asyncio.TimeoutError):
                    continue  # the server closed an idle connection: try a fresh one
                raise TransportError(f"{type(exc).__name__}: {exc}") from exc
            except BaseException:  # cancelled mid-request (a long poll nobody waits for): the stream is unusable
                self._drop(conn, mine)
                raise
            mine.set_result(True)
            if conn in self._held:
                self._held.remove(conn)
            if conn.done is mine:  # nothing was pipelined behind it: the connection is free
                if response.headers.get("connection", "").lower() == "close" or len(self._idle) >= self.max_idle:
                    conn.writer.close()
                else:
                    self._idle.append(conn)
            return response

    def _drop(self, conn: _Conn, mine: asyncio.Future[bool]) -> None:
        """The connection is unusable: close it, and fail what was pipelined behind this request."""
        conn.writer.close()
        if not mine.done():
            mine.set_result(False)
        if conn in self._held:
            self._held.remove(conn)

    async def _connect(self) -> _Conn:
        tls = None
        if self.tls:
            import ssl  # https only: most connections are plain loopback ones (and ssl takes ~8 ms to import)

            tls = ssl.create_default_context()
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port, ssl=tls,
                                        limit=2**20),
                10.0,
            )  # fmt: skip
        except (OSError, asyncio.TimeoutError) as exc:
            failed = f"{self.host}:{self.port}"
            self._next_endpoint()
            raise TransportError(f"cannot connect to {failed}: {exc}") from exc
        sock = writer.get_extra_info("socket")
        try:
            if sock is not None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError as exc:  # the server dropped the connection at once (EBADF): as good as refused
            writer.close()
            raise TransportError(f"cannot connect to {self.host}:{self.port}: {exc}") from exc
        self.connects += 1
        return _Conn(reader, writer)

    def _next_endpoint(self) -> None:
        """Of several servers, go on to the next (the one in use could not be reached)."""
        if len(self.endpoints) > 1:
            self._at = (self._at + 1) % len(self.endpoints)
            self.host, self.port, self.tls = self.endpoints[self._at]
            self.close_idle()

    async def _exchange(
        self, conn: _Conn, head: bytes, body: bytes, no_body: bool, behind: asyncio.Future[bool] | None
    ) -> Response:
        reader, writer = conn.reader, conn.writer
        if len(body) <= SLICE:
            writer.write(head + body)
        else:  # a large body goes in slices, each sent before the next: no copy of it in the transport's buffer
            writer.write(head)
            view = memoryview(body)
            for start in range(0, len(body), SLICE):
                writer.write(view[start : start + SLICE])
                await writer.drain()
        await writer.drain()
        if behind is not None and not await asyncio.shield(behind):  # its answer comes first
            raise _Broken("the request this one followed on its connection got no answer")
        status_line = await reader.readuntil(b"\r\n")
        status = int(status_line.split(b" ", 2)[1])
        headers: dict[str, str] = {}
        while (line := await reader.readuntil(b"\r\n")) != b"\r\n":
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        if no_body or status in (204, 304) or 100 <= status < 200:
            content = b""
        elif "content-length" in headers:
            content = await reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            content = await _read_chunked(reader)
        else:
            content = await reader.read()
            headers["connection"] = "close"
        return Response(status, headers, content)

    def close_idle(self) -> None:
        """Close the pooled connections (safe from any thread at exit: it only marks the transports closing)."""
        while self._idle:
            self._idle.pop().writer.close()

    async def aclose(self) -> None:
        self.close_idle()


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts: list[bytes] = []
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        if size == 0:
            await reader.readuntil(b"\r\n")
            return b"".join(parts)
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)
