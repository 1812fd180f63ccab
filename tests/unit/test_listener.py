"""The gateway's HTTP/1.1 front (server/listener.py) on a real loopback socket: framing, pipelining, streamed
bodies, malformed requests, and a client that leaves mid-request."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from typing import Any

from shoal.server import listener
from shoal.server.http_limits import IdleConnections


async def _echo(request: listener.Request, reply: listener.Reply) -> None:
    """Answers with the method, target and body; ``/unframed`` without a content-length, ``/wait`` never."""
    body = b"".join([chunk async for chunk in request.body()])
    if request.path == "/wait":
        await asyncio.Event().wait()
    text = b"%s %s %s" % (request.method.encode(), request.target, body)
    if request.path == "/unframed":
        reply.start(200, [])
        await reply.send(text[:3])
        reply.end(text[3:])
    else:
        reply.start(200, [(b"content-length", b"%d" % len(text))])
        reply.end(text)


async def _exchange(handler: listener.Handler, data: bytes, read_until_close: bool = True) -> bytes:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server, connections = await listener.serve(handler, sock)
    reader, writer = await asyncio.open_connection(*sock.getsockname())
    writer.write(data)
    answer = await asyncio.wait_for(reader.read() if read_until_close else reader.read(65536), 10)
    writer.close()
    await listener.close(server, connections, grace=1.0)
    return answer


def test_pipelined_requests_are_answered_in_order_on_one_connection() -> None:
    data = b"GET /a?x=1 HTTP/1.1\r\nhost: h\r\n\r\nPOST /b HTTP/1.1\r\nhost: h\r\ncontent-length: 3\r\n\r\nxyz"
    data += b"GET /c HTTP/1.1\r\nhost: h\r\nconnection: close\r\n\r\n"
    answer = asyncio.run(_exchange(_echo, data))
    assert answer.count(b"HTTP/1.1 200 OK") == 3
    assert answer.index(b"GET /a?x=1 ") < answer.index(b"POST /b xyz") < answer.index(b"GET /c ")
    assert answer.rstrip().endswith(b"GET /c")  # and the server closed the connection as asked


def test_a_chunked_upload_streams_in_and_an_unframed_answer_is_chunked_for_http11_and_closed_for_http10() -> None:
    upload = b"POST /unframed HTTP/1.1\r\nhost: h\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"
    upload += b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    answer = asyncio.run(_exchange(_echo, upload))
    assert b"transfer-encoding: chunked" in answer and answer.endswith(b"0\r\n\r\n")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert body == b"3\r\nPOS\r\n11\r\nT /unframed abcde\r\n0\r\n\r\n"
    old = asyncio.run(_exchange(_echo, b"GET /unframed HTTP/1.0\r\n\r\n"))
    assert b"connection: close" in old and old.endswith(b"\r\n\r\nGET /unframed ")


def test_a_malformed_request_gets_400_and_the_connection_closes() -> None:
    answer = asyncio.run(_exchange(_echo, b"NOT HTTP AT ALL\r\n\r\n"))
    assert answer.startswith(b"HTTP/1.1 400 Bad Request")


def test_a_client_that_leaves_cancels_the_request_it_waited_for() -> None:
    cancelled = asyncio.Event()

    async def handler(request: listener.Request, reply: listener.Reply) -> None:
        try:
            await _echo(request, reply)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async def scenario() -> None:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        server, connections = await listener.serve(handler, sock)
        _, writer = await asyncio.open_connection(*sock.getsockname())
        writer.write(b"GET /wait HTTP/1.1\r\nhost: h\r\n\r\n")
        await writer.drain()
        while not any(c.task for c in connections):
            await asyncio.sleep(0.01)
        writer.close()
        await asyncio.wait_for(cancelled.wait(), 10)
        await listener.close(server, connections, grace=1.0)

    asyncio.run(scenario())


async def _send_slowly(pieces: list[bytes], budget: object | None = None) -> bytes:
    """Send ``pieces`` one by one (a client that trickles), and read until the server closes the connection."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server, connections = await listener.serve(_echo, sock, budget)  # type: ignore[arg-type]
    reader, writer = await asyncio.open_connection(*sock.getsockname())
    try:
        for piece in pieces:
            writer.write(piece)
            await writer.drain()
        return await asyncio.wait_for(reader.read(), 10)
    except ConnectionError:
        return b"reset"
    finally:
        writer.close()
        await listener.close(server, connections, grace=1.0)


def test_a_head_over_64_kib_or_100_headers_gets_431_before_it_is_held_whole() -> None:
    head = b"GET / HTTP/1.1\r\nhost: h\r\nx-big: "
    answer = asyncio.run(_send_slowly([head] + [b"a" * 65536] * 4))  # an endless header line
    assert answer.startswith(b"HTTP/1.1 431 ")
    many = b"GET / HTTP/1.1\r\n" + b"".join(b"x-%d: 1\r\n" % i for i in range(150)) + b"\r\n"
    assert asyncio.run(_send_slowly([many])).startswith(b"HTTP/1.1 431 ")
    normal = b"GET / HTTP/1.1\r\nhost: h\r\nx-ok: " + b"a" * 8000 + b"\r\nconnection: close\r\n\r\n"
    assert asyncio.run(_send_slowly([normal])).startswith(b"HTTP/1.1 200 ")


def test_a_head_or_body_that_trickles_past_its_time_gets_408(monkeypatch) -> None:  # noqa: ANN001
    from shoal.server import http_limits

    monkeypatch.setattr(http_limits, "HEAD_TIMEOUT", 0.3)
    monkeypatch.setattr(http_limits, "BODY_IDLE_TIMEOUT", 0.3)
    assert asyncio.run(_send_slowly([b"GET / HTTP/1.1\r\nhost"])).startswith(b"HTTP/1.1 408 ")
    stalled = b"POST / HTTP/1.1\r\nhost: h\r\ncontent-length: 10\r\n\r\nabc"
    assert asyncio.run(_send_slowly([stalled])).startswith(b"HTTP/1.1 408 ")


def test_endpoint_ports_share_a_connection_budget() -> None:
    from shoal.server.http_limits import ConnectionBudget

    async def main() -> list[bytes]:
        budget = ConnectionBudget(limit=2)
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        server, connections = await listener.serve(_echo, sock, budget)
        held = [await asyncio.open_connection(*sock.getsockname()) for _ in range(2)]
        reader, writer = await asyncio.open_connection(*sock.getsockname())  # over the budget: closed at once
        writer.write(b"GET / HTTP/1.1\r\nhost: h\r\n\r\n")
        refused = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        for _, w in held:
            w.close()
        await listener.close(server, connections, grace=1.0)
        return [refused, str(budget.open).encode()]

    refused, _ = asyncio.run(main())
    assert refused == b""


def test_near_the_file_limit_the_oldest_idle_connection_closes_to_make_room_and_a_busy_one_stays() -> None:
    """Three clients over a high water mark of two: the new one is accepted, the one idle longest is closed, the
    one whose request is in flight is kept; the closed client's next request, on a new connection, is answered."""

    async def scenario() -> None:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        idle = IdleConnections(high_water=2)
        server, connections = await listener.serve(_echo, sock, idle=idle)
        address = sock.getsockname()
        old_reader, old_writer = await asyncio.open_connection(*address)
        old_writer.write(b"GET /first HTTP/1.1\r\nhost: h\r\n\r\n")
        assert b"GET /first" in await asyncio.wait_for(old_reader.read(65536), 10)  # answered: now idle
        _, busy_writer = await asyncio.open_connection(*address)
        busy_writer.write(b"GET /wait HTTP/1.1\r\nhost: h\r\n\r\n")  # in flight until the end
        await busy_writer.drain()
        while not any(c.task for c in connections):
            await asyncio.sleep(0.01)
        new_reader, new_writer = await asyncio.open_connection(*address)  # the third: over the mark
        new_writer.write(b"GET /new HTTP/1.1\r\nhost: h\r\n\r\n")
        assert b"GET /new" in await asyncio.wait_for(new_reader.read(65536), 10)
        assert await asyncio.wait_for(old_reader.read(), 10) == b""  # the idle one was closed by the server
        assert idle.reclaimed == 1 and any(c.task for c in connections)  # the busy one still waits
        again_reader, again_writer = await asyncio.open_connection(*address)
        again_writer.write(b"GET /again HTTP/1.1\r\nhost: h\r\nconnection: close\r\n\r\n")
        assert b"GET /again" in await asyncio.wait_for(again_reader.read(), 10)
        for writer in (old_writer, busy_writer, new_writer, again_writer):
            writer.close()
        await listener.close(server, connections, grace=0.1)

    asyncio.run(scenario())


async def _hold_then_follow(on_hold: Callable[[listener.Request], Awaitable[None]]) -> tuple[Any, ...]:
    """A server whose ``/hold`` runs ``on_hold`` before it answers; a client that sends a releasable ``/hold``,
    waits until the server holds it, then sends ``/exchange`` (which finds no idle connection). Returns the
    client, the held request's future, the exchange's answer, and the server with its connections."""
    from shoal._http import AsyncHTTP

    async def handler(request: listener.Request, reply: listener.Reply) -> None:
        body = b"".join([chunk async for chunk in request.body()])
        if request.path == "/hold":
            await on_hold(request)
        text = b"%s %s" % (request.target, body)
        reply.start(200, [(b"content-length", b"%d" % len(text))])
        reply.end(text)

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server, connections = await listener.serve(handler, sock)
    http = AsyncHTTP("http://{}:{}".format(*sock.getsockname()), {}, timeout=20)
    held = asyncio.ensure_future(http.request("POST", "/hold", b"beat", releasable=True))
    while not any(c.task for c in connections):
        await asyncio.sleep(0.01)
    exchange = await asyncio.wait_for(http.request("POST", "/exchange", b"report"), 10)
    return http, held, exchange, server, connections


def test_a_held_request_is_released_by_the_request_pipelined_behind_it_and_both_share_one_connection() -> None:
    """The client side (``_http.AsyncHTTP``) and the server side (``Request.when_followed``) of a container's held
    beat: a second request finds no idle connection, goes behind the releasable one, which the server answers at
    once; both answers arrive in order on the one connection, which is then idle for the next request."""

    async def released(request: listener.Request) -> None:
        followed = asyncio.Event()
        request.when_followed(followed.set)
        await asyncio.wait_for(followed.wait(), 30)  # held until another request follows it

    async def scenario() -> None:
        http, held, exchange, server, connections = await _hold_then_follow(released)
        assert exchange.content == b"/exchange report"
        assert (await asyncio.wait_for(held, 10)).content == b"/hold beat"
        assert http.connects == 1 and len(connections) == 1
        assert (await http.request("GET", "/next")).content == b"/next " and http.connects == 1
        await http.aclose()
        await listener.close(server, connections, grace=0.1)

    asyncio.run(scenario())


def test_a_request_pipelined_behind_one_whose_connection_breaks_is_sent_again_on_a_fresh_one() -> None:
    """The server drops the connection of the held request instead of answering: the request behind it was never
    answered, so it goes again on a new connection and gets its answer; the held one fails as a transport error."""
    from shoal._http import TransportError

    async def dropped(request: listener.Request) -> None:
        request.when_followed(request.connection.close)
        await asyncio.Event().wait()

    async def scenario() -> None:
        http, held, exchange, server, connections = await _hold_then_follow(dropped)
        assert exchange.content == b"/exchange report" and http.connects == 2
        try:
            await asyncio.wait_for(held, 10)
            raise AssertionError("the held request had no answer to give")
        except TransportError:
            pass
        await http.aclose()
        await listener.close(server, connections, grace=0.1)

    asyncio.run(scenario())
