"""Public, storage and administration routes: health, the OpenAPI document, blobs, secrets, tokens."""

from __future__ import annotations

import asyncio

from msgspec.structs import asdict
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response

from ... import __version__
from ...protocol import routes
from ...protocol.messages import ImageBuildReply, ImageBuildRequest
from ..blobs import BlobWriter
from ..openapi import schema as openapi_schema
from .http import ApiError, Router, field, message

SEND_WHOLE = 8 * 1024 * 1024  # bytes: a larger blob is streamed to and from its file
WRITE_EVERY = 4 * 1024 * 1024  # bytes of a blob's body received before they go to its file (on a thread)


async def receive_blob(request: Request, writer: BlobWriter, limit: int) -> None:
    """Write a request's body to a blob (hashing and writing on a thread, not the event loop): a small one whole,
    a large one as it arrives, so the server never holds it all."""
    try:
        if int(request.headers.get("content-length") or 0) <= SEND_WHOLE:
            last = [await request.body()]
        else:
            last = await _write_as_it_comes(request, writer, limit)
    except BaseException:
        writer.abort()
        raise
    await asyncio.to_thread(writer.finish, last)


async def _write_as_it_comes(request: Request, writer: BlobWriter, limit: int) -> list[bytes]:
    """Hand the body to ``writer`` every ``WRITE_EVERY`` bytes; returns the pieces received since the last."""
    pieces: list[bytes] = []
    pending = total = 0
    async for piece in request.stream():
        pieces.append(piece)
        pending += len(piece)
        total += len(piece)
        if total > limit:
            raise ApiError(413, "RequestSizeError", f"blob over the limit of {limit} bytes")
        if pending >= WRITE_EVERY:
            await asyncio.to_thread(writer.write, pieces)
            pieces, pending = [], 0
    return pieces


def add_routes(r: Router) -> None:
    plane = r.plane

    @r.route(routes.SERVER, ["GET"], "client")
    async def server_info(request: Request) -> Response:
        backend = plane.backend
        info = {"version": __version__, "backend": type(backend).__name__, **asdict(backend.capabilities()),
                "waiting_for_capacity": len(backend.waiting()), "demand": plane.demand(), "usage": backend.usage(),
                "store": plane.store.describe(), "heartbeats": plane.liveness.beats,
                "beats_released": plane.beats_released, "trouble": backend.trouble()}  # fmt: skip
        return JSONResponse(info)

    @r.route(routes.IMAGES, ["POST"], "client")
    async def build_image(request: Request) -> Response:
        ask = await r.typed(request, ImageBuildRequest)
        build, lines = await plane.images.follow(ask.image, ask.since, ask.wait)
        return message(ImageBuildReply(build.state, lines, build.error))

    @r.route(routes.HEALTH, ["GET"], "public")
    async def health(request: Request) -> Response:
        return JSONResponse({"ok": True, "version": __version__})

    @r.route(routes.OPENAPI, ["GET"], "public")
    async def openapi(request: Request) -> Response:
        return JSONResponse(openapi_schema())

    @r.route(routes.BLOB, ["PUT"], "caller")
    async def put_blob(request: Request) -> Response:
        blob_id = request.path_params["blob_id"]
        if not plane.blobs.valid_id(blob_id):
            raise ApiError(400, "InvalidError", "a blob id is the sha256 hex digest of its content")
        length = int(request.headers.get("content-length") or 0)
        if length > r.max_body:
            raise ApiError(413, "RequestSizeError", f"blob of {length} bytes is over the limit of {r.max_body}")
        await receive_blob(request, plane.blobs.writer(blob_id), r.max_body)
        if request.query_params.get("payload") == "1":
            plane.payload_uploaded(blob_id)
        return JSONResponse({})

    @r.route(routes.BLOB, ["GET", "HEAD"], "caller")
    async def get_blob(request: Request) -> Response:
        blob_id = request.path_params["blob_id"]
        if not plane.blobs.valid_id(blob_id) or not plane.blobs.exists(blob_id):
            raise ApiError(404, "NotFoundError", f"no blob {blob_id!r}")
        if request.method == "HEAD":
            plane.blobs.touch(blob_id)  # asked for: a client is about to name it in an input (blobs.remove_unused)
            return Response(b"")
        if plane.blobs.size(blob_id) > SEND_WHOLE:  # streamed from its file: the server never holds it whole
            return FileResponse(plane.blobs.path(blob_id), media_type="application/octet-stream")
        data = await asyncio.to_thread(plane.blobs.get, blob_id)  # read off the event loop
        return Response(data, media_type="application/octet-stream")

    @r.route(routes.SECRETS, ["POST"], "client")
    async def create_secret(request: Request) -> Response:
        b = await r.body(request)
        name, values = field(b, "name", str, None), field(b, "values", dict)
        secret_id = plane.secrets.put(name, values, bool(field(b, "overwrite", bool, False)))
        return JSONResponse({"secret_id": secret_id})

    @r.route(routes.SECRETS, ["GET"], "client")
    async def list_secrets(request: Request) -> Response:
        return JSONResponse({"secrets": plane.secrets.list()})  # names and keys, never values

    @r.route(routes.SECRET_DELETE, ["POST"], "client")
    async def delete_secret(request: Request) -> Response:
        plane.secrets.delete(request.path_params["name"])
        return JSONResponse({})

    @r.route(routes.TOKENS, ["POST"], "admin")
    async def create_token(request: Request) -> Response:
        b = await r.body(request)
        if not plane.config.client_token:
            raise ApiError(403, "AuthError", "issuing tokens needs a server started with its own token "
                           "(`shoal server --token ...` or SHOAL_TOKEN); without one, only this home's clients "
                           "get in")  # fmt: skip
        return JSONResponse({"token": r.registry.create(field(b, "name", str))})

    @r.route(routes.TOKENS, ["GET"], "admin")
    async def list_tokens(request: Request) -> Response:
        return JSONResponse({"tokens": r.registry.list()})

    @r.route(routes.TOKEN_REVOKE, ["POST"], "admin")
    async def revoke_token(request: Request) -> Response:
        r.registry.revoke(request.path_params["name"])
        return JSONResponse({})
