"""Routes of functions and calls: bind a class, start calls and feed them inputs, wait for outputs, cancel."""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..._ids import inputs_prefix
from ...protocol import routes
from ...protocol.messages import CallSummary, OutputReply, OutputRowsReply, OutputsReply
from ...protocol.specs import AUTOSCALER_FIELDS
from ..control import ControlPlane
from ..errors import Invalid, NotFound
from .http import MSGPACK, ApiError, Router, field, message, packed

MAX_WAIT = 30.0  # seconds a request may wait for outputs

MAX_KEY = 256  # characters of a caller's key (spawn once per key)


def add_routes(r: Router) -> None:
    plane = r.plane

    def summary(call_id: str) -> CallSummary:
        return call_summary(plane, call_id)

    @r.route(routes.FUNCTION_BIND, ["POST"], "caller")
    async def bind(request: Request) -> Response:
        b = await r.body(request)
        return JSONResponse(
            {"function_id": plane.bind(request.path_params["function_id"], field(b, "params_blob", str))}
        )

    @r.route(routes.FUNCTION_CALLS, ["POST"], "caller")
    async def create_call(request: Request) -> Response:
        b = await r.body(request)
        inputs = field(b, "inputs", list, [])
        if not all(isinstance(p, bytes) for p in inputs):
            raise ApiError(400, "InvalidError", "inputs must be a list of byte strings")
        key = field(b, "key", str, None)
        if key is not None and not 0 < len(key) <= MAX_KEY:
            raise ApiError(400, "InvalidError", f"a call's key is 1 to {MAX_KEY} characters long")
        expected = field(b, "expected", int, None)
        if expected is not None and expected < 0:
            raise ApiError(400, "InvalidError", "a call's expected number of inputs cannot be negative")
        call_id, existing = plane.create_call(
            request.path_params["function_id"], field(b, "kind", str), field(b, "parent_input", str, None), inputs,
            bool(b.get("close")), key, expected,
        )  # fmt: skip
        wait = field(b, "wait", (int, float), 0)
        if existing or not wait > 0 or not request.headers.get("content-type", "").startswith(MSGPACK):  # (NaN too)
            return JSONResponse(
                {"call_id": call_id, "existing": existing}
            )  # an output is bytes: only a msgpack request waits for it
        # submit and wait in one request: a .remote() costs one round trip when its result comes within ``wait``
        out = await plane.wait_output_at(call_id, 0, min(float(wait), MAX_WAIT))
        return packed({"call_id": call_id, "output": [out.seq, out.index, out.status, out.data] if out else None})

    @r.route(routes.FUNCTION_KEY, ["GET"], "caller")
    async def call_by_key(request: Request) -> Response:
        key = request.query_params.get("key", "")
        if not 0 < len(key) <= MAX_KEY:
            raise ApiError(400, "InvalidError", f"a call's key is 1 to {MAX_KEY} characters long")
        return JSONResponse({"call_id": plane.call_by_key(request.path_params["function_id"], key)})

    @r.route(routes.FUNCTION_STATS, ["GET"], "caller")
    async def function_stats(request: Request) -> Response:
        fid = request.path_params["function_id"]
        if plane.store.function(fid) is None:
            raise NotFound(fid)
        return JSONResponse(plane.catalog.function_stats(fid))

    @r.route(routes.FUNCTION_AUTOSCALER, ["POST"], "client")
    async def update_autoscaler(request: Request) -> Response:
        b = await r.body(request)
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

    @r.route(routes.CALL_INPUTS, ["POST"], "caller")
    async def add_inputs(request: Request) -> Response:
        b = await r.body(request)
        inputs = field(b, "inputs", list, [])
        if not all(isinstance(p, bytes) for p in inputs):
            raise ApiError(400, "InvalidError", "inputs must be a list of byte strings")
        added = plane.add_inputs(request.path_params["call_id"], field(b, "start", int), inputs, bool(b.get("close")))
        return packed({"added": added})

    @r.route(routes.CALL, ["GET"], "caller")
    async def get_call(request: Request) -> Response:
        return JSONResponse(msgspec.to_builtins(summary(request.path_params["call_id"])))

    @r.route(routes.CALL_OUTPUTS, ["POST"], "caller")
    async def call_outputs(request: Request) -> Response:
        call_id = request.path_params["call_id"]
        summary(call_id)
        b = await r.body(request)
        rows = bool(b.get("chunks"))
        outs = await plane.wait_outputs(
            call_id,
            field(b, "since", int, 0),
            min(field(b, "limit", int, 10000), 50000),
            field(b, "wait", (int, float), 0),
            rows,
        )
        return message(OutputRowsReply(outs, summary(call_id)) if rows else OutputsReply(outs, summary(call_id)))

    @r.route(routes.CALL_OUTPUT, ["POST"], "caller")
    async def call_output_at(request: Request) -> Response:
        call_id = request.path_params["call_id"]
        summary(call_id)
        b = await r.body(request)
        out = await plane.wait_output_at(call_id, field(b, "index", int, 0), field(b, "wait", (int, float), 0))
        return message(OutputReply(out, summary(call_id)))

    @r.route(routes.CALL_ITEMS, ["POST"], "caller")
    async def call_items(request: Request) -> Response:
        call_id = request.path_params["call_id"]
        summary(call_id)
        b = await r.body(request)
        items, out = await plane.wait_items(call_id, field(b, "since", int, -1), field(b, "wait", (int, float), 0))
        row = [out.seq, out.index, out.status, out.data] if out else None
        return packed({"items": items, "output": row})

    @r.route(routes.CALLS_FIRST_OUTPUTS, ["POST"], "caller")
    async def first_outputs(request: Request) -> Response:
        """The output of input 0 of each of many calls (FunctionCall.gather, and the sibling spawns a ``get``
        fetches ahead): those there now, or once the first of them lands within ``wait``; ``max_bytes`` bounds the
        payloads after the first."""
        b = await r.body(request)
        call_ids = field(b, "call_ids", list)
        if not all(isinstance(c, str) for c in call_ids) or len(call_ids) > 10_000:
            raise ApiError(400, "InvalidError", "call_ids must be a list of at most 10,000 call ids")
        summaries = {call_id: summary(call_id) for call_id in call_ids}  # each exists (NotFound otherwise)
        wait = field(b, "wait", (int, float), 0)
        max_bytes = field(b, "max_bytes", int, None)
        found = await plane.wait_first_outputs(call_ids, min(float(wait), MAX_WAIT) if wait > 0 else 0.0, max_bytes)
        if wait > 0:  # a long poll: what is said of the others is as of its end
            summaries = {c: summary(c) for c in call_ids if c not in found}
        outputs = {c: [o.seq, o.index, o.status, o.data] for c, o in found.items()}
        return packed(
            {"outputs": outputs, "calls": {c: msgspec.to_builtins(summaries[c]) for c in summaries if c not in found}}
        )

    @r.route(routes.CALL_CANCEL, ["POST"], "caller")
    async def cancel_call(request: Request) -> Response:
        call_id = request.path_params["call_id"]
        summary(call_id)
        b = await r.body(request)
        await plane.cancel_call(call_id, bool(b.get("terminate_containers")), "the call was cancelled")
        return JSONResponse({})

    @r.route(routes.CALL_RETRY, ["POST"], "caller")
    async def retry_call(request: Request) -> Response:
        call_id = request.path_params["call_id"]
        summary(call_id)
        b = await r.body(request)
        statuses = b.get("statuses", ["FAILURE", "CRASHED", "INIT_FAILED"])
        if not isinstance(statuses, list) or not all(isinstance(s, str) for s in statuses):
            raise Invalid("statuses must be a list of output statuses")
        queued, missing = plane.retry_call(call_id, statuses)
        return JSONResponse({"queued": queued, "missing": missing})

    @r.route(routes.CALL_FAILURES, ["GET"], "client")
    async def call_failures(request: Request) -> Response:
        call_id = request.path_params["call_id"]
        summary(call_id)
        groups = [{"type": g.error_type, "message": g.message, "count": g.count, "indexes": g.indexes[:10],
                   "traceback": g.traceback} for g in plane.store.insights.failure_groups(call_id)]  # fmt: skip
        return JSONResponse({"statuses": plane.store.insights.failed_statuses(call_id), "groups": groups})

    @r.route(routes.CALL_GRAPH, ["GET"], "caller")
    async def call_graph(request: Request) -> Response:
        def node(call_id: str, depth: int) -> dict[str, Any]:
            this = msgspec.to_builtins(summary(call_id))
            children = (
                [node(c, depth + 1) for c in plane.store.child_calls(inputs_prefix(call_id))] if depth < 20 else []
            )
            return {**this, "children": children}

        return JSONResponse(node(request.path_params["call_id"], 0))


def call_summary(plane: ControlPlane, call_id: str) -> CallSummary:
    """A call's status and counters (404 for an unknown id)."""
    info = plane.store.call(call_id)
    if info is None and plane.gateway.requests:  # a web request that finished in the last half second
        plane.gateway.flush_logs()
        info = plane.store.call(call_id)
    if info is None:
        raise NotFound(f"no function call {call_id!r}: check the id (it starts with 'fc-')")
    return CallSummary(
        info.id, info.function_id, info.function_name, info.app_id, info.kind, info.status, info.num_inputs,
        info.submitted, info.done, info.failed, info.created_at, info.finished_at, info.parent_input,
    )  # fmt: skip
