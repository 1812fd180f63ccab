"""The gateway's client for the containers' web apps: HTTP/1.1 over kept-alive loopback connections, streaming.

A general client (httpx) spent most of the gateway's time in its own machinery; this one writes the request head
in one send, forwards the body as it arrives (chunked when its length is unknown), and hands the response body
on chunk by chunk. A connection is reused only after a whole response was read from it.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator

CHUNK = 64 * 1024
Headers = list[tuple[bytes, bytes]]


Address = tuple[str, int]  # where a container serves its web app: (host, port)


class UpstreamError(Exception):
    """The container's app closed or broke the connection before a whole response."""


class Response:
    def __init__(self, status: int, headers: Headers, body: AsyncIterator[bytes]) -> None:
        self.status, self.headers, self.body = status, headers, body
        self.upgraded: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None  # a 101: the raw connection


class Upstream:
    def __init__(self) -> None:
        self.idle: dict[Address, list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]] = defaultdict(list)

    async def request(
        self,
        address: Address,
        method: str,
        target: str,
        headers: Headers,
        body: AsyncIterator[bytes],
        length: int | None,
        streamed: bool = False,
        upgrade: bytes | None = None,
    ) -> Response:
        """Send one request to the app at ``address``; its response body is read as the caller iterates it. A
        kept connection the app closed meanwhile is replaced, unless part of the body went out on it already."""
        if length is not None:
            framing = [(b"content-length", str(length).encode())]
        else:  # a body of unknown length (the client sent one chunked), or none at all
            framing = [(b"transfer-encoding", b"chunked")] if streamed else []
        if upgrade is not None:  # a websocket: the app answers 101 and the connection becomes a tunnel
            framing += [(b"connection", b"upgrade"), (b"upgrade", upgrade)]
        head = b"\r\n".join([f"{method} {target} HTTP/1.1".encode(), *(k + b": " + v for k, v in headers + framing)])
        while True:
            reused = bool(self.idle[address])
            reader, writer = self.idle[address].pop() if reused else await _connect(address)
            sent = False
            try:
                writer.write(head + b"\r\n\r\n")
                if length is not None or streamed:
                    async for chunk in body:
                        sent = True
                        writer.write(chunk if length is not None else b"%x\r\n%s\r\n" % (len(chunk), chunk))
                        await writer.drain()
                if length is None and streamed:
                    writer.write(b"0\r\n\r\n")
                await writer.drain()
                status, response_headers = await _head(reader)
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
                writer.close()
                if reused and not sent:
                    continue
                raise UpstreamError(f"{type(exc).__name__}: {exc}") from exc
            if status == 101:
                response = Response(status, response_headers, _nothing())
                response.upgraded = (reader, writer)
                return response
            body_stream = self._body(address, reader, writer, method, status, response_headers)
            return Response(status, response_headers, body_stream)

    async def _body(
        self, address: Address, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, method: str, status: int,
        headers: Headers,
    ) -> AsyncIterator[bytes]:  # fmt: skip
        fields = {k.lower(): v for k, v in headers}
        reusable = fields.get(b"connection", b"").lower() != b"close"
        complete = False
        try:
            if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
                pass
            elif b"content-length" in fields:
                left = int(fields[b"content-length"])
                if 0 < left <= CHUNK:  # most answers: one read
                    yield await reader.readexactly(left)
                    left = 0
                while left:
                    chunk = await reader.read(min(left, CHUNK))
                    if not chunk:
                        raise UpstreamError("the app closed the connection mid-body")
                    left -= len(chunk)
                    yield chunk
            elif fields.get(b"transfer-encoding", b"").lower() == b"chunked":
                while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
                    yield await reader.readexactly(size)
                    await reader.readexactly(2)
                while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers
                    pass
            else:  # delimited by the connection's end
                reusable = False
                while chunk := await reader.read(CHUNK):
                    yield chunk
            complete = True
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
            reusable = False
            raise UpstreamError(f"{type(exc).__name__}: {exc}") from exc
        finally:
            if reusable and complete and not reader.at_eof() and not writer.is_closing():
                self.idle[address].append((reader, writer))
            else:
                writer.close()

    def close(self) -> None:
        for connections in self.idle.values():
            for _, writer in connections:
                writer.close()
        self.idle.clear()


async def _nothing() -> AsyncIterator[bytes]:
    """No body (a 101's connection is the caller's to use)."""
    empty: tuple[bytes, ...] = ()
    for chunk in empty:
        yield chunk


async def _connect(address: Address) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    try:
        return await asyncio.open_connection(*address, limit=2**20)
    except OSError as exc:
        raise UpstreamError(f"cannot connect to the app: {exc}") from exc


async def _head(reader: asyncio.StreamReader) -> tuple[int, Headers]:
    """The status and headers (names lowercased) of a response, read in one go."""
    lines = (await reader.readuntil(b"\r\n\r\n")).split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    headers: Headers = []
    for line in lines[1:-2]:
        name, _, value = line.partition(b":")
        headers.append((name.strip().lower(), value.strip()))
    return status, headers
