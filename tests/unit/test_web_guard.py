"""A web container's app answers only requests that carry the gateway's key for that container
(``container/web.py``'s ``only_from_gateway``), with a stand-in ASGI app: no server, no sockets."""

from __future__ import annotations

import asyncio
from typing import Any

from shoal.container.web import only_from_gateway

KEY = "k" * 40


def _ask(headers: list[tuple[bytes, bytes]], kind: str = "http") -> tuple[list[dict[str, Any]], list[Any]]:
    """(what the guarded app sent back, the headers the inner app saw)."""
    sent: list[dict[str, Any]] = []
    seen: list[Any] = []

    async def inner(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.append(scope["headers"])
        await send({"type": "http.response.start", "status": 200, "headers": []})

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(only_from_gateway(inner, KEY)({"type": kind, "headers": headers}, receive, send))
    return sent, seen


def test_a_request_without_the_gateways_key_is_refused_before_the_app_sees_it():
    sent, seen = _ask([(b"host", b"x")])
    assert sent[0]["status"] == 403 and b"gateway" in sent[1]["body"] and seen == []
    sent, seen = _ask([(b"x-shoal-gateway-key", b"wrong")])
    assert sent[0]["status"] == 403 and seen == []


def test_the_gateways_request_reaches_the_app_without_the_key():
    sent, seen = _ask([(b"x-shoal-gateway-key", KEY.encode()), (b"host", b"x")])
    assert sent[0]["status"] == 200 and seen == [[(b"host", b"x")]]


def test_a_websocket_without_the_key_is_closed_before_it_opens():
    sent, seen = _ask([], kind="websocket")
    assert sent == [{"type": "websocket.close", "code": 1008}] and seen == []
