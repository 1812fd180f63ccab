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
import functools
import json
import logging
import os
import socket
import time
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._ids import new_id
from ..config import settings
from ..protocol import routes
from ..protocol.specs import FunctionSpec
from . import clock, listener
from .auth import Denied
from .core.lifecycle import FATAL_STARTUP_FAILURES
from .core.records import FunctionRecord
from .http_limits import ConnectionBudget
from .listen import bind
from .listener import Headers, Reply, Request
from .upstream import CHUNK, Address, Response, Upstream, UpstreamError

if TYPE_CHECKING:
    from .control import ControlPlane

log = logging.getLogger("shoal.gateway")
HOP_BY_HOP = {b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization", b"te", b"trailer",
              b"transfer-encoding", b"upgrade", b"host", b"content-length"}  # fmt: skip
LOOKUP_TTL = 0.5  # seconds a request may act on what the store said of its endpoint (a stopped app: 404 after)
CALL_HEADER = b"x-shoal-call-id"  # tells the container which call a request is (shoal.current_function_call_id())


class NoCapacity(Exception):
    """No container took the request in time."""


class Gateway:
    def __init__(self, plane: ControlPlane, host: str) -> None:
        self.plane = plane
        self.host = host
        self.functions: dict[str, str] = {}  # label -> function id serving it now
        self.listeners: dict[str, tuple[asyncio.AbstractServer, set[listener.Connection]]] = {}
        self.waiting: dict[str, int] = defaultdict(int)  # function id -> requests waiting for a container
        self.inflight: dict[str, int] = defaultdict(int)  # container id -> requests it is serving
        self.serving_function: dict[str, str] = {}  # container id -> its function, while it serves requests
        self.upstream = Upstream()
        self.budget = ConnectionBudget()  # the endpoint ports' connections together (http_limits.py)
        self.request_logs: dict[tuple[str, str], list[str]] = defaultdict(list)  # (app, container) -> lines
        self.requests: list[tuple[str, str, str, float, float, bool]] = []  # finished requests, as calls to record
        self.open: set[str] = set()  # the calls of requests in flight
        self.calling: set[str] = set()  # requests whose handlers called functions (kept as calls when done)
        self.lookups: dict[str, tuple[float, FunctionRecord | None]] = {}  # label -> (when, what serves it)
        self.containers: dict[str, tuple[float, list[tuple[str, Address]]]] = {}  # function -> (when, serving ones)
        self.touched: dict[str, float] = {}  # container -> when its last_active was last written
        self._flusher: asyncio.Task[None] | None = None

    # ---- endpoints --------------------------------------------------------------------------------

    async def expose(self, label: str, function_id: str, app_id: str) -> str:
        """Serve ``label`` from ``function_id`` now (a redeploy moves the label); returns the endpoint's URL."""
        home = self.plane.config.home_ports  # an embedded server's store ends with its run; the home stays
        port = self.plane.store.endpoint_port(label) or (remembered_port(label) if home else None)
        sock = self._bind(port or 0) if label not in self.listeners else None
        if sock is not None and port and sock.getsockname()[1] != port:
            moved = sock.getsockname()[1]
            log.warning("endpoint %s could not get its port %s back; it moved to %s", label, port, moved)
        if sock is not None:
            port = sock.getsockname()[1]
            self.listeners[label] = await listener.serve(functools.partial(self._serve, label), sock, self.budget)
        assert port is not None
        self.plane.store.bind_endpoint(label, app_id, function_id, port)
        if home:
            remember_port(label, port)
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
        await asyncio.gather(*(listener.close(*served, grace=2.0) for served in self.listeners.values()))
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

    def _admit(self, label: str, request: Request) -> tuple[FunctionRecord | None, int, str]:
        """(the function serving the request, or None with the status and reason to refuse it)."""
        found = self._endpoint(label)
        if found is None:
            return None, 404, f"No running app serves the endpoint {label!r}."
        if found.spec.web is not None and found.spec.web.requires_proxy_auth and not self._authorized(request):
            return None, 401, "This endpoint requires proxy auth: send `Authorization: Bearer <Shoal token>`."
        return found, 200, ""

    async def _serve(self, label: str, request: Request, reply: Reply) -> None:
        found, refusal, reason = self._admit(label, request)
        if found is None:
            reply.answer(refusal, reason)
            return
        spec = found.spec
        started, started_at = time.monotonic(), clock.now()
        call_id = new_id("call")  # the request is a call: what the handler calls hangs under it (get_call_graph)
        self.open.add(call_id)
        try:
            container_id, address = await self._acquire(found.id, spec)
        except NoCapacity as exc:
            self.open.discard(call_id)
            reply.answer(503, str(exc))
            return
        status = 502
        try:
            if request.upgrade:  # a websocket: no timeout, it lasts as long as both ends keep it
                status = await self._tunnel(address, request, reply, self._forwarded(request, call_id, container_id))
            else:
                async with _timeout(spec.timeout):
                    status = await self._proxy(address, request, reply, self._forwarded(request, call_id, container_id))
        except asyncio.TimeoutError:
            status = 504
            reply.answer(504, f"The endpoint did not answer within its function's timeout={spec.timeout:g}s.")
        except UpstreamError as exc:
            reply.answer(502, f"The container serving this endpoint failed mid-request ({type(exc).__name__}).")
        finally:
            self.open.discard(call_id)
            self._release(container_id, found.id)
            took = (time.monotonic() - started) * 1000
            self.request_logs[(found.app_id, container_id)].append(
                f"{request.method} {request.path} -> {status} in {took:.0f} ms"
            )
            if call_id in self.calling:  # its handler called functions: keep it as a call, the root of their graph
                self.calling.discard(call_id)
                self.requests.append((call_id, found.id, found.app_id, started_at, clock.now(), status >= 500))

    def _authorized(self, request: Request) -> bool:
        presented = (request.header(b"authorization") or b"").decode("latin-1").removeprefix("Bearer ").strip()
        try:
            self.plane.authorizer.identify("client", presented, request.client or "?")
        except Denied:
            return False
        return bool(presented)

    async def _acquire(self, function_id: str, spec: FunctionSpec) -> tuple[str, Address]:
        """A container of the function with a free slot (starting one if needed), waiting up to its startup time."""
        capacity = spec.concurrency.max_inputs if spec.concurrency else 1
        free = self._free_slot(function_id, capacity)
        if free is not None:  # the common case under load: no waiting, nothing for the scheduler to do
            return free
        deadline = time.monotonic() + spec.startup_timeout + (spec.web.startup_timeout if spec.web else 0.0)
        self.waiting[function_id] += 1
        self.plane.wake_scheduler()
        try:
            while True:
                free = self._free_slot(function_id, capacity)
                if free is not None:
                    return free
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

    def _free_slot(self, function_id: str, capacity: int) -> tuple[str, Address] | None:
        """Take a slot of a serving container of the function that has one free."""
        for container_id, address in self._web_containers(function_id):
            if self.inflight[container_id] < capacity:
                self.inflight[container_id] += 1
                self.serving_function[container_id] = function_id
                self._touch(container_id)
                return container_id, address
        return None

    def _web_containers(self, function_id: str) -> list[tuple[str, Address]]:
        """The function's serving containers: looked up again when one came or went, or every LOOKUP_TTL s."""
        now = time.monotonic()
        cached = self.containers.get(function_id)
        if cached is None or now - cached[0] >= LOOKUP_TTL:
            cached = self.containers[function_id] = (now, self.plane.store.web_containers(function_id))
        return cached[1]

    def called_from(self, call_id: str) -> None:
        """A new call was made from ``call_id``'s input: if that is a request in flight, keep it as a call."""
        if call_id in self.open:
            self.calling.add(call_id)

    def containers_changed(self, function_id: str) -> None:
        """A container of the function became ready, or stopped: look again."""
        self.containers.pop(function_id, None)

    def app_stopped(self) -> None:
        """An app stopped: the endpoints' lookups are stale now (a request that follows the stop gets 404, not a
        container of the stopped app for up to LOOKUP_TTL)."""
        self.lookups.clear()

    def _release(self, container_id: str, function_id: str) -> None:
        self.inflight[container_id] -= 1
        if self.inflight[container_id] <= 0:
            del self.inflight[container_id]
            del self.serving_function[container_id]
        self._touch(container_id)
        if self.waiting.get(function_id):
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

    def _forwarded(self, request: Request, call_id: str, container_id: str) -> Headers:
        """The request's headers as the app gets them: hop-by-hop ones dropped, forwarding ones set by the gateway."""
        host = request.header(b"host") or b""
        kept = [
            (k, v)
            for k, v in request.headers
            if k not in HOP_BY_HOP and not k.startswith((b"x-forwarded", b"x-shoal-"))
        ]
        kept += [(routes.GATEWAY_KEY_HEADER, self.plane.container_keys.web_key(container_id).encode()),
                 (CALL_HEADER, call_id.encode()), (b"host", host), (b"x-forwarded-for", request.client.encode()),
                 (b"x-forwarded-proto", b"http"), (b"x-forwarded-host", host)]  # fmt: skip
        return kept

    async def _send_upstream(
        self, address: Address, request: Request, headers: Headers, upgrade: bytes | None = None
    ) -> Response:
        return await self.upstream.request(address, request.method, request.target.decode("latin-1"),
                                           headers, request.body(), request.length,
                                           request.chunked, upgrade=upgrade)  # fmt: skip

    async def _proxy(self, address: Address, request: Request, reply: Reply, headers: Headers) -> int:
        """Forward one request to the container and stream its answer back; returns the status."""
        return await self._relay_answer(await self._send_upstream(address, request, headers), reply)

    async def _tunnel(self, address: Address, request: Request, reply: Reply, headers: Headers) -> int:
        """An upgrade (a websocket): once the app agrees (101), bytes pass both ways until either end closes."""
        response = await self._send_upstream(address, request, headers, request.header(b"upgrade") or b"websocket")
        if response.upgraded is None:  # the app refused: its answer goes to the client, and the connection ends
            reply.close_after()
            return await self._relay_answer(response, reply)
        reader, writer = response.upgraded
        head = [b"HTTP/1.1 101 Switching Protocols", *(k + b": " + v for k, v in response.headers)]
        reply.connection.write(b"\r\n".join(head) + b"\r\n\r\n")
        reply.started = True
        connection = reply.connection
        connection.take_over(writer.write)
        try:
            while chunk := await reader.read(CHUNK):
                connection.write(chunk)
                await connection.drain()
                if connection.closed:
                    break
        except OSError:
            pass
        finally:
            writer.close()
            connection.close()
        return 101

    async def _relay_answer(self, response: Response, reply: Reply) -> int:
        """The app's answer to the client, streamed as it comes; returns its status."""
        reply.start(response.status, [(k, v) for k, v in response.headers if k not in HOP_BY_HOP or
                                      k == b"content-length"])  # fmt: skip
        async for chunk in response.body:
            await reply.send(chunk)
        reply.end()
        return response.status


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


def _ports_file() -> Path:
    return settings().home / "endpoint_ports.json"


def remembered_port(label: str) -> int | None:
    """The port a label had on any server of this home (an embedded server's store ends with its run: this file
    keeps a label's URL from one `shoal serve` to the next, as Modal keeps it)."""
    try:
        port = json.loads(_ports_file().read_text()).get(label)
    except (OSError, ValueError, AttributeError):
        return None
    return port if isinstance(port, int) and 0 < port < 65536 else None


def remember_port(label: str, port: int) -> None:
    """Note a label's port for the next server of this home (best effort: a lost write costs a new URL only)."""
    path = _ports_file()
    try:
        known = json.loads(path.read_text()) if path.exists() else {}
        if not isinstance(known, dict) or known.get(label) == port:
            return
        known[label] = port
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = path.with_name(f"{path.name}.{os.getpid()}")
        temp.write_text(json.dumps(known, sort_keys=True))
        os.replace(temp, path)
    except (OSError, ValueError):
        log.debug("could not remember the port of endpoint %s", label)
