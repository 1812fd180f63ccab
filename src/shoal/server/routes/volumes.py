"""HTTP routes for Volumes (files travel as raw bytes)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ...protocol import routes
from ..auth import container_of
from ..errors import Forbidden, TooLarge
from ..store import Store
from .http import Router, field


def check_mount(store: Store, request: Request, name: str | None, write: bool) -> None:
    """A container reaches only the volumes its function mounts, and writes only those mounted read-write;
    clients (people, scripts) reach every volume. Raises Forbidden."""
    container_id = container_of(getattr(request.state, "identity", ""))
    if container_id is None:
        return
    found = store.container_state(container_id)
    fn = store.function(found[0]) if found else None
    mounts = {m.volume: m.read_only for m in fn.spec.volumes} if fn else {}
    if name not in mounts:
        raise Forbidden(f"this container's function does not mount volume {name!r}: mount it with volumes={{...}}")
    if write and mounts[name]:
        raise Forbidden(f"volume {name!r} is mounted read-only in this container")


def add_routes(r: Router) -> None:
    """Routes for Volumes."""
    volumes, body, route, max_body = r.plane.volumes, r.body, r.route, r.max_body
    store = r.plane.store

    @route(routes.VOLUMES, ["POST"], "caller")
    async def open_volume(request: Request) -> Response:
        b = await body(request)
        name = field(b, "name", str, None)
        check_mount(store, request, name, write=False)
        return JSONResponse({"name": volumes.open(name, bool(b.get("create_if_missing")))})

    @route(routes.VOLUMES, ["GET"], "client")
    async def list_volumes(request: Request) -> Response:
        return JSONResponse({"volumes": volumes.names()})

    @route(routes.VOLUME_DELETE, ["POST"], "client")
    async def delete_volume(request: Request) -> Response:
        volumes.delete(request.path_params["name"])
        return JSONResponse({})

    @route(routes.VOLUME_LS, ["POST"], "caller")
    async def listdir(request: Request) -> Response:
        check_mount(store, request, request.path_params["name"], write=False)
        b = await body(request)
        entries = volumes.listdir(request.path_params["name"], field(b, "path", str, "/"), bool(b.get("recursive")))
        return JSONResponse({"entries": entries})

    @route(routes.VOLUME_FILE, ["GET", "PUT"], "caller")
    async def file(request: Request) -> Response:
        name, path = request.path_params["name"], request.query_params.get("path", "")
        check_mount(store, request, name, write=request.method == "PUT")
        if request.method == "GET":
            return Response(volumes.read(name, path), media_type="application/octet-stream")
        if int(request.headers.get("content-length") or 0) > max_body:
            raise TooLarge(f"a file over {max_body} bytes: upload it in parts or copy it onto the server's disk")
        upload, size = volumes.upload(name, path), 0
        try:
            async for chunk in request.stream():  # to disk as it comes: memory stays flat
                size += len(chunk)
                if size > max_body:
                    raise TooLarge(f"a file over {max_body} bytes: upload it in parts")
                upload.write(chunk)
        except BaseException:
            upload.abort()
            raise
        upload.commit()
        return JSONResponse({})

    @route(routes.VOLUME_RM, ["POST"], "caller")
    async def remove(request: Request) -> Response:
        check_mount(store, request, request.path_params["name"], write=True)
        b = await body(request)
        volumes.remove(request.path_params["name"], field(b, "path", str), bool(b.get("recursive")))
        return JSONResponse({})

    @route(routes.VOLUME_CP, ["POST"], "caller")
    async def copy(request: Request) -> Response:
        check_mount(store, request, request.path_params["name"], write=True)
        b = await body(request)
        volumes.copy(request.path_params["name"], field(b, "sources", list), field(b, "destination", str))
        return JSONResponse({})
