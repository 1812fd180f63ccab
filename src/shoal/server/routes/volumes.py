"""HTTP routes for Volumes (files travel as raw bytes)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ...protocol import routes
from ..errors import TooLarge
from .http import Router, field


def add_routes(r: Router) -> None:
    """Routes for Volumes."""
    volumes, body, route, max_body = r.plane.volumes, r.body, r.route, r.max_body

    @route(routes.VOLUMES, ["POST"], "caller")
    async def open_volume(request: Request) -> Response:
        b = await body(request)
        return JSONResponse({"name": volumes.open(field(b, "name", str, None), bool(b.get("create_if_missing")))})

    @route(routes.VOLUMES, ["GET"], "client")
    async def list_volumes(request: Request) -> Response:
        return JSONResponse({"volumes": volumes.names()})

    @route(routes.VOLUME_DELETE, ["POST"], "client")
    async def delete_volume(request: Request) -> Response:
        volumes.delete(request.path_params["name"])
        return JSONResponse({})

    @route(routes.VOLUME_LS, ["POST"], "caller")
    async def listdir(request: Request) -> Response:
        b = await body(request)
        entries = volumes.listdir(request.path_params["name"], field(b, "path", str, "/"), bool(b.get("recursive")))
        return JSONResponse({"entries": entries})

    @route(routes.VOLUME_FILE, ["GET", "PUT"], "caller")
    async def file(request: Request) -> Response:
        name, path = request.path_params["name"], request.query_params.get("path", "")
        if request.method == "GET":
            return Response(volumes.read(name, path), media_type="application/octet-stream")
        if int(request.headers.get("content-length") or 0) > max_body:
            raise TooLarge(f"a file over {max_body} bytes: upload it in parts or copy it onto the server's disk")
        volumes.write(name, path, await request.body())
        return JSONResponse({})

    @route(routes.VOLUME_RM, ["POST"], "caller")
    async def remove(request: Request) -> Response:
        b = await body(request)
        volumes.remove(request.path_params["name"], field(b, "path", str), bool(b.get("recursive")))
        return JSONResponse({})

    @route(routes.VOLUME_CP, ["POST"], "caller")
    async def copy(request: Request) -> Response:
        b = await body(request)
        volumes.copy(request.path_params["name"], field(b, "sources", list), field(b, "destination", str))
        return JSONResponse({})
