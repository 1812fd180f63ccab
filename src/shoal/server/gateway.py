"""The web gateway: each endpoint gets its own port on the server's host, proxied to a container of its function.

An endpoint's URL is ``http://HOST:PORT/``: the app behind it sees its own root, so absolute links work, and no
DNS or hosts-file set-up is needed. The port is kept in the store per label, so a redeploy (or a server restart)
keeps the URL. A request to an endpoint with no free container is demand the scheduler sees (it starts one);
each container takes as many requests at once as ``@concurrent(max_inputs=)`` allows (one by default). Past the
function's ``timeout`` a request gets 504; a container that dies mid-request gives 502 to the requests it held.
The gateway never runs user code: containers serve the app on their own loopback port.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import uvicorn

from .._ids import new_id
from ..protocol.specs import FunctionSpec
from .auth import Denied
from .lifecycle import FATAL_STARTUP_FAILURES
from .listen import bind
from .records import FunctionRecord
from .upstream import Upstream, UpstreamError

if TYPE_CHECKING:
    from .control import ControlPlane

log = logging.getLogger("shoal.gateway")
HOP_BY_HOP = {b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization", b"te", b"trailer",
              b"transfer-encoding", b"upgrade", b"host", b"content-length"}  # fmt: skip
LOOKUP_TTL = 0.5  # seconds a request may act on what the store said of its endpoint (a stopped app: 404 after)
CALL_HEADER = b"x-shoal-call-id"  # tells the container which call a request is (shoal.current_function_call_id())
CALLS_HEADER = b"x-shoal-calls"  # the container's answer: its handler called functions (keep the request as a call)
Scope = dict[str, Any]
Receive = Callable[[], Any]
Send = Callable[[dict[str, Any]], Any]


class NoCapacity(Exception):
    """No container took the request in time."""


class _Listener(uvicorn.Server):
    """A uvicorn server for one endpoint inside the control plane's loop: it leaves signals to the main server."""

    @contextlib.contextmanager
    def capture_signals(self) -> Any:
        yield


class Gateway:
    def __init__(self, plane: ControlPlane, host: str) -> None:
        self.plane = plane
        self.host = host
        self.functions: dict[str, str] = {}  # label -> function id serving it now
        self.listeners: dict[str, tuple[_Listener, asyncio.Task[None]]] = {}
        self.waiting: dict[str, int] = defaultdict(int)  # function id -> requests waiting for a container
        self.inflight: dict[str, int] = defaultdict(int)  # container id -> requests it is serving
        self.serving_function: dict[str, str] = {}  # container id -> its function, while it serves requests
        self.upstream = Upstream()
        self.request_logs: dict[tuple[str, str], list[str]] = defaultdict(list)  # (app, container) -> lines
        self.requests: list[tuple[str, str, str, float, float, bool]] = []  # finished requests, as calls to record
        self.calling: set[str] = set()  # requests whose handlers called functions (the container said so)
        self.lookups: dict[str, tuple[float, FunctionRecord | None]] = {}  # label -> (when, what serves it)
        self.containers: dict[str, tuple[float, list[tuple[str, int]]]] = {}  # function -> (when, serving ones)
        self.touched: dict[str, float] = {}  # container -> when its last_active was last written
        self._flusher: asyncio.Task[None] | None = None

    # ---- endpoints --------------------------------------------------------------------------------

    async def expose(self, label: str, function_id: str, app_id: str) -> str:
        """Serve ``label`` from ``function_id`` now (a redeploy moves the label); returns the endpoint's URL."""
        port = self.plane.store.endpoint_port(label)
        sock = self._bind(port or 0) if label not in self.listeners else None
        if sock is not None and port and sock.getsockname()[1] != port:
            moved = sock.getsockname()[1]
            log.warning("endpoint %s could not get its port %s back; it moved to %s", label, port, moved)
        if sock is not None:
            port = sock.getsockname()[1]
            listener = _Listener(uvicorn.Config(self._app(label), log_level="warning", lifespan="off",
                                                access_log=False, timeout_graceful_shutdown=2, proxy_headers=False,
                                                server_header=False, date_header=False))  # fmt: skip
            self.listeners[label] = (listener, asyncio.create_task(listener.serve(sockets=[sock])))
        assert port is not None
        self.plane.store.bind_endpoint(label, app_id, function_id, port)
        self.functions[label] = function_id
        self.lookups.pop(label, None)
        return self.url(port)

    def url(self, port: int) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{port}"

    def _bind(self, port: int) -> socket.socket:
        """The endpoint's port again, or any free one when another program took it meanwhile."""
        try:
            return bind(self.host, port)
        except OSError:
            if not port:
                raise
            return bind(self.host, 0)

    async def start(self) -> None:
        """Listen again for the endpoints of running apps (after a restart)."""
        for label, function_id, app_id in self.plane.store.live_endpoints():
            await self.expose(label, function_id, app_id)
        self._flusher = asyncio.create_task(self._flush_logs())

    async def close(self) -> None:
        for listener, _ in self.listeners.values():
            listener.should_exit = True
        await asyncio.gather(*(task for _, task in self.listeners.values()), return_exceptions=True)
        if self._flusher is not None:
            self._flusher.cancel()
        self.flush_logs()
        self.upstream.close()

    # ---- load, for the scheduler -----------------------------------------------------------------

    def demand(self) -> dict[str, int]:
        """Requests per function, waiting or being served: the scheduler's backlog for web functions."""
        out = dict(self.waiting)
        for container_id, n in self.inflight.items():
            function_id = self.serving_function[container_id]
            out[function_id] = out.get(function_id, 0) + n
        return {fid: n for fid, n in out.items() if n}

    # ---- requests ---------------------------------------------------------------------------------

    def _app(self, label: str) -> Callable[[Scope, Receive, Send], Any]:
        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] == "http":
                await self._serve(label, scope, receive, send)
            elif scope["type"] == "websocket":
                await self._serve_websocket(label, scope, receive, send)

        return app

    def _endpoint(self, label: str) -> FunctionRecord | None:
        """The function serving ``label`` while its app runs (looked up at most every LOOKUP_TTL seconds)."""
        now = time.monotonic()
        cached = self.lookups.get(label)
        if cached is not None and now - cached[0] < LOOKUP_TTL:
            return cached[1]
        function_id = self.functions.get(label)
        found = self.plane.store.function(function_id) if function_id else None
        if found is not None and self.plane.store.app_state(found.app_id) != "RUNNING":
            found = None
        self.lookups[label] = (now, found)
        return found

    def _admit(self, label: str, scope: Scope) -> tuple[FunctionRecord | None, int, str]:
        """(the function serving the request, or None with the status and reason to refuse it)."""
        found = self._endpoint(label)
        if found is None:
            return None, 404, f"No running app serves the endpoint {label!r}."
        if found.spec.web is not None and found.spec.web.requires_proxy_auth and not self._authorized(scope):
            return None, 401, "This endpoint requires proxy auth: send `Authorization: Bearer <Shoal token>`."
        return found, 200, ""

    async def _serve(self, label: str, scope: Scope, receive: Receive, send: Send) -> None:
        found, refusal, reason = self._admit(label, scope)
        if found is None:
            await _answer(send, refusal, reason)
            return
        spec = found.spec
        started, started_at = time.monotonic(), time.time()
        call_id = new_id("call")  # the request is a call: what the handler calls hangs under it (get_call_graph)
        try:
            container_id, port = await self._acquire(found.id, spec)
        except NoCapacity as exc:
            await _answer(send, 503, str(exc))
            return
        status = 502
        try:
            async with _timeout(spec.timeout):
                status = await self._proxy(port, scope, receive, send, call_id)
        except asyncio.TimeoutError:
            status = 504
            await _answer(send, 504, f"The endpoint did not answer within its function's timeout={spec.timeout:g}s.")
        except UpstreamError as exc:
            await _answer(send, 502, f"The container serving this endpoint failed mid-request ({type(exc).__name__}).")
        finally:
            self._release(container_id, found.id)
            took = (time.monotonic() - started) * 1000
            line = f"{scope['method']} {scope.get('path', '/')} -> {status} in {took:.0f} ms"
            self.request_logs[(found.app_id, container_id)].append(line)
            if call_id in self.calling:  # its handler called functions: keep it as a call, the root of their graph
                self.calling.discard(call_id)
                self.requests.append((call_id, found.id, found.app_id, started_at, time.time(), status >= 500))

    async def _serve_websocket(self, label: str, scope: Scope, receive: Receive, send: Send) -> None:
        """Relay a websocket both ways between the client and a container's app, for as long as both keep it."""
        found, _, _ = self._admit(label, scope)
        if found is None:
            await send({"type": "websocket.close", "code": 1008})
            return
        try:
            container_id, port = await self._acquire(found.id, found.spec)
        except NoCapacity:
            await send({"type": "websocket.close", "code": 1013})  # try again later
            return
        try:
            await _relay(port, scope, receive, send)
        finally:
            self._release(container_id, found.id)

    def _authorized(self, scope: Scope) -> bool:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        presented = headers.get("authorization", "").removeprefix("Bearer ").strip()
        client = scope.get("client") or ("?", 0)
        try:
            self.plane.authorizer.identify("client", presented, client[0])
        except Denied:
            return False
        return bool(presented)

    async def _acquire(self, function_id: str, spec: FunctionSpec) -> tuple[str, int]:
        """A container of the function with a free slot (starting one if needed), waiting up to its startup time."""
        capacity = spec.concurrency.max_inputs if spec.concurrency else 1
        deadline = time.monotonic() + spec.startup_timeout + (spec.web.startup_timeout if spec.web else 0.0)
        self.waiting[function_id] += 1
        self.plane.wake_scheduler()
        try:
            while True:
                for container_id, port in self._web_containers(function_id):
                    if self.inflight[container_id] < capacity:
                        self.inflight[container_id] += 1
                        self.serving_function[container_id] = function_id
                        self._touch(container_id)
                        return container_id, port
                failures, error = self.plane.store.startup_error(function_id)
                if failures >= FATAL_STARTUP_FAILURES:  # it cannot start: say why now rather than at the deadline
                    raise NoCapacity(f"The endpoint's containers fail to start:\n{error}")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise NoCapacity(f"No container of this endpoint's function could take the request within "
                                     f"{spec.startup_timeout:g}s (see `shoal app logs`).")  # fmt: skip
                await self.plane.notifier.wait("web:" + function_id, remaining)
        finally:
            self.waiting[function_id] -= 1

    def _web_containers(self, function_id: str) -> list[tuple[str, int]]:
        """The function's serving containers: looked up again when one came or went, or every LOOKUP_TTL s."""
        now = time.monotonic()
        cached = self.containers.get(function_id)
        if cached is None or now - cached[0] >= LOOKUP_TTL:
            cached = self.containers[function_id] = (now, self.plane.store.web_containers(function_id))
        return cached[1]

    def containers_changed(self, function_id: str) -> None:
        """A container of the function became ready, or stopped: look again."""
        self.containers.pop(function_id, None)

    def _release(self, container_id: str, function_id: str) -> None:
        self.inflight[container_id] -= 1
        if self.inflight[container_id] <= 0:
            del self.inflight[container_id]
            del self.serving_function[container_id]
        self._touch(container_id)
        self.plane.notifier.notify("web:" + function_id)

    def _touch(self, container_id: str) -> None:
        """Mark the container active (not idle), writing to the store at most once a second per container."""
        now = time.monotonic()
        if now - self.touched.get(container_id, 0.0) >= 1.0:
            self.touched[container_id] = now
            self.plane.store.touch_active(container_id)

    async def _flush_logs(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            self.flush_logs()

    def flush_logs(self) -> None:
        """Request lines into the app logs, and requests as calls: a few writes every half second, not per request."""
        if self.requests:
            rows, self.requests = self.requests, []
            self.plane.store.record_requests(rows)
        pending, self.request_logs = self.request_logs, defaultdict(list)
        for (app_id, container_id), lines in pending.items():
            self.plane.system_log(app_id, container_id, "\n".join(lines))

    async def _proxy(self, port: int, scope: Scope, receive: Receive, send: Send, call_id: str) -> int:
        """Forward one request to the container and stream its answer back; returns the status."""
        headers: list[tuple[bytes, bytes]] = scope.get("headers", [])
        host = next((v for k, v in headers if k == b"host"), b"")
        length = next((int(v) for k, v in headers if k == b"content-length"), None)
        client = scope.get("client") or ("", 0)
        kept = [(k, v) for k, v in headers if k not in HOP_BY_HOP]
        forwarded = [(k, v) for k, v in kept if not k.startswith((b"x-forwarded", b"x-shoal-"))]
        forwarded.append((CALL_HEADER, call_id.encode()))
        scheme = scope.get("scheme", "http").encode()
        forwarded += [(b"host", host), (b"x-forwarded-for", client[0].encode()), (b"x-forwarded-proto", scheme),
                      (b"x-forwarded-host", host)]  # fmt: skip
        target = scope.get("raw_path") or scope["path"].encode()
        if scope.get("query_string"):
            target += b"?" + scope["query_string"]
        streamed = any(k == b"transfer-encoding" for k, _ in headers)
        response = await self.upstream.request(port, scope["method"], target.decode("latin-1"), forwarded,
                                               _body(receive), length, streamed)  # fmt: skip
        out = [(k, v) for k, v in response.headers if k not in HOP_BY_HOP or k == b"content-length"]
        if (CALLS_HEADER, b"1") in out:
            out.remove((CALLS_HEADER, b"1"))
            self.calling.add(call_id)
        await send({"type": "http.response.start", "status": response.status, "headers": out})
        async for chunk in response.body:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        return response.status


async def _relay(port: int, scope: Scope, receive: Receive, send: Send) -> None:
    """One websocket: connect to the app first (its answer decides the client's), then pass messages both ways."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed, InvalidHandshake

    first = await receive()  # websocket.connect
    assert first["type"] == "websocket.connect"
    target = (scope.get("raw_path") or scope["path"].encode()).decode("latin-1")
    if scope.get("query_string"):
        target += "?" + scope["query_string"].decode("latin-1")
    try:
        upstream = await connect(f"ws://127.0.0.1:{port}{target}", subprotocols=scope.get("subprotocols") or None,
                                 max_size=None, open_timeout=10)  # fmt: skip
    except (OSError, InvalidHandshake, asyncio.TimeoutError):
        await send({"type": "websocket.close", "code": 1011})
        return
    await send({"type": "websocket.accept", "subprotocol": upstream.subprotocol})

    async def to_app() -> None:
        while (message := await receive())["type"] == "websocket.receive":
            await upstream.send(message["bytes"] if message.get("bytes") is not None else message["text"])
        await upstream.close()

    async def to_client() -> None:
        with contextlib.suppress(ConnectionClosed):
            async for data in upstream:
                key = "bytes" if isinstance(data, bytes) else "text"
                await send({"type": "websocket.send", key: data})
        with contextlib.suppress(Exception):  # the client may be gone already
            await send({"type": "websocket.close", "code": upstream.close_code or 1000})

    tasks = [asyncio.create_task(to_app()), asyncio.create_task(to_client())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await upstream.close()


def _timeout(seconds: float) -> Any:
    """``asyncio.timeout`` (no task per request) where there is one (Python 3.11+)."""
    if hasattr(asyncio, "timeout"):
        return asyncio.timeout(seconds)
    return _WaitFor(seconds)


class _WaitFor:
    """Python 3.10: cancel the current task after ``seconds`` (raising TimeoutError), as asyncio.timeout does."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.handle: asyncio.TimerHandle | None = None
        self.fired = False

    async def __aenter__(self) -> None:
        task = asyncio.current_task()
        assert task is not None

        def fire() -> None:
            self.fired = True
            task.cancel()

        self.handle = asyncio.get_running_loop().call_later(self.seconds, fire)

    async def __aexit__(self, kind: Any, exc: Any, tb: Any) -> bool:
        assert self.handle is not None
        self.handle.cancel()
        if self.fired and kind is asyncio.CancelledError:
            raise asyncio.TimeoutError
        return False


async def _body(receive: Receive) -> AsyncIterator[bytes]:
    """The request body as it arrives (never buffered whole)."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        chunk = message.get("body", b"")
        if chunk:
            yield chunk
        if not message.get("more_body", False):
            return


async def _answer(send: Send, status: int, text: str) -> None:
    body = (text + "\n").encode()
    headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode())]
    with contextlib.suppress(Exception):  # the response may have started already (a 504 mid-stream)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})
