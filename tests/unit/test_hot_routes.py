"""The containers' hot routes (routes/hot.py): answered without Starlette, with the same admission, typed
messages and error answers as every other route; anything else reaches the Starlette app."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import httpx
import msgpack
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from shoal.protocol.messages import HeartbeatReply, HeartbeatRequest, decode, encode
from shoal.server.auth import Authorizer, ContainerKeys
from shoal.server.routes.hot import HotRoutes
from shoal.server.routes.http import Router, merge_by_path


def _app() -> tuple[Any, str, list[tuple[str, HeartbeatRequest]]]:
    keys = ContainerKeys(b"k" * 32)
    authorizer = Authorizer("admin", keys, SimpleNamespace(identify=lambda *a: None))  # type: ignore[arg-type]
    config = SimpleNamespace(max_payload_bytes=1024, rate_limit=100.0)
    plane = SimpleNamespace(
        config=config, authorizer=authorizer, disk_full_at=float("-inf"), release_held=lambda container_id: None
    )
    router = Router(plane)  # type: ignore[arg-type]
    beats: list[tuple[str, HeartbeatRequest]] = []

    @router.hot("/containers/{container_id}/heartbeat", HeartbeatRequest)
    async def heartbeat(container_id: str, beat: HeartbeatRequest) -> HeartbeatReply:
        beats.append((container_id, beat))
        return HeartbeatReply(stop=False)

    other = Route("/other", lambda request: PlainTextResponse("starlette"), methods=["GET"])
    app = HotRoutes(Starlette(routes=[*merge_by_path(router.routes), other]), router)
    return app, keys.mint("ta-1"), beats


def _send(app: Any, method: str, path: str, body: bytes = b"", token: str = "") -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            headers = {"authorization": f"Bearer {token}", "content-type": "application/msgpack"}
            return await client.request(method, path, content=body, headers=headers)

    return asyncio.run(go())


def test_a_beat_of_its_own_container_is_answered_as_a_typed_message():
    app, token, beats = _app()
    resp = _send(app, "POST", "/containers/ta-1/heartbeat", encode(HeartbeatRequest(wait=0.0)), token)
    assert resp.status_code == 200 and resp.headers["content-type"] == "application/msgpack"
    assert decode(resp.content, HeartbeatReply) == HeartbeatReply(stop=False)
    assert beats == [("ta-1", HeartbeatRequest(wait=0.0))]


def test_other_containers_forged_tokens_and_bad_bodies_get_the_usual_errors():
    app, token, beats = _app()
    other = _send(app, "POST", "/containers/ta-2/heartbeat", encode(HeartbeatRequest()), token)
    assert other.status_code == 403 and other.json()["error"]["type"] == "AuthError"
    forged = _send(app, "POST", "/containers/ta-1/heartbeat", encode(HeartbeatRequest()), token[:-2] + "00")
    assert forged.status_code == 401
    malformed = _send(app, "POST", "/containers/ta-1/heartbeat", msgpack.packb({"wait": "soon"}), token)
    assert malformed.status_code == 400 and malformed.json()["error"]["type"] == "InvalidError"
    too_big = _send(app, "POST", "/containers/ta-1/heartbeat", b"x" * (2 << 20), token)
    assert too_big.status_code == 413
    assert beats == []


def test_other_methods_and_paths_go_on_to_starlette():
    app, token, _ = _app()
    assert _send(app, "GET", "/containers/ta-1/heartbeat", token=token).status_code == 405  # its route lists POST
    assert _send(app, "GET", "/other").text == "starlette"
    assert _send(app, "POST", "/containers/ta-1/nothing", token=token).status_code == 404
