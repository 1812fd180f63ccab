"""The API's ASGI server (server/asgi.py over server/listener.py) on a real loopback socket, with a Starlette app:
the scope it builds, streamed bodies both ways, an app's failure, a client that leaves, and the lifespan."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from shoal.server import listener
from shoal.server.asgi import AsgiFront, Lifespan

events: list[str] = []


async def _scope(request: Request) -> JSONResponse:
    body = b"".join([piece async for piece in request.stream()])
    return JSONResponse({
        "path": request.url.path, "raw": request.scope["raw_path"].decode(), "query": request.url.query,
        "x": request.headers.get("x-thing"), "client": request.client.host if request.client else None,
        "body": body.decode(), "method": request.method,
    })  # fmt: skip


async def _stream(request: Request) -> StreamingResponse:
    async def pieces() -> AsyncIterator[bytes]:
        for piece in (b"one ", b"two ", b"three"):
            yield piece

    return StreamingResponse(pieces(), media_type="text/plain")


async def _fail(request: Request) -> Response:
    raise RuntimeError("a bug")


async def _wait(request: Request) -> Response:
    events.append("waiting")
    try:
        await asyncio.Event().wait()
    finally:
        events.append("cancelled")
    return Response()


@asynccontextmanager
async def _lifespan(app: Starlette) -> AsyncIterator[None]:
    events.append("startup")
    yield
    events.append("shutdown")


APP = Starlette(
    routes=[Route("/scope/{rest:path}", _scope, methods=["GET", "POST"]), Route("/stream", _stream),
            Route("/fail", _fail), Route("/wait", _wait)],
    lifespan=_lifespan,
)  # fmt: skip


async def _ask(data: bytes, leave_after: float | None = None) -> bytes:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server, connections = await listener.serve(AsgiFront(APP, sock.getsockname()), sock)
    reader, writer = await asyncio.open_connection(*sock.getsockname())
    writer.write(data)
    try:
        if leave_after is not None:
            while "waiting" not in events:
                await asyncio.sleep(0.01)
            writer.close()
            for _ in range(500):
                if "cancelled" in events:
                    break
                await asyncio.sleep(0.01)
            return b""
        return await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
        await listener.close(server, connections, grace=1.0)


def _body(answer: bytes) -> bytes:
    return answer.partition(b"\r\n\r\n")[2]


def test_the_scope_carries_the_decoded_path_query_headers_client_and_a_streamed_body() -> None:
    upload = b"POST /scope/a%20b?q=1&r=2 HTTP/1.1\r\nhost: h\r\nx-thing: yes\r\ntransfer-encoding: chunked\r\n"
    upload += b"connection: close\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    answer = asyncio.run(_ask(upload))
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n"), answer[:80]
    import json

    seen: dict[str, Any] = json.loads(_body(answer))
    assert seen == {"path": "/scope/a b", "raw": "/scope/a%20b", "query": "q=1&r=2", "x": "yes",
                    "client": "127.0.0.1", "body": "abcde", "method": "POST"}  # fmt: skip


def test_a_streamed_answer_is_chunked_and_keep_alive_serves_the_next_request() -> None:
    two = b"GET /stream HTTP/1.1\r\nhost: h\r\n\r\nGET /scope/x HTTP/1.1\r\nhost: h\r\nconnection: close\r\n\r\n"
    answer = asyncio.run(_ask(two))
    first, _, rest = answer.partition(b"0\r\n\r\n")
    assert b"transfer-encoding: chunked" in first and b"one " in first and b"three" in first
    assert rest.startswith(b"HTTP/1.1 200 OK") and b'"path":"/scope/x"' in rest


def test_a_head_request_gets_the_head_alone_and_the_connection_serves_the_next() -> None:
    two = b"HEAD /scope/x HTTP/1.1\r\nhost: h\r\n\r\nGET /scope/y HTTP/1.1\r\nhost: h\r\nconnection: close\r\n\r\n"
    answer = asyncio.run(_ask(two))
    first, _, rest = answer.partition(b"\r\n\r\n")
    assert first.startswith(b"HTTP/1.1 200 OK") and b"content-length: " in first  # what a GET's body would be
    assert rest.startswith(b"HTTP/1.1 200 OK") and b'"path":"/scope/y"' in rest  # no body came between


def test_an_app_that_fails_answers_500_and_closes_the_connection() -> None:
    answer = asyncio.run(_ask(b"GET /fail HTTP/1.1\r\nhost: h\r\n\r\nGET /scope/x HTTP/1.1\r\nhost: h\r\n\r\n"))
    assert answer.startswith(b"HTTP/1.1 500 Internal Server Error\r\n")
    assert answer.count(b"HTTP/1.1") == 1  # the connection closed: the second request is not served


def test_a_client_that_leaves_cancels_the_app_waiting_for_it() -> None:
    events.clear()
    asyncio.run(_ask(b"GET /wait HTTP/1.1\r\nhost: h\r\n\r\n", leave_after=0))
    assert events == ["waiting", "cancelled"]


def test_the_lifespan_runs_startup_before_and_shutdown_after() -> None:
    async def run() -> None:
        lifespan = Lifespan(APP)
        await lifespan.startup()
        assert events == ["startup"]
        await lifespan.shutdown()

    events.clear()
    asyncio.run(run())
    assert events == ["startup", "shutdown"]


def test_a_failing_startup_raises() -> None:
    @asynccontextmanager
    async def broken(app: Starlette) -> AsyncIterator[None]:
        raise ValueError("no database")
        yield

    with pytest.raises(RuntimeError, match="no database"):
        asyncio.run(Lifespan(Starlette(lifespan=broken)).startup())


def test_a_bare_app_that_fails_before_answering_gets_a_500_with_connection_close() -> None:
    async def bare(scope: Any, receive: Any, send: Any) -> None:
        raise RuntimeError("a bug before any answer")

    async def run() -> bytes:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        server, connections = await listener.serve(AsgiFront(bare, sock.getsockname()), sock)
        reader, writer = await asyncio.open_connection(*sock.getsockname())
        writer.write(b"GET / HTTP/1.1\r\nhost: h\r\n\r\nGET / HTTP/1.1\r\nhost: h\r\n\r\n")
        answer = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        await listener.close(server, connections, grace=1.0)
        return answer

    answer = asyncio.run(run())
    assert answer.startswith(b"HTTP/1.1 500 Internal Server Error\r\n") and b"connection: close" in answer
    assert answer.count(b"HTTP/1.1") == 1
