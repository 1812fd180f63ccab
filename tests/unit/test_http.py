"""Shoal's own HTTP client: a connection the server dropped is a transport error the caller retries, never
another exception."""

from __future__ import annotations

import asyncio

import pytest

from shoal._http import AsyncHTTP, TransportError, _Conn

DROPPED = "unable to perform operation on <TCPTransport closed=True>; the handler is closed"  # uvloop's words


class FailingWriter:
    """A stream writer whose every write fails with ``message`` (as uvloop's does on a closed connection)."""

    def __init__(self, message: str) -> None:
        self.message = message

    def write(self, data: bytes) -> None:
        raise RuntimeError(self.message)

    def close(self) -> None:
        pass


def request_through(writer: FailingWriter) -> None:
    """One request whose connection writes through ``writer``."""

    async def scenario() -> None:
        http = AsyncHTTP("http://127.0.0.1:9", {})

        async def connect() -> _Conn:
            return _Conn(object(), writer)  # type: ignore[arg-type]

        http._connect = connect  # type: ignore[method-assign]
        await http.request("GET", "/x")

    asyncio.run(scenario())


def test_a_write_to_a_connection_the_server_closed_is_a_transport_error():
    with pytest.raises(TransportError, match="handler is closed"):
        request_through(FailingWriter(DROPPED))


def test_another_runtime_error_is_not_taken_for_a_dropped_connection():
    with pytest.raises(RuntimeError, match="a bug"):
        request_through(FailingWriter("a bug"))
