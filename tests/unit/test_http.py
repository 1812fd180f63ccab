"""Shoal's own HTTP client: a connection the server dropped is a transport error the caller retries, never
another exception."""

from __future__ import annotations

import asyncio

import pytest

from shoal._http import AsyncHTTP, TransportError


class ClosedWriter:
    """A stream writer whose connection the server already closed, as uvloop reports it."""

    def write(self, data: bytes) -> None:
        raise RuntimeError("unable to perform operation on <TCPTransport closed=True>; the handler is closed")

    def close(self) -> None:
        pass


def test_a_write_to_a_connection_the_server_closed_is_a_transport_error():
    async def scenario() -> None:
        http = AsyncHTTP("http://127.0.0.1:9", {})

        async def connect() -> tuple[object, object]:
            return object(), ClosedWriter()

        http._connect = connect  # type: ignore[method-assign]
        with pytest.raises(TransportError, match="handler is closed"):
            await http.request("GET", "/x")

    asyncio.run(scenario())


def test_another_runtime_error_is_not_taken_for_a_dropped_connection():
    async def scenario() -> None:
        http = AsyncHTTP("http://127.0.0.1:9", {})

        class Broken(ClosedWriter):
            def write(self, data: bytes) -> None:
                raise RuntimeError("a bug")

        async def connect() -> tuple[object, object]:
            return object(), Broken()

        http._connect = connect  # type: ignore[method-assign]
        with pytest.raises(RuntimeError, match="a bug"):
            await http.request("GET", "/x")

    asyncio.run(scenario())
