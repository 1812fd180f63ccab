"""Routes of containers: the client's view (list, stop, logs, exec) and the containers' own protocol."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ...protocol import routes
from ...protocol.messages import (
    Accepted,
    Command,
    CommandResult,
    ContainerBoot,
    ExchangeReply,
    ExchangeRequest,
    HeartbeatReply,
    HeartbeatRequest,
    ItemReport,
    StartedReport,
    WebReady,
)
from ..core.records import ContainerState
from ..errors import NotFound
from .http import Router, field, message, packed


def add_routes(r: Router) -> None:
    plane = r.plane

    @r.route(routes.CONTAINERS, ["GET"], "client")
    async def list_containers(request: Request) -> Response:
        include_stopped = request.query_params.get("all", "0") == "1"
        return JSONResponse({"containers": plane.list_containers(include_stopped)})

    @r.route(routes.CONTAINER_STOP, ["POST"], "client")
    async def stop_container(request: Request) -> Response:
        b = await r.body(request)
        await plane.stop_container(request.path_params["container_id"], bool(b.get("graceful")))
        return JSONResponse({})

    @r.route(routes.CONTAINER_LOGS, ["POST"], "client")
    async def container_logs(request: Request) -> Response:
        b = await r.body(request)
        cid = request.path_params["container_id"]
        found = plane.store.container_state(cid)
        if found is None:
            raise NotFound(cid)
        since = field(b, "since", int, 0)
        rows = plane.catalog.logs(None, cid, since)
        app_id = plane.container_app(cid)
        if not rows and app_id and found[1] != ContainerState.STOPPED:
            await plane.notifier.wait("logs:" + app_id, min(float(field(b, "wait", (int, float), 0)), 30.0))
            rows = plane.catalog.logs(None, cid, since)
        state = plane.store.container_state(cid)
        return packed({"logs": [list(r) for r in rows], "state": state[1].value if state else "STOPPED"})

    @r.route(routes.CONTAINER_EXEC, ["POST"], "client")
    async def exec_in_container(request: Request) -> Response:
        command = await r.typed(request, Command)
        return message(await plane.run_command(request.path_params["container_id"], command))

    @r.route(routes.CONTAINER_RAN, ["POST"], "container")
    async def command_ended(request: Request) -> Response:
        result = await r.typed(request, CommandResult)
        plane.command_ended(request.path_params["container_id"], result)
        return packed({})

    @r.route(routes.CONTAINER_BOOT, ["GET"], "container")
    async def container_spec(request: Request) -> Response:
        cid = request.path_params["container_id"]
        found = plane.store.container_state(cid)
        if found is None:
            raise NotFound(cid)
        fn = plane.store.function(found[0])
        assert fn is not None
        secret_env = plane.secrets.env(fn.spec.secrets)
        plane.container_booted(cid)
        return message(ContainerBoot(fn.id, fn.app_id, fn.tag, fn.spec, fn.pickled, secret_env))

    @r.route(routes.CONTAINER_STARTED, ["POST"], "container")
    async def container_started(request: Request) -> Response:
        report = await r.typed(request, StartedReport)
        plane.container_started(request.path_params["container_id"], report.error, report.fatal)
        return packed({})

    @r.hot(routes.CONTAINER_EXCHANGE, ExchangeRequest)
    async def exchange(container_id: str, request: ExchangeRequest) -> ExchangeReply:
        return await plane.exchange(container_id, request)

    @r.route(routes.CONTAINER_ITEMS, ["POST"], "container")
    async def container_items(request: Request) -> Response:
        item = await r.typed(request, ItemReport)
        return message(Accepted(plane.add_item(request.path_params["container_id"], item)))

    @r.route(routes.CONTAINER_WEB, ["POST"], "container")
    async def web_ready(request: Request) -> Response:
        ready = await r.typed(request, WebReady)
        plane.web_ready(request.path_params["container_id"], ready.host, ready.port)
        return packed({})

    @r.hot(routes.CONTAINER_HEARTBEAT, HeartbeatRequest)
    async def heartbeat(container_id: str, beat: HeartbeatRequest) -> HeartbeatReply:
        return await plane.heartbeat(container_id, beat.logs, beat.wait)
