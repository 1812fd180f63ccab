"""The HTTP edge of the control plane: admission (auth, rate limits), bodies, and errors answered in one place.

Every error is answered as ``{"error": {"type": ..., "message": ...}}``; the type names an exception of
``shoal.exception`` that the client raises. Domain errors (``server/errors.py``), malformed messages and store
failures are translated by :func:`answer_error`; anything else is a 500 that never carries a traceback.
"""

from __future__ import annotations

import errno
import json
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import msgpack
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ...protocol.messages import MalformedBody, decode, encode
from ...protocol.specs import InvalidSpec
from .. import clock
from ..auth import Denied, RateLimiter, container_of
from ..control import ControlPlane
from ..errors import NotFound, RequestError
from ..store.database import store_errors

log = logging.getLogger("shoal.server")
WARNING_HEADER = "x-shoal-warning"
DISK_FULL_WARNING = ("The Shoal server's disk is full: results and logs cannot be stored, so work waits. Free space "
                     "where the server keeps its state; the work goes on by itself.")  # fmt: skip
DISK_FULL_WARNING_FOR = 30.0  # seconds after the last failed write that answers carry the warning


def is_disk_full(exc: BaseException) -> bool:
    """A store or file write refused for lack of space (SQLite's "full", or ENOSPC)."""
    if isinstance(exc, store_errors()):  # PostgreSQL's: "could not extend file ... No space left on device"
        text = str(exc).lower()
        return "full" in text or "no space left" in text
    return isinstance(exc, OSError) and exc.errno == errno.ENOSPC


Handler = Callable[[Request], Awaitable[Response]]
MSGPACK = "application/msgpack"
T = TypeVar("T")


class ApiError(Exception):
    """An answer decided at the edge (auth, limits, a malformed field), with its status and headers."""

    def __init__(self, status: int, kind: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.kind, self.message, self.headers = status, kind, message, headers


def packed(obj: Any) -> Response:
    return Response(msgpack.packb(obj, use_bin_type=True), media_type=MSGPACK)


def message(obj: Any) -> Response:
    """A typed message as a msgpack response."""
    return Response(encode(obj), media_type=MSGPACK)


def error_response(status: int, kind: str, text: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"type": kind, "message": text}}, status_code=status, headers=headers)


def answer_error(exc: Exception, path: str) -> Response:
    """The one translation of an error to an HTTP answer."""
    if isinstance(exc, ApiError):
        return error_response(exc.status, exc.kind, exc.message, exc.headers)
    if isinstance(exc, RequestError):
        return error_response(exc.status, exc.kind, str(exc))
    if isinstance(exc, (InvalidSpec, MalformedBody)):
        return error_response(400, "InvalidError", str(exc))
    if isinstance(exc, store_errors()):  # the store failed: nothing was applied (transactions roll back)
        return storage_error(exc)
    if is_disk_full(exc):  # a blob or volume file could not be written
        log.error("disk is full: %s", exc)
        return error_response(507, "ResourceExhaustedError", "The server's disk is full, so the request was not "
                              "stored. Free space where the server keeps its state, then retry.")  # fmt: skip
    if isinstance(exc, ClientDisconnect):  # the client hung up mid-request (a cut-off heartbeat): nobody to answer
        return Response(status_code=499)
    log.exception("internal error on %s", path)  # never a traceback to the client
    return error_response(500, "ServerError", f"internal server error: {type(exc).__name__}: {exc}")


def storage_error(exc: BaseException) -> JSONResponse:
    """A clear answer for a store failure; the request was not applied and can be retried."""
    text = str(exc).lower()
    if is_disk_full(exc):
        log.error("store is full: %s", exc)
        note = "The server's disk is full, so the request was not stored. Free space where the server keeps its "
        return error_response(507, "ResourceExhaustedError", note + "state (state.db), then retry.")
    log.error("store error: %s", exc)
    if "locked" in text or "busy" in text:
        return error_response(503, "ServerError", "The server's store is busy; retry shortly.", {"Retry-After": "1"})
    return error_response(503, "ServerError", f"The server's store failed ({exc}); the request was not applied. "
                          "Retry; if it persists, check the disk under the server's state directory.",
                          {"Retry-After": "1"})  # fmt: skip


def field(body: dict[str, Any], name: str, kind: type | tuple[type, ...], default: Any = ...) -> Any:
    """A field of a JSON/msgpack body, type-checked (ApiError 400 otherwise)."""
    value = body.get(name, default)
    if value is ...:
        raise ApiError(400, "InvalidError", f"missing field {name!r}")
    if value is None and default is not None:
        raise ApiError(400, "InvalidError", f"field {name!r} cannot be null")
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if value is not None and (not isinstance(value, kind) or isinstance(value, bool) and bool not in kinds):
        raise ApiError(400, "InvalidError", f"field {name!r} has the wrong type")
    if isinstance(value, (int, float)) and not isinstance(value, bool) and not -(2**53) <= value <= 2**53:
        raise ApiError(400, "InvalidError", f"field {name!r} is out of range")
    return value


class Router:
    """Collects the routes of every noun module, each admitted by role and answered through :func:`answer_error`."""

    def __init__(self, plane: ControlPlane) -> None:
        cfg = plane.config
        self.plane = plane
        self.max_body = cfg.max_payload_bytes + 1024 * 1024
        self.authorizer = plane.authorizer
        self.registry = plane.authorizer.registry
        self.limiter = RateLimiter(cfg.rate_limit)
        self.routes: list[Route] = []
        self.hot_routes: dict[str, tuple[type, Callable[[str, Any], Awaitable[Any]]]] = {}  # verb -> (kind, handler)
        self.release: Callable[[str], None] | None = plane.release_held  # a container's held beat answers now

    def admit(self, request: Request, who: str) -> None:
        """Admit the request under role ``who`` (raises ApiError); its identity is kept in ``request.state``."""
        presented = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        address = request.client.host if request.client else "?"
        try:
            identity = self.authorizer.identify(who, presented, address, request.path_params.get("container_id"))
        except Denied as exc:
            raise ApiError(exc.status, "AuthError", exc.message) from exc
        request.state.identity = identity
        if identity != "public" and container_of(identity) is None:
            wait = self.limiter.check(identity)
            if wait is not None:
                raise ApiError(429, "ResourceExhaustedError", f"rate limit exceeded; retry in {wait:.2f}s",
                               {"Retry-After": f"{max(wait, 0.01):.2f}"})  # fmt: skip

    def route(self, path: str, methods: list[str], who: str) -> Callable[[Handler], Handler]:
        """Register ``handler`` for ``path`` and ``methods``, callable by role ``who`` (see ``auth.py``)."""

        def wrap(handler: Handler) -> Handler:
            async def endpoint(request: Request) -> Response:
                try:
                    self.admit(request, who)
                    answer = await handler(request)
                except Exception as exc:  # noqa: BLE001 - every error gets an answer
                    return self.failed(exc, path)
                return self.warned(answer)

            self.routes.append(Route(path, endpoint, methods=methods))
            return handler

        return wrap

    def hot(self, path: str, kind: type[T]) -> Callable[[Callable[[str, T], Awaitable[Any]]], Any]:
        """Register a container route ``POST /containers/{container_id}/<verb>`` whose handler takes the container
        and its typed message and returns a typed reply: answered by :class:`~.hot.HotRoutes` without Starlette
        (a route for Starlette too, which answers its other methods)."""
        prefix, verb = path.rsplit("/", 1)
        assert prefix == "/containers/{container_id}", path

        def wrap(handler: Callable[[str, T], Awaitable[Any]]) -> Any:
            async def through_starlette(request: Request) -> Response:
                return message(await handler(request.path_params["container_id"], await self.typed(request, kind)))

            self.route(path, ["POST"], "container")(through_starlette)
            self.hot_routes[verb] = (kind, handler)
            return handler

        return wrap

    def failed(self, exc: Exception, path: str) -> Response:
        """The answer to a request that raised ``exc`` (a full disk is remembered: answers warn a while)."""
        if is_disk_full(exc):
            self.plane.disk_full_at = clock.now()
        return self.warned(answer_error(exc, path))

    def check_length(self, length: int) -> None:
        """Refuse a body over the limit before reading it."""
        if length > self.max_body:
            raise ApiError(413, "RequestSizeError", f"request of {length} bytes is over the limit of {self.max_body}")

    def warning(self) -> str | None:
        """What every answer says while it lasts: that the server's disk is full (a client waiting on results that
        cannot be stored would otherwise wait in silence; the SDK prints the warning)."""
        return DISK_FULL_WARNING if clock.now() - self.plane.disk_full_at < DISK_FULL_WARNING_FOR else None

    def warned(self, answer: Response) -> Response:
        if warning := self.warning():
            answer.headers[WARNING_HEADER] = warning
        return answer

    async def body(self, request: Request) -> dict[str, Any]:
        """A JSON or msgpack object body."""
        raw = await self._raw(request)
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

    async def typed(self, request: Request, kind: type[T]) -> T:
        """A msgpack body as the message ``kind``."""
        return decode(await self._raw(request), kind)

    async def _raw(self, request: Request) -> bytes:
        self.check_length(int(request.headers.get("content-length") or 0))
        return await request.body()

    def find_app(self, ref: str) -> dict[str, Any]:
        """An app by id or name, with its schedules (404 naming the running apps otherwise)."""
        catalog = self.plane.store.catalog
        app = catalog.find_app(ref)
        if app is None:
            names = sorted({a["name"] for a in catalog.list_apps(False)})
            raise NotFound(f"no app {ref!r}; running apps: {', '.join(names) or 'none'}")
        app["schedules"] = self.plane.store.schedules.of_app(app["app_id"])
        return app


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
