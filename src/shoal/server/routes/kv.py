"""HTTP routes for Dicts and Queues (msgpack bodies; keys and values are opaque pickled bytes)."""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ...protocol import routes
from ..errors import NotFound
from ..store.kv import Full
from .http import Router, field, packed

MAX_WAIT = 30.0


def add_routes(r: Router) -> None:
    """Routes for Dicts and Queues; long polls wake on the plane's notifier."""
    plane, kv, body, route = r.plane, r.plane.store.kv, r.body, r.route

    def object_id(request: Request, kind: str) -> str:
        oid = request.path_params["object_id"]
        if not kv.exists(oid, kind):
            raise NotFound(oid)
        return str(oid)

    @route(routes.KV_OPEN, ["POST"], "caller")
    async def open_object(request: Request) -> Response:
        b = await body(request)
        oid = kv.open(request.path_params["kind"], field(b, "name", str, None), bool(b.get("create_if_missing")))
        return JSONResponse({"id": oid})

    @route(routes.KV_LIST, ["GET"], "client")
    async def list_objects(request: Request) -> Response:
        return JSONResponse({"objects": kv.names(request.path_params["kind"])})

    @route(routes.KV_DELETE, ["POST"], "caller")
    async def delete_object(request: Request) -> Response:
        kv.delete(object_id(request, request.path_params["kind"]))
        return JSONResponse({})

    @route(routes.DICT_OP, ["POST"], "caller")
    async def dict_op(request: Request) -> Response:
        b = await body(request)
        return packed(kv.dict_op(object_id(request, "dict"), field(b, "op", str), b))

    @route(routes.QUEUE_PUT, ["POST"], "caller")
    async def queue_put(request: Request) -> Response:
        qid = object_id(request, "queue")
        b = await body(request)
        partition, values = field(b, "partition", str, ""), field(b, "values", list)
        deadline = time.monotonic() + min(float(field(b, "wait", (int, float), 0)), MAX_WAIT)
        while True:
            try:
                kv.put(qid, partition, values)
                plane.notifier.notify(f"queue:{qid}")
                return packed({"full": False})
            except Full:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return packed({"full": True})
                await plane.notifier.wait(f"queue-space:{qid}", remaining)

    @route(routes.QUEUE_GET, ["POST"], "caller")
    async def queue_get(request: Request) -> Response:
        qid = object_id(request, "queue")
        b = await body(request)
        partition, n = field(b, "partition", str, ""), max(1, min(field(b, "n", int, 1), 5_000))
        wait = float(field(b, "wait", (int, float), 0))
        values = await plane.notifier.poll(f"queue:{qid}", wait, lambda: kv.take(qid, partition, n))
        if values:
            plane.notifier.notify(f"queue-space:{qid}")
        return packed({"values": values})

    @route(routes.QUEUE_SCAN, ["POST"], "caller")
    async def queue_scan(request: Request) -> Response:
        qid = object_id(request, "queue")
        b = await body(request)
        partition, after = field(b, "partition", str, ""), field(b, "after", int, 0)
        wait = float(field(b, "wait", (int, float), 0))
        items = await plane.notifier.poll(f"queue:{qid}", wait, lambda: kv.scan(qid, partition, after))
        return packed({"items": [list(i) for i in items]})

    @route(routes.QUEUE_LEN, ["POST"], "caller")
    async def queue_len(request: Request) -> Response:
        b = await body(request)
        return packed({"len": kv.length(object_id(request, "queue"), field(b, "partition", str, None))})

    @route(routes.QUEUE_CLEAR, ["POST"], "caller")
    async def queue_clear(request: Request) -> Response:
        qid = object_id(request, "queue")
        b = await body(request)
        kv.clear(qid, field(b, "partition", str, None))
        plane.notifier.notify(f"queue-space:{qid}")
        return packed({})
