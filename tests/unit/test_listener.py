"""The gateway's HTTP/1.1 front (server/listener.py) on a real loopback socket: framing, pipelining, streamed
bodies, malformed requests, and a client that leaves mid-request."""

from __future__ import annotations

import asyncio
import socket

from shoal.server import listener


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
