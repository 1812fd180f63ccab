"""Routes of apps: create, deploy, look up, list, follow logs, stop; and registering their functions."""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ...protocol import routes
from ...protocol.specs import decode_spec
from ..core.records import LogFilter
from ..errors import Conflict, Invalid, NotFound
from .calls import call_summary
from .http import ApiError, Router, field, packed


def add_routes(r: Router) -> None:
    plane = r.plane

    @r.route(routes.APPS, ["POST"], "client")
    async def create_app_route(request: Request) -> Response:
        b = await r.body(request)
        return JSONResponse({"app_id": plane.create_app(field(b, "name", str), field(b, "mode", str, "ephemeral"))})

    @r.route(routes.APPS, ["GET"], "client")
    async def list_apps(request: Request) -> Response:
        include_stopped = request.query_params.get("all", "1") != "0"
        apps = plane.catalog.list_apps(include_stopped)
        for a in apps:
            a["schedules"] = plane.schedules.of_app(a["app_id"])
        return JSONResponse({"apps": apps})

    @r.route(routes.APP, ["GET"], "client")
    async def get_app(request: Request) -> Response:
        return JSONResponse(r.find_app(request.path_params["ref"]))

    @r.route(routes.DEPLOY, ["POST"], "client")
    async def deploy(request: Request) -> Response:
        b = await r.body(request)
        app_id, version = plane.begin_deploy(field(b, "name", str))
        return JSONResponse({"app_id": app_id, "version": version})

    @r.route(routes.APP_DEPLOYED, ["POST"], "client")
    async def deployed(request: Request) -> Response:
        b = await r.body(request)
        functions = field(b, "functions", dict)
        plane.catalog.finish_deployment(request.path_params["ref"], field(b, "version", int), functions)
        plane.schedules.keep_only(request.path_params["ref"], {str(f) for f in functions.values()})
        replaced = 0
        if field(b, "strategy", str, "rolling") == "recreate":  # the old version's containers go now
            replaced = await plane.roll_over(
                request.path_params["ref"], "recreate", {str(f) for f in functions.values()}
            )
        return JSONResponse({"replaced": replaced})

    @r.route(routes.APP_ROLLOVER, ["POST"], "client")
    async def rollover(request: Request) -> Response:
        app = r.find_app(request.path_params["ref"])
        if app["mode"] != "deployed":
            raise Conflict(f"app {app['name']!r} is not deployed: only a deployed app rolls over")
        b = await r.body(request)
        return JSONResponse({"replaced": await plane.roll_over(app["app_id"], field(b, "strategy", str, "rolling"))})

    @r.route(routes.APP_HISTORY, ["GET"], "client")
    async def app_history(request: Request) -> Response:
        app = r.find_app(request.path_params["ref"])
        return JSONResponse({"app": app, "history": plane.catalog.history(app["app_id"])})

    @r.route(routes.APP_HEARTBEAT, ["POST"], "client")
    async def app_heartbeat(request: Request) -> Response:
        plane.catalog.touch_client(request.path_params["ref"])
        return JSONResponse({"state": plane.store.app_state(request.path_params["ref"])})

    @r.route(routes.APP_DETACH, ["POST"], "client")
    async def app_detach(request: Request) -> Response:
        plane.detach(request.path_params["ref"])
        return JSONResponse({})

    @r.route(routes.APP_FUNCTIONS, ["GET"], "client")
    async def app_functions(request: Request) -> Response:
        app = r.find_app(request.path_params["ref"])
        return JSONResponse({"app": app, "functions": plane.catalog.functions_of(app["app_id"])})

    @r.route(routes.APP_FUNCTION_CALLS, ["GET"], "client")
    async def function_calls(request: Request) -> Response:
        app = r.find_app(request.path_params["ref"])
        ids = plane.catalog.calls_of_function(app["app_id"], request.path_params["tag"])
        return JSONResponse({"calls": [msgspec.to_builtins(call_summary(plane, i)) for i in ids]})

    @r.route(routes.APP_CALLS, ["GET"], "client")
    async def app_calls(request: Request) -> Response:
        app = r.find_app(request.path_params["ref"])
        ids = plane.store.insights.calls_of_app(app["app_id"], 50)
        return JSONResponse({"calls": [msgspec.to_builtins(call_summary(plane, i)) for i in ids]})

    @r.route(routes.APP_FUNCTIONS, ["POST"], "client")
    async def create_function(request: Request) -> Response:
        b = await r.body(request)
        if plane.store.app_state(request.path_params["ref"]) is None:
            raise NotFound(request.path_params["ref"])
        fid = plane.create_function(
            request.path_params["ref"], field(b, "tag", str), decode_spec(field(b, "spec", dict)),
            field(b, "pickled", bytes, None),
        )  # fmt: skip
        return JSONResponse({"function_id": fid, "web_url": await plane.expose(fid)})

    @r.route(routes.APP_FUNCTION, ["GET"], "caller")
    async def function_by_tag(request: Request) -> Response:
        app = r.find_app(request.path_params["ref"])
        tag = request.path_params["tag"]
        if app["state"] == "DEPLOYING":
            raise ApiError(404, "NotFoundError", f"app {app['name']!r} has no finished deployment yet (one is under "
                                                 "way, or was cut off): deploy it again")  # fmt: skip
        if app["state"] != "RUNNING":
            raise ApiError(404, "NotFoundError", f"app {app['name']!r} is stopped; deploy or run it again")
        version = request.query_params.get("version")
        if version is not None:  # a version-pinned lookup: the function as deployed at that app version
            deployed = {h["version"]: h["functions"] for h in plane.catalog.history(app["app_id"])}
            if not version.isdigit() or int(version) not in deployed:
                versions = ", ".join(str(v) for v in sorted(deployed)) or "none"
                raise ApiError(
                    404, "NotFoundError", f"app {app['name']!r} has no version {version}; it has: {versions}"
                )
            fid = deployed[int(version)].get(tag)
        else:
            fid = plane.store.function_by_tag(app["app_id"], tag)
        if fid is None:
            known = ", ".join(sorted(plane.catalog.functions_of(app["app_id"]))) or "none"
            raise ApiError(404, "NotFoundError", f"no function {tag!r} in app {app['name']!r}; it has: {known}")
        found = plane.store.function(fid)
        spec = found.spec.to_wire() if found else {}
        endpoint = plane.store.endpoints_of_app(app["app_id"]).get(tag)
        web_url = plane.gateway.url(endpoint[1]) if endpoint else None
        return JSONResponse({"function_id": fid, "app_id": app["app_id"], "spec": spec, "web_url": web_url})

    @r.route(routes.APP_STOP, ["POST"], "client")
    async def stop_app(request: Request) -> Response:
        app = r.find_app(request.path_params["ref"])
        b = await r.body(request)
        await plane.stop_app(app["app_id"], field(b, "reason", str, "stopped by the user"))
        return JSONResponse({"app_id": app["app_id"]})

    def log_filter(b: dict[str, Any]) -> tuple[LogFilter, str]:
        """What a query of POST /logs asks for, and the app its lines are in."""
        call_id, container_id = field(b, "call", str, None), field(b, "container", str, None)
        function_id = field(b, "function_id", str, None)
        if call_id is not None:
            info = plane.store.call(call_id)
            if info is None:
                raise NotFound(call_id)
            app_id = info.app_id
        elif function_id is not None:
            found = plane.store.function(function_id)
            if found is None:
                raise NotFound(function_id)
            app_id = found.app_id
        elif container_id is not None:
            row = plane.store.insights.container(container_id)
            if row is None:
                raise NotFound(container_id)
            app_id = row["app_id"]
        else:
            app_id = r.find_app(field(b, "app", str))["app_id"]
        source = field(b, "source", str, None)
        if source not in (None, "stdout", "stderr", "system"):
            raise Invalid(f"source={source!r}: use 'stdout', 'stderr' or 'system'")
        where = LogFilter(app_id=app_id, call_id=call_id, container_id=container_id, function_id=function_id,
                          function_tag=field(b, "function", str, None), stream=source,
                          text=field(b, "search", str, None) or None, since_ts=field(b, "since_ts", (int, float), None),
                          until_ts=field(b, "until_ts", (int, float), None))  # fmt: skip
        return where, app_id

    def finished(call_id: str | None) -> bool:
        info = plane.store.call(call_id) if call_id else None
        return info is not None and info.finished_at is not None

    @r.route(routes.LOGS, ["POST"], "client")
    async def query_logs(request: Request) -> Response:
        """Lines that pass the filter: the last ``tail`` (default), or the first ``limit`` after seq ``after``,
        long-polling up to ``wait`` seconds for one while the app runs."""
        b = await r.body(request)
        where, app_id = log_filter(b)
        after, limit = field(b, "after", int, None), min(field(b, "limit", int, 1000), 5000)
        if after is None:
            lines = plane.store.insights.logs(where, min(field(b, "tail", int, 100), 5000))
        else:  # a call's lines: the wait ends when the call does too (a stream of it ends then)
            call = where.call_id
            lines = await plane.notifier.poll(
                ("logs:" + app_id, "call:" + call) if call else "logs:" + app_id, field(b, "wait", (int, float), 0.0),
                lambda: plane.store.insights.logs(where, limit, after=after),
                lambda found: bool(found) or plane.store.app_state(app_id) != "RUNNING" or finished(call),
            )  # fmt: skip
        rows = [[x.seq, x.ts, x.stream, x.text, x.call_id, x.input_idx, x.container_id] for x in lines]
        return packed({"logs": rows, "state": plane.store.app_state(app_id)})

    @r.route(routes.APP_LOGS, ["POST"], "client")
    async def app_logs(request: Request) -> Response:
        b = await r.body(request)
        app_id = r.find_app(request.path_params["ref"])["app_id"]
        tail = field(b, "tail", int, None)
        since_ts = field(b, "since_ts", (int, float), 0.0)
        since = field(b, "since", int, 0)
        earlier = 0
        if tail is not None or since_ts:
            rows = plane.catalog.logs(app_id, None, since, tail, since_ts)
            if rows and tail is not None:
                earlier = plane.catalog.count_logs(app_id, since, rows[0][0])
        else:
            rows = await plane.wait_logs(app_id, since, field(b, "wait", (int, float), 0))
        return packed({"logs": [list(r) for r in rows], "state": plane.store.app_state(app_id), "earlier": earlier})
