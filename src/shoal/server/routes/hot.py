"""The containers' hot routes (exchange, heartbeat) answered straight from ASGI, without Starlette's request,
middleware, router and response objects.

At thousands of containers these two are nearly every request the server gets, and in a profile of 10,000
simulated containers the generic stack around them (matching ~100 routes by regular expression, building a
``Request`` and a ``Response``, two middlewares) was most of the HTTP time (``bench/README.md``). Here a request
is matched by splitting its path, admitted by the same :class:`~shoal.server.auth.Authorizer`, decoded as its
typed message, and answered with the same error translation (:func:`~.http.answer_error`) as every other route.
Anything else goes on to the Starlette app.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ...protocol.messages import decode, encode
from ..auth import Denied
from .http import MSGPACK, WARNING_HEADER, ApiError, Router

HotHandler = Callable[[str, Any], Awaitable[Any]]
PREFIX = "/containers/"
_HEADERS = [(b"content-type", MSGPACK.encode())]


class HotRoutes:
    """ASGI middleware: ``POST /containers/{id}/{verb}`` for the verbs in ``router.hot_routes``, else ``app``."""

    def __init__(self, app: ASGIApp, router: Router) -> None:
        self.app = app
        self.router = router

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        found = self._match(scope)
        if found is None:
            await self.app(scope, receive, send)
            return
        container_id, (kind, handler) = found
        try:
            self._admit(scope, container_id)
            when_followed = scope.get("extensions", {}).get("shoal.when_followed")
            if when_followed is not None and self.router.release is not None:  # its next request came behind it
                when_followed(functools.partial(self.router.release, container_id))
            reply = await handler(container_id, decode(await self._body(scope, receive), kind))
        except Exception as exc:  # noqa: BLE001 - every error gets an answer, as on every route
            await self.router.failed(exc, scope["path"])(scope, receive, send)
            return
        body = encode(reply)
        headers = [*_HEADERS, (b"content-length", str(len(body)).encode())]
        if warning := self.router.warning():
            headers.append((WARNING_HEADER.encode(), warning.encode()))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    def _match(self, scope: Scope) -> tuple[str, tuple[type, HotHandler]] | None:
        if scope["type"] != "http" or scope["method"] != "POST":
            return None
        path: str = scope["path"]
        if not path.startswith(PREFIX):
            return None
        container_id, _, verb = path[len(PREFIX) :].partition("/")
        route = self.router.hot_routes.get(verb)
        return (container_id, route) if route is not None and container_id else None

    def _admit(self, scope: Scope, container_id: str) -> None:
        presented = ""
        for name, value in scope["headers"]:
            if name == b"authorization":
                presented = value.decode("latin-1").removeprefix("Bearer ").strip()
                break
        client = scope.get("client")
        try:
            self.router.authorizer.identify("container", presented, client[0] if client else "?", container_id)
        except Denied as exc:
            raise ApiError(exc.status, "AuthError", exc.message) from exc

    async def _body(self, scope: Scope, receive: Receive) -> bytes:
        for name, value in scope["headers"]:
            if name == b"content-length":
                self.router.check_length(int(value or 0))
        chunks: list[bytes] = []
        while True:
            message: Message = await receive()
            if message["type"] == "http.disconnect":
                raise ClientDisconnect()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                return b"".join(chunks)
