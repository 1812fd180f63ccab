"""What each dashboard page shows, read from the store's records (history survives restarts).

Each function returns a page's template context; none reads anything that grows with a call's inputs where a
counter can answer (see ``store/insights.py``).
"""

from __future__ import annotations

from typing import Any

import msgspec

from ..._ids import call_of_input, index_of_input, inputs_prefix
from ...protocol.messages import ContainerState
from .. import clock
from ..control import ControlPlane
from ..core.records import CallInfo, LogFilter
from ..errors import NotFound
from .charts import call_charts, resource_charts
from .preview import preview

Context = dict[str, Any]
CHILDREN_SHOWN = 50
FILE_PREVIEW_BYTES = 64 * 1024


class Progress(msgspec.Struct, frozen=True):
    """A call's progress bar: done (succeeded), failed, running and pending inputs, with rate and ETA."""

    total: int
    closed: bool  # all inputs are in (the total is final)
    told: bool  # not all in, but the total is the number the caller said it has
    succeeded: int
    failed: int
    running: int
    pending: int
    rate: float | None  # inputs finished per second so far
    eta: float | None  # seconds to go at that rate

    def percent(self, part: int) -> float:
        return 100.0 * part / self.total if self.total else 0.0

    @property
    def finished_percent(self) -> float:
        return self.percent(self.succeeded + self.failed)


def progress(plane: ControlPlane, info: CallInfo, now: float) -> Progress:
    running = plane.store.insights.running_inputs(info.id, info.function_id) if info.finished_at is None else 0
    return progress_of(info, running, now)


def progress_of(info: CallInfo, running: int, now: float) -> Progress:
    """A call's progress from its counters and its running inputs: the rate is over its whole life so far. While
    inputs are still being submitted, the total is what the caller said it has (a list's length), if it knew."""
    total = info.num_inputs if info.num_inputs is not None else max(info.submitted, info.expected or 0)
    pending = max(0, total - info.done - running)
    elapsed = (info.finished_at or now) - info.created_at
    rate = info.done / elapsed if elapsed > 0 and info.done else None
    # no estimate while inputs are still coming from an iterator of unknown length: an estimate from those
    # submitted so far would promise an end long before it
    known = info.num_inputs is not None or info.expected is not None
    eta = (pending + running) / rate if rate and known and info.finished_at is None else None
    return Progress(total, info.num_inputs is not None, info.expected is not None, info.done - info.failed,
                    info.failed, running, pending, rate, eta)  # fmt: skip


def _call(plane: ControlPlane, call_id: str) -> CallInfo:
    info = plane.store.call(call_id)
    if info is None:
        raise NotFound(f"no function call {call_id!r}")
    return info


def _app(plane: ControlPlane, app_id: str) -> dict[str, Any]:
    app = plane.catalog.find_app(app_id)
    if app is None:
        raise NotFound(f"no app {app_id!r}")
    return app


def apps(plane: ControlPlane) -> Context:
    return {"apps": plane.catalog.list_apps(include_stopped=True, limit=200)}


def app(plane: ControlPlane, app_id: str) -> Context:
    found = _app(plane, app_id)
    now = clock.now()
    bound = plane.store.endpoints_of_app(found["app_id"])
    endpoints = {tag: plane.gateway.url(port) for tag, (_, port) in bound.items()}
    calls = [_call(plane, c) for c in plane.store.insights.calls_of_app(found["app_id"], 30)]
    functions = plane.store.insights.functions(found["app_id"])
    return {
        "app": found,
        "functions": functions,
        "function_charts": {
            f.function_id: resource_charts(plane.store.samples.of_function(f.function_id), f"{f.tag}-")
            for f in functions
        },  # fmt: skip
        "schedules": plane.schedules.of_app(found["app_id"]),
        "endpoints": endpoints,
        "calls": [(c, progress(plane, c, now)) for c in calls],
    }


def call(plane: ControlPlane, call_id: str) -> Context:
    info = _call(plane, call_id)
    now = clock.now()
    parents: list[tuple[CallInfo, int]] = []
    parent_input = info.parent_input
    while parent_input and len(parents) < 10:  # the chain up to the call that started it all
        parent = plane.store.call(call_of_input(parent_input))
        if parent is None:
            break
        parents.append((parent, index_of_input(parent_input)))
        parent_input = parent.parent_input
    child_ids = plane.store.child_calls(inputs_prefix(call_id))[:CHILDREN_SHOWN]
    children = [c for c in (plane.store.call(i) for i in child_ids) if c]
    retention = plane.config.result_retention
    return {
        "call": info,
        "app": _app(plane, info.app_id),
        "progress": progress(plane, info, now),
        "failures": plane.store.insights.failure_groups(call_id),
        "charts": call_charts(plane.store.samples.of_call(call_id)),
        "parents": parents[::-1],
        "children": [(c, progress(plane, c, now)) for c in children],
        "expires_at": info.finished_at + retention if info.finished_at is not None else None,
        "retention": retention,
        "now": now,
    }


def input_page(plane: ControlPlane, call_id: str, index: int) -> Context:
    info = _call(plane, call_id)
    detail = plane.store.insights.input_detail(call_id, index)
    if detail is None:
        raise NotFound(f"call {call_id} has no input {index} (it has {info.submitted})")
    return {"call": info, "input": detail, "app": plane.catalog.find_app(info.app_id)}


def containers(plane: ControlPlane, include_stopped: bool) -> Context:
    return {"containers": plane.list_containers(include_stopped, limit=300), "include_stopped": include_stopped}


def container(plane: ControlPlane, container_id: str) -> Context:
    found = plane.store.insights.container(container_id)
    if found is None:
        raise NotFound(f"no container {container_id!r}")
    waiting = plane.backend.waiting().get(container_id)
    found["waiting_for_capacity_s"] = waiting.seconds if waiting else None
    found["waiting_for"] = waiting.reason if waiting else None
    logs = plane.store.insights.logs(LogFilter(container_id=container_id), limit=300)
    charts = resource_charts(plane.store.samples.of_container(container_id))
    return {"container": found, "logs": logs, "charts": charts, "live": found["state"] != ContainerState.STOPPED.value}


def logs(plane: ControlPlane, params: dict[str, str]) -> Context:
    def text(name: str) -> str | None:
        return params.get(name, "").strip() or None

    index = text("input")
    where = LogFilter(text("app"), text("function"), text("call"), text("container"),
                      int(index) if index and index.isdigit() else None, text("q"))  # fmt: skip
    functions = plane.catalog.functions_of(where.app_id) if where.app_id else {}
    lines = plane.store.insights.logs(where, limit=500)
    apps = plane.catalog.list_apps(include_stopped=True, limit=100)
    app_names = {a["app_id"]: a["name"] for a in apps}
    for app_id in {x.app_id for x in lines} - set(app_names):
        found = plane.catalog.find_app(app_id)
        app_names[app_id] = found["name"] if found else app_id
    return {
        "filter": where,
        "lines": lines,
        "apps": apps,
        "app_names": app_names,  # the app and function columns of each line
        "function_names": plane.store.insights.functions_of_containers({x.container_id for x in lines} - {None, ""}),
        "functions": sorted(functions.items()),
        "follow": params.get("follow", "1") == "1",
    }


def storage(plane: ControlPlane) -> Context:
    kv = plane.store.kv
    return {
        "volumes": plane.volumes.names(),
        "dicts": [{**d, "size": kv.size(d["id"])} for d in kv.names("dict")],
        "queues": [{**q, "size": kv.size(q["id"])} for q in kv.names("queue")],
        "secrets": [{"name": s["name"], "created_at": s["created_at"]} for s in plane.store.secrets.list()],
    }


def volume(plane: ControlPlane, name: str, path: str) -> Context:
    if not plane.volumes.exists(name):
        raise NotFound(f"no volume {name!r}")
    path = path.strip("/")
    entries = plane.volumes.listdir(name, path, recursive=False)
    is_file = len(entries) == 1 and entries[0]["type"] == "file" and entries[0]["path"] == path
    content: str | None = None
    size = entries[0]["size"] if is_file else None
    if is_file:
        data = plane.volumes.read(name, path)[:FILE_PREVIEW_BYTES]
        try:
            content = data.decode()
        except UnicodeDecodeError:
            content = None  # binary: shown as such
        entries = []
    parts = [p for p in path.split("/") if p]
    crumbs = [(part, "/".join(parts[: i + 1])) for i, part in enumerate(parts)]
    return {"name": name, "path": path, "entries": entries, "content": content, "crumbs": crumbs,
            "is_file": is_file, "size": size, "cut": bool(size and size > FILE_PREVIEW_BYTES)}  # fmt: skip


def kv_object(plane: ControlPlane, kind: str, object_id: str) -> Context:
    kv = plane.store.kv
    named = {o["id"]: o for o in kv.names(kind)}
    if kind not in ("dict", "queue") or object_id not in named:
        raise NotFound(f"no {kind} {object_id!r}")
    items = [(preview(k) if k is not None else None, preview(v)) for k, v in kv.peek(object_id, 20)]
    return {"kind": kind, "object": named[object_id], "size": kv.size(object_id), "items": items}
