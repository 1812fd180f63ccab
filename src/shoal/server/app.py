"""HTTP routes of the control plane (one Starlette ASGI app). Data bodies are msgpack, control bodies JSON.

Every error is answered as ``{"error": {"type": ..., "message": ...}}`` with a fitting status code; the type
names an exception of ``shoal.exception`` that the client raises.
"""

from __future__ import annotations

import json
import logging
import re
import sqlite3
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import msgpack
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .. import __version__
from ..protocol.messages import (
    Accepted,
    ContainerBoot,
    ExchangeRequest,
    HeartbeatRequest,
    ItemReport,
    MalformedBody,
    StartedReport,
    decode,
    encode,
)
from ..protocol.specs import AUTOSCALER_FIELDS, decode_spec
from .auth import Authorizer, Denied, RateLimiter, TokenRegistry
from .control import ControlPlane, NotFound
from .kv_routes import kv_routes
from .openapi import schema as openapi_schema
from .records import ContainerState
from .volume_routes import volume_routes

log = logging.getLogger("shoal.server")
Handler = Callable[[Request], Awaitable[Response]]
MSGPACK = "application/msgpack"
T = TypeVar("T")


class ApiError(Exception):
    def __init__(self, status: int, kind: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.kind, self.message, self.headers = status, kind, message, headers


def packed(obj: Any) -> Response:
    return Response(msgpack.packb(obj, use_bin_type=True), media_type=MSGPACK)


def error_response(status: int, kind: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"type": kind, "message": message}}, status_code=status, headers=headers)


def storage_error(exc: sqlite3.Error) -> JSONResponse:
    """A clear answer for a store failure; the request was not applied and can be retried."""
    text = str(exc).lower()
    if "full" in text:
        log.error("store is full: %s", exc)
        message = "The server's disk is full, so the request was not stored. Free space where the server keeps its "
        return error_response(507, "ResourceExhaustedError", message + "state (state.db), then retry.")
    log.error("store error: %s", exc)
    if "locked" in text or "busy" in text:
        return error_response(503, "ServerError", "The server's store is busy; retry shortly.", {"Retry-After": "1"})
    return error_response(503, "ServerError", f"The server's store failed ({exc}); the request was not applied. "
                          "Retry; if it persists, check the disk under the server's state directory.",
                          {"Retry-After": "1"})  # fmt: skip


def message(obj: Any) -> Response:
    """A typed message as a msgpack response."""
    return Response(encode(obj), media_type=MSGPACK)


async def body_of(request: Request, max_bytes: int) -> dict[str, Any]:
    length = int(request.headers.get("content-length") or 0)
    if length > max_bytes:
        raise ApiError(413, "RequestSizeError", f"request of {length} bytes is over the server's limit of {max_bytes}")
    raw = await request.body()
    if not raw:
        return {}
    try:
        if request.headers.get("content-type", "").startswith(MSGPACK):
            body = msgpack.unpackb(raw, raw=False)
        else:
            body = json.loads(raw)
    except Exception as exc:
        raise ApiError(400, "InvalidError", f"malformed request body: {exc}") from exc
    if not isinstance(body, dict):
        raise ApiError(400, "InvalidError", "request body must be an object")
    return body


def field(body: dict[str, Any], name: str, kind: type | tuple[type, ...], default: Any = ...) -> Any:
    value = body.get(name, default)
    if value is ...:
        raise ApiError(400, "InvalidError", f"missing field {name!r}")
    if value is None and default is not None:
        raise ApiError(400, "InvalidError", f"field {name!r} cannot be null")
    if value is not None and (not isinstance(value, kind) or isinstance(value, bool) and bool not in _kinds(kind)):
        raise ApiError(400, "InvalidError", f"field {name!r} has the wrong type")
    if isinstance(value, (int, float)) and not isinstance(value, bool) and not -(2**53) <= value <= 2**53:
        raise ApiError(400, "InvalidError", f"field {name!r} is out of range")
    return value


def _kinds(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def create_app(plane: ControlPlane) -> Starlette:
    """Build the ASGI app serving ``plane``."""
    cfg = plane.config
    max_body = cfg.max_payload_bytes + 1024 * 1024

    registry = TokenRegistry(plane.store.tokens, cfg.client_token)
    authorizer = Authorizer(cfg.client_token or cfg.local_token, plane.container_token, registry)
    limiter = RateLimiter(cfg.rate_limit)

    def admit(request: Request, who: str) -> None:
        presented = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        address = request.client.host if request.client else "?"
        try:
            identity = authorizer.identify(who, presented, address)
        except Denied as exc:
            raise ApiError(exc.status, "AuthError", exc.message) from exc
        if identity not in ("container", "public"):
            wait = limiter.check(identity)
            if wait is not None:
                raise ApiError(429, "ResourceExhaustedError", f"rate limit exceeded; retry in {wait:.2f}s",
                               {"Retry-After": f"{max(wait, 0.01):.2f}"})  # fmt: skip

    def route(path: str, methods: list[str], who: str) -> Callable[[Handler], Route]:
        def wrap(handler: Handler) -> Route:  # one Route per (path, methods); merged per path below
            async def endpoint(request: Request) -> Response:
                try:
                    admit(request, who)
                    return await handler(request)
                except ApiError as exc:
                    return error_response(exc.status, exc.kind, exc.message, exc.headers)
                except sqlite3.Error as exc:  # the store failed: nothing was applied (transactions roll back)
                    return storage_error(exc)
                except ClientDisconnect:  # the client hung up mid-request (a cut-off heartbeat): nobody to answer
                    return Response(status_code=499)
                except NotFound as exc:
                    return error_response(404, "NotFoundError", str(exc))
                except KeyError as exc:
                    return error_response(404, "NotFoundError", f"unknown id {exc.args[0]!r}")
                except PermissionError as exc:
                    return error_response(409, "InvalidError", str(exc))
                except ValueError as exc:
                    return error_response(400, "InvalidError", str(exc))
                except OverflowError as exc:
                    return error_response(413, "RequestSizeError", str(exc))
                except Exception as exc:  # never a traceback to the client
                    log.exception("internal error on %s", path)
                    return error_response(500, "ServerError", f"internal server error: {type(exc).__name__}: {exc}")

            return Route(path, endpoint, methods=methods)

        return wrap

    async def body(request: Request) -> dict[str, Any]:
        return await body_of(request, max_body)

    async def typed(request: Request, kind: type[T]) -> T:
        length = int(request.headers.get("content-length") or 0)
        if length > max_body:
            raise ApiError(413, "RequestSizeError", f"request of {length} bytes is over the limit of {max_body}")
        try:
            return decode(await request.body(), kind)
        except MalformedBody as exc:
            raise ApiError(400, "InvalidError", str(exc)) from None

    # ---- public ----------------------------------------------------------------------------

    @route("/health", ["GET"], "public")
    async def health(request: Request) -> Response:
        return JSONResponse({"ok": True, "version": __version__})

    @route("/openapi.json", ["GET"], "public")
    async def openapi(request: Request) -> Response:
        return JSONResponse(openapi_schema())

    # ---- client ----------------------------------------------------------------------------

    @route("/apps", ["POST"], "client")
    async def create_app_route(request: Request) -> Response:
        b = await body(request)
        return JSONResponse({"app_id": plane.create_app(field(b, "name", str), field(b, "mode", str, "ephemeral"))})

    @route("/apps", ["GET"], "client")
    async def list_apps(request: Request) -> Response:
        include_stopped = request.query_params.get("all", "1") != "0"
        apps = plane.catalog.list_apps(include_stopped)
        for a in apps:
            a["schedules"] = plane.schedules.of_app(a["app_id"])
        return JSONResponse({"apps": apps})

    def find_app(ref: str) -> dict[str, Any]:
        app = plane.catalog.find_app(ref)
        if app is None:
            names = sorted({a["name"] for a in plane.catalog.list_apps(False)})
            raise ApiError(404, "NotFoundError", f"no app {ref!r}; running apps: {', '.join(names) or 'none'}")
        app["schedules"] = plane.schedules.of_app(app["app_id"])
        return app

    @route("/apps/{ref}", ["GET"], "client")
    async def get_app(request: Request) -> Response:
        return JSONResponse(find_app(request.path_params["ref"]))

    @route("/deploy", ["POST"], "client")
    async def deploy(request: Request) -> Response:
        b = await body(request)
        app_id, version = plane.begin_deploy(field(b, "name", str))
        return JSONResponse({"app_id": app_id, "version": version})

    @route("/apps/{ref}/deployed", ["POST"], "client")
    async def deployed(request: Request) -> Response:
        b = await body(request)
        functions = field(b, "functions", dict)
        plane.catalog.finish_deployment(request.path_params["ref"], field(b, "version", int), functions)
        plane.schedules.keep_only(request.path_params["ref"], {str(f) for f in functions.values()})
        return JSONResponse({})

    @route("/apps/{ref}/history", ["GET"], "client")
    async def app_history(request: Request) -> Response:
        app = find_app(request.path_params["ref"])
        return JSONResponse({"app": app, "history": plane.catalog.history(app["app_id"])})

    @route("/apps/{ref}/heartbeat", ["POST"], "client")
    async def app_heartbeat(request: Request) -> Response:
        plane.catalog.touch_client(request.path_params["ref"])
        return JSONResponse({"state": plane.store.app_state(request.path_params["ref"])})

    @route("/apps/{ref}/detach", ["POST"], "client")
    async def app_detach(request: Request) -> Response:
        plane.detach(request.path_params["ref"])
        return JSONResponse({})

    @route("/apps/{ref}/functions", ["GET"], "client")
    async def app_functions(request: Request) -> Response:
        app = find_app(request.path_params["ref"])
        return JSONResponse({"app": app, "functions": plane.catalog.functions_of(app["app_id"])})

    @route("/apps/{ref}/functions/{tag}/calls", ["GET"], "client")
    async def function_calls(request: Request) -> Response:
        app = find_app(request.path_params["ref"])
        ids = plane.catalog.calls_of_function(app["app_id"], request.path_params["tag"])
        return JSONResponse({"calls": [call_summary(i) for i in ids]})

    @route("/containers", ["GET"], "client")
    async def list_containers(request: Request) -> Response:
        include_stopped = request.query_params.get("all", "0") == "1"
        return JSONResponse({"containers": plane.catalog.list_containers(include_stopped)})

    @route("/containers/{container_id}/stop", ["POST"], "client")
    async def stop_container(request: Request) -> Response:
        await plane.stop_container(request.path_params["container_id"])
        return JSONResponse({})

    @route("/containers/{container_id}/logs", ["POST"], "client")
    async def container_logs(request: Request) -> Response:
        b = await body(request)
        cid = request.path_params["container_id"]
        found = plane.store.container_state(cid)
        if found is None:
            raise KeyError(cid)
        since = field(b, "since", int, 0)
        rows = plane.catalog.logs(None, cid, since)
        app_id = plane.container_app(cid)
        if not rows and app_id and found[1] != ContainerState.STOPPED:
            await plane.notifier.wait("logs:" + app_id, min(float(field(b, "wait", (int, float), 0)), 30.0))
            rows = plane.catalog.logs(None, cid, since)
        state = plane.store.container_state(cid)
        return packed({"logs": [list(r) for r in rows], "state": state[1].value if state else "STOPPED"})

    @route("/apps/{ref}/functions", ["POST"], "client")
    async def create_function(request: Request) -> Response:
        b = await body(request)
        if plane.store.app_state(request.path_params["ref"]) is None:
            raise KeyError(request.path_params["ref"])
        fid = plane.create_function(
            request.path_params["ref"], field(b, "tag", str), decode_spec(field(b, "spec", dict)),
            field(b, "pickled", bytes, None),
        )  # fmt: skip
        return JSONResponse({"function_id": fid})

    @route("/apps/{ref}/functions/{tag}", ["GET"], "caller")
    async def function_by_tag(request: Request) -> Response:
        app = find_app(request.path_params["ref"])
        tag = request.path_params["tag"]
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
        return JSONResponse({"function_id": fid, "app_id": app["app_id"], "spec": spec})

    @route("/apps/{ref}/stop", ["POST"], "client")
    async def stop_app(request: Request) -> Response:
        app = find_app(request.path_params["ref"])
        b = await body(request)
        await plane.stop_app(app["app_id"], field(b, "reason", str, "stopped by the user"))
        return JSONResponse({"app_id": app["app_id"]})

    @route("/apps/{ref}/logs", ["POST"], "client")
    async def app_logs(request: Request) -> Response:
        b = await body(request)
        app_id = find_app(request.path_params["ref"])["app_id"]
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

    @route("/blobs/{blob_id}", ["PUT"], "caller")
    async def put_blob(request: Request) -> Response:
        blob_id = request.path_params["blob_id"]
        if not plane.blobs.valid_id(blob_id):
            raise ApiError(400, "InvalidError", "a blob id is the sha256 hex digest of its content")
        length = int(request.headers.get("content-length") or 0)
        if length > max_body:
            raise ApiError(413, "RequestSizeError", f"blob of {length} bytes is over the limit of {max_body}")
        plane.blobs.put(blob_id, await request.body())
        return JSONResponse({})

    @route("/blobs/{blob_id}", ["GET", "HEAD"], "caller")
    async def get_blob(request: Request) -> Response:
        blob_id = request.path_params["blob_id"]
        if not plane.blobs.valid_id(blob_id) or not plane.blobs.exists(blob_id):
            raise ApiError(404, "NotFoundError", f"no blob {blob_id!r}")
        if request.method == "HEAD":
            return Response(b"")
        return Response(plane.blobs.get(blob_id), media_type="application/octet-stream")

    @route("/functions/{function_id}/bind", ["POST"], "caller")
    async def bind(request: Request) -> Response:
        b = await body(request)
        return JSONResponse(
            {"function_id": plane.bind(request.path_params["function_id"], field(b, "params_blob", str))}
        )

    @route("/functions/{function_id}/calls", ["POST"], "caller")
    async def create_call(request: Request) -> Response:
        b = await body(request)
        inputs = field(b, "inputs", list, [])
        if not all(isinstance(p, bytes) for p in inputs):
            raise ApiError(400, "InvalidError", "inputs must be a list of byte strings")
        call_id = plane.create_call(
            request.path_params["function_id"], field(b, "kind", str), field(b, "parent_input", str, None), inputs,
            bool(b.get("close")),
        )  # fmt: skip
        return JSONResponse({"call_id": call_id})

    @route("/functions/{function_id}/stats", ["GET"], "caller")
    async def function_stats(request: Request) -> Response:
        fid = request.path_params["function_id"]
        if plane.store.function(fid) is None:
            raise KeyError(fid)
        return JSONResponse(plane.catalog.function_stats(fid))

    @route("/functions/{function_id}/autoscaler", ["POST"], "client")
    async def update_autoscaler(request: Request) -> Response:
        b = await body(request)
        changes: dict[str, float] = {}
        for name in AUTOSCALER_FIELDS:
            value = field(b, name, (int, float), None)
            if value is None:
                continue
            if value < 0 or (name != "scaledown_window" and not float(value).is_integer()):
                raise ApiError(400, "InvalidError", f"{name}={value!r}: a whole number >= 0 is needed")
            if name == "max_containers" and value == 0:
                raise ApiError(400, "InvalidError", "max_containers=0 would never run anything")
            changes[name] = value if name == "scaledown_window" else int(value)
        settings = plane.catalog.update_autoscaler(request.path_params["function_id"], changes)
        plane.wake_scheduler()
        return JSONResponse(settings)

    @route("/calls/{call_id}/inputs", ["POST"], "caller")
    async def add_inputs(request: Request) -> Response:
        b = await body(request)
        inputs = field(b, "inputs", list, [])
        if not all(isinstance(p, bytes) for p in inputs):
            raise ApiError(400, "InvalidError", "inputs must be a list of byte strings")
        added = plane.add_inputs(request.path_params["call_id"], field(b, "start", int), inputs, bool(b.get("close")))
        return packed({"added": added})

    def call_summary(call_id: str) -> dict[str, Any]:
        info = plane.store.call(call_id)
        if info is None:
            raise ApiError(404, "NotFoundError", f"no function call {call_id!r}: check the id (it starts with 'fc-')")
        return {
            "call_id": info.id, "function_id": info.function_id, "function_name": info.function_name,
            "app_id": info.app_id, "kind": info.kind, "status": info.status, "num_inputs": info.num_inputs,
            "submitted": info.submitted, "done": info.done, "failed": info.failed, "created_at": info.created_at,
            "finished_at": info.finished_at, "parent_input": info.parent_input,
        }  # fmt: skip

    @route("/calls/{call_id}", ["GET"], "caller")
    async def get_call(request: Request) -> Response:
        return JSONResponse(call_summary(request.path_params["call_id"]))

    @route("/calls/{call_id}/outputs", ["POST"], "caller")
    async def call_outputs(request: Request) -> Response:
        call_id = request.path_params["call_id"]
        call_summary(call_id)
        b = await body(request)
        outs = await plane.wait_outputs(
            call_id,
            field(b, "since", int, 0),
            min(field(b, "limit", int, 10000), 50000),
            field(b, "wait", (int, float), 0),
        )
        return packed({"outputs": [[o.seq, o.index, o.status, o.data] for o in outs], "call": call_summary(call_id)})

    @route("/calls/{call_id}/output", ["POST"], "caller")
    async def call_output_at(request: Request) -> Response:
        call_id = request.path_params["call_id"]
        call_summary(call_id)
        b = await body(request)
        out = await plane.wait_output_at(call_id, field(b, "index", int, 0), field(b, "wait", (int, float), 0))
        row = [out.seq, out.index, out.status, out.data] if out else None
        return packed({"output": row, "call": call_summary(call_id)})

    @route("/calls/{call_id}/items", ["POST"], "caller")
    async def call_items(request: Request) -> Response:
        call_id = request.path_params["call_id"]
        call_summary(call_id)
        b = await body(request)
        items, out = await plane.wait_items(call_id, field(b, "since", int, -1), field(b, "wait", (int, float), 0))
        row = [out.seq, out.index, out.status, out.data] if out else None
        return packed({"items": items, "output": row})

    @route("/calls/{call_id}/cancel", ["POST"], "caller")
    async def cancel_call(request: Request) -> Response:
        call_id = request.path_params["call_id"]
        call_summary(call_id)
        b = await body(request)
        await plane.cancel_call(call_id, bool(b.get("terminate_containers")), "the call was cancelled")
        return JSONResponse({})

    @route("/calls/{call_id}/graph", ["GET"], "caller")
    async def call_graph(request: Request) -> Response:
        def node(call_id: str, depth: int) -> dict[str, Any]:
            summary = call_summary(call_id)
            prefix = "in-" + call_id.split("-", 1)[1] + "-"
            children = [node(c, depth + 1) for c in plane.store.child_calls(prefix)] if depth < 20 else []
            return {**summary, "children": children}

        return JSONResponse(node(request.path_params["call_id"], 0))

    # ---- containers ------------------------------------------------------------------------

    @route("/containers/{container_id}/spec", ["GET"], "container")
    async def container_spec(request: Request) -> Response:
        cid = request.path_params["container_id"]
        found = plane.store.container_state(cid)
        if found is None:
            raise KeyError(cid)
        fn = plane.store.function(found[0])
        assert fn is not None
        secret_env = plane.secrets.env(fn.spec.secrets)
        return message(ContainerBoot(fn.id, fn.app_id, fn.tag, fn.spec, fn.pickled, secret_env))

    @route("/containers/{container_id}/started", ["POST"], "container")
    async def container_started(request: Request) -> Response:
        report = await typed(request, StartedReport)
        plane.container_started(request.path_params["container_id"], report.error, report.fatal)
        return packed({})

    @route("/containers/{container_id}/exchange", ["POST"], "container")
    async def exchange(request: Request) -> Response:
        return message(await plane.exchange(request.path_params["container_id"], await typed(request, ExchangeRequest)))

    @route("/containers/{container_id}/items", ["POST"], "container")
    async def container_items(request: Request) -> Response:
        item = await typed(request, ItemReport)
        return message(Accepted(plane.add_item(request.path_params["container_id"], item)))

    @route("/containers/{container_id}/heartbeat", ["POST"], "container")
    async def heartbeat(request: Request) -> Response:
        beat = await typed(request, HeartbeatRequest)
        return message(plane.heartbeat(request.path_params["container_id"], beat.logs))

    @route("/secrets", ["POST"], "client")
    async def create_secret(request: Request) -> Response:
        b = await body(request)
        name, values = field(b, "name", str, None), field(b, "values", dict)
        secret_id = plane.secrets.put(name, values, bool(field(b, "overwrite", bool, False)))
        return JSONResponse({"secret_id": secret_id})

    @route("/secrets", ["GET"], "client")
    async def list_secrets(request: Request) -> Response:
        return JSONResponse({"secrets": plane.secrets.list()})  # names and keys, never values

    @route("/secrets/{name}/delete", ["POST"], "client")
    async def delete_secret(request: Request) -> Response:
        plane.secrets.delete(request.path_params["name"])
        return JSONResponse({})

    @route("/tokens", ["POST"], "admin")
    async def create_token(request: Request) -> Response:
        b = await body(request)
        if not cfg.client_token:
            raise ApiError(403, "AuthError", "issuing tokens needs a server started with its own token "
                           "(`shoal server --token ...` or SHOAL_TOKEN); without one, only this home's clients "
                           "get in")  # fmt: skip
        return JSONResponse({"token": registry.create(field(b, "name", str))})

    @route("/tokens", ["GET"], "admin")
    async def list_tokens(request: Request) -> Response:
        return JSONResponse({"tokens": registry.list()})

    @route("/tokens/{name}/revoke", ["POST"], "admin")
    async def revoke_token(request: Request) -> Response:
        registry.revoke(request.path_params["name"])
        return JSONResponse({})

    routes = kv_routes(plane, plane.store.kv, route, body, field, packed)
    routes += volume_routes(plane.volumes, route, body, field, max_body)
    routes += [
        openapi, create_token, list_tokens, revoke_token, create_secret, list_secrets, delete_secret,
        health, create_app_route, list_apps, deploy, deployed, app_history, app_heartbeat, app_detach, app_functions,
        function_calls, list_containers, stop_container, container_logs, get_app,
        bind, create_function, function_by_tag, stop_app, app_logs, put_blob, get_blob,
        create_call, function_stats, update_autoscaler, add_inputs, get_call, call_outputs, call_output_at,
        call_items, cancel_call, call_graph,
        container_spec, container_started, exchange, container_items, heartbeat,
    ]  # fmt: skip

    @asynccontextmanager
    async def lifespan(app: Starlette) -> Any:
        await plane.start()
        yield
        await plane.stop()

    return Starlette(routes=merge_by_path(routes), lifespan=lifespan)


ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"]


def merge_by_path(routes: list[Route]) -> list[Route]:
    """One Route per path that dispatches on the method, so a 405 lists every allowed method (as JSON)."""
    by_path: dict[str, dict[str, Any]] = {}
    canonical: dict[str, str] = {}
    for r in routes:
        shape = re.sub(r"\{[^}]+\}", "{}", r.path)
        if canonical.setdefault(shape, r.path) != r.path:  # same shape, other parameter names: one would hide the other
            raise RuntimeError(f"routes {canonical[shape]} and {r.path} must name their parameters alike")
        for method in r.methods or ():
            by_path.setdefault(r.path, {})[method] = r.endpoint
    merged = []
    for path, handlers in by_path.items():

        async def dispatch(request: Request, handlers: dict[str, Any] = handlers) -> Response:
            handler = handlers.get(request.method)
            if handler is None:
                allowed = ", ".join(sorted(m for m in handlers if m != "HEAD"))
                return error_response(
                    405, "InvalidError", f"{request.method} is not allowed here; use {allowed}", {"Allow": allowed}
                )
            return await handler(request)  # type: ignore[no-any-return]

        merged.append(Route(path, dispatch, methods=ALL_METHODS))
    return merged
