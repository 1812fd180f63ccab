"""The only path from the SDK to the control plane: an async HTTP client, and finding (or starting) a server.

Transport errors are retried for a while (a server restart is survivable); HTTP errors become the exception
named by the server's error body.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import msgpack
import msgspec

from . import _servers, exception
from ._http import AsyncHTTP, Response, TransportError
from ._loop import new_event_loop
from .config import container_env, settings
from .protocol import messages, routes

MSGPACK = "application/msgpack"
T = TypeVar("T")


class Patience(msgspec.Struct, frozen=True):
    """How long a request keeps trying while the server is unreachable or busy: one policy for every client."""

    unreachable: float  # seconds a server that answered before may be unreachable (a restart) before requests fail
    first_contact: float  # ... and a server that never answered this client
    busy: frozenset[int]  # statuses retried after their Retry-After (rate-limited, store busy) until that deadline


CALLER = Patience(60.0, 5.0, frozenset({429, 503}))  # the SDK and CLI: a user waits on them
CONTAINER = Patience(30.0, 30.0, frozenset({503, 507}))  # a container outlasts a restart or a full disk, then exits


class Client:
    """Async client of one control plane: the SDK, the CLI and containers (through :class:`SyncClient`)."""

    def __init__(self, url: str, token: str | None, patience: Patience = CALLER, timeout: float = 90.0) -> None:
        self.url = ",".join(u.strip().rstrip("/") for u in url.split(","))  # several: an active server, standbys
        headers = {"authorization": f"Bearer {token}"} if token else {}
        self.http = AsyncHTTP(self.url, headers, timeout)
        self.patience = patience
        self._reached = False  # once the server answered, an unreachable spell is a restart worth waiting for

    async def call(self, method: str, path: str, message: Any, reply: type[T], *, releasable: bool = False) -> T:
        """Send a typed message (``None``: no body) and decode the answer as ``reply``. ``releasable``: the
        server holds it until another request follows it (``_http.AsyncHTTP``)."""
        content = b"" if message is None else messages.encode(message)
        resp = await self._send(method, path, content, PACKED_HEADERS, releasable=releasable)
        if resp.status >= 400:
            self._decode(resp)
        try:
            return messages.decode(resp.content, reply)
        except messages.MalformedBody as exc:
            raise exception.ServerError(f"The server at {self.url} answered {path} with {exc}") from None

    async def request(self, method: str, path: str, body: dict[str, Any] | None = None, *, packed: bool = False) -> Any:
        """Send a request; ``packed`` sends and expects msgpack, else JSON."""
        if packed:
            content = msgpack.packb(body or {}, use_bin_type=True)
            headers = PACKED_HEADERS
        else:
            content = json.dumps(body or {}).encode() if body is not None else b""
            headers = JSON_HEADERS
        return self._decode(await self._send(method, path, content, headers))

    async def _send(
        self, method: str, path: str, content: bytes, headers: dict[str, str] | None = None, releasable: bool = False
    ) -> Response:
        """One request, retried while the server is unreachable (restarting), rate-limited or busy."""
        deadline = time.monotonic() + (self.patience.unreachable if self._reached else self.patience.first_contact)
        delay = 0.05
        while True:
            try:
                resp = await self.http.request(method, path, content, headers, releasable=releasable)
            except TransportError as exc:
                if time.monotonic() > deadline:
                    raise exception.ConnectionError(
                        f"Cannot reach the Shoal server at {self.url} ({exc}). Is it running? Start one with "
                        "`shoal server start`, or unset SHOAL_SERVER_URL to use this home's own server."
                    ) from exc
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
                continue
            self._reached = True
            warning = resp.headers.get("x-shoal-warning")
            if warning:
                _warn_once_a_minute(warning)
            if resp.status in self.patience.busy and time.monotonic() < deadline:
                await asyncio.sleep(float(resp.headers.get("retry-after", "1")))
                continue
            return resp

    def _decode(self, resp: Response) -> Any:
        if resp.status >= 400:
            try:
                err = json.loads(resp.content)["error"]
                kind, message = err["type"], err["message"]
            except Exception:
                kind, message = "ServerError", f"HTTP {resp.status}: {resp.content[:500].decode(errors='replace')}"
            cls = getattr(exception, kind, None)
            if not (isinstance(cls, type) and issubclass(cls, exception.Error)):
                cls = exception.ServerError if resp.status >= 500 else exception.RemoteError
            raise cls(message)
        if not resp.content:
            return {}
        if resp.content_type.startswith(MSGPACK):
            return msgpack.unpackb(resp.content, raw=False)
        if resp.content_type.startswith("application/json"):
            return json.loads(resp.content)
        return resp.content

    async def send_raw(self, method: str, path: str, data: bytes) -> Any:
        """Send raw bytes (a file's content) and decode the answer."""
        return self._decode(await self._send(method, path, data))

    async def put_blob(self, blob_id: str, data: bytes, *, payload: bool = False) -> None:
        """Upload a blob; ``payload``: it is an input's or a result's, removed if no call ever names it."""
        path = routes.path(routes.BLOB, blob_id=blob_id)
        await self.send_raw("PUT", path + "?payload=1" if payload else path, data)

    async def has_blob(self, blob_id: str) -> bool:
        return (await self._send("HEAD", routes.path(routes.BLOB, blob_id=blob_id), b"")).status == 200

    async def get_blob(self, blob_id: str) -> bytes:
        return self._decode(await self._send("GET", routes.path(routes.BLOB, blob_id=blob_id), b""))  # type: ignore[no-any-return]

    async def aclose(self) -> None:
        await self.http.aclose()


class SyncClient:
    """The blocking face of :class:`Client` for one thread: the same requests, run on the thread's own loop."""

    def __init__(self, url: str, token: str | None, patience: Patience = CALLER, timeout: float = 90.0) -> None:
        self.loop = new_event_loop()
        self.client = Client(url, token, patience, timeout)

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        try:
            return self.loop.run_until_complete(coro)
        except BaseException:  # e.g. a signal handler's SystemExit mid-request: leave nothing half-done behind
            pending = asyncio.all_tasks(self.loop)
            for task in pending:
                task.cancel()
            if pending:
                self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            raise

    def call(self, method: str, path: str, message: Any, reply: type[T]) -> T:
        return self.run(self.client.call(method, path, message, reply))

    def close(self) -> None:
        self.run(self.client.aclose())
        self.loop.close()


class SharedClient:
    """The blocking face of one :class:`Client` shared by a process's threads: each request runs on one event loop
    in a daemon thread, so the threads share one pool of connections. A container's exchanges (its main thread)
    then go behind its held beat (another thread) on one connection (``_http.AsyncHTTP``), where a
    :class:`SyncClient` per thread would hold a second connection for each container."""

    def __init__(self, url: str, token: str | None, patience: Patience = CALLER, timeout: float = 90.0) -> None:
        self.loop = new_event_loop()
        self.client = Client(url, token, patience, timeout)
        threading.Thread(target=self.loop.run_forever, name="shoal-transport", daemon=True).start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result()
        except BaseException:  # e.g. a signal handler's SystemExit while waiting: the request is abandoned
            future.cancel()
            raise

    def call(self, method: str, path: str, message: Any, reply: type[T], *, releasable: bool = False) -> T:
        return self.run(self.client.call(method, path, message, reply, releasable=releasable))

    def close(self) -> None:
        self.run(self.client.aclose())
        self.loop.call_soon_threadsafe(self.loop.stop)


PACKED_HEADERS = {"content-type": MSGPACK}
JSON_HEADERS = {"content-type": "application/json"}


# ---- finding a server -------------------------------------------------------------------------------


_warned_at: dict[str, float] = {}


def _warn_once_a_minute(text: str) -> None:
    """A warning the server attaches to its answers (its disk is full), on the caller's terminal once a minute."""
    now = time.monotonic()
    if now - _warned_at.get(text, -60.0) >= 60.0:
        _warned_at[text] = now
        print(f"⚠ {text}", file=sys.stderr, flush=True)


def _healthy(url: str, timeout: float = 0.5) -> bool:
    try:
        probe = SyncClient(url, None, Patience(0.0, 0.0, frozenset()), timeout)
        try:
            return probe.run(probe.client._send("GET", routes.HEALTH, b"")).status == 200
        finally:
            probe.close()
    except exception.ConnectionError:
        return False


def _token(url: str) -> str | None:
    """What to present to the server at ``url``: SHOAL_TOKEN, a container's own token, or the local token of this
    home's server there."""
    container = container_env()
    return settings().token or (container.container_token if container else None) or _servers.token_for(url)


def dashboard_link(url: str, kind: str, object_id: str) -> str:
    """The dashboard page of an object, as this process prints it: on a server without a token (loopback only),
    with the home's local token, which logs the browser in (the dashboard asks every visitor for a token: the
    containers share the loopback)."""
    link = routes.dashboard_url(url, kind, object_id)
    local = None if settings().token or container_env() else _servers.token_for(url)
    return f"{link}?token={local}" if local and local.startswith("shl-") else link


class EmbeddedServer:
    """A control plane in a child process, for the life of this process's ``app.run()``. It is started at once;
    :attr:`url` waits until it serves."""

    def __init__(self) -> None:
        home = settings().home
        self.state_dir = home / "embedded" / str(os.getpid())
        self.state_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.state_dir / "server.log", "ab")  # noqa: SIM115 - the child keeps it
        self.proc = subprocess.Popen(  # a session of its own: the terminal's Ctrl-C is for the client, which stops it
            [sys.executable, "-m", "shoal.server", "--port", "0", "--state-dir", str(self.state_dir),
             "--parent-pid", str(os.getpid())],
            stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        log.close()
        self._url: str | None = None
        self._reading = threading.Lock()  # one reader of the server's first line, whichever thread asks first

    @property
    def url(self) -> str:
        """The server's URL, once it has said it (it then serves, or queues requests until it does).

        Raises:
            ConnectionError: the server did not start.
        """
        with self._reading:
            if self._url is None:
                assert self.proc.stdout is not None
                line = self.proc.stdout.readline().decode().strip()
                if not line.startswith("SHOAL_SERVER_URL="):
                    self.proc.kill()
                    raise exception.ConnectionError(
                        f"The embedded Shoal server did not start; see {self.state_dir / 'server.log'}"
                    )
                self._url = line.split("=", 1)[1]
            return self._url

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()
        import shutil

        shutil.rmtree(self.state_dir, ignore_errors=True)


_state_lock = threading.Lock()
_embedded: EmbeddedServer | None = None
_embedded_users = 0
_clients: dict[tuple[str, str | None], Client] = {}


def configured_url() -> str | None:
    """The server this process should talk to without starting one: SHOAL_SERVER_URL, else this process's
    embedded server, else this home's standing server (found through its record, never by probing a port)."""
    cfg = settings()
    if cfg.server_url:
        return cfg.server_url
    if _embedded is not None:
        return _embedded.url
    record = _servers.standing()
    if record is None:
        return None
    if not _healthy(record.url, STANDING_PATIENCE):  # never a silent switch to an embedded server
        raise exception.ConnectionError(
            f"This home's standing Shoal server (pid {record.pid}, {record.url}) does not answer. Look at its log "
            f"({settings().home / 'server.log'}); restart it with `shoal server stop && shoal server start`."
        )
    return record.url


STANDING_PATIENCE = 5.0  # seconds a busy standing server has to answer /health before a run gives up on it


def server_kind(url: str) -> str:
    """How this process came to use the server at ``url``, in words (the first line of every run says it)."""
    if settings().server_url == url:
        return "SHOAL_SERVER_URL"
    if _embedded is not None and _embedded.url == url:
        return "an embedded server for this run"
    return f"the standing server of {settings().home}"


def embedded_urls() -> list[str]:
    """URLs of embedded servers that other processes of this home are running now."""
    return [r.url for r in _servers.live() if r.kind == "embedded"]


def acquire_server() -> str:
    """URL of the server for an ``app.run()``: configured or standing, else a new embedded one (ref-counted)."""
    global _embedded, _embedded_users
    with _state_lock:
        try:
            url = configured_url()
        except exception.ConnectionError:
            if _embedded is not None:  # started early (prestart_server), and it did not start
                _embedded.stop()
                _embedded = None
            raise
        if url is not None and _embedded is None:
            return url
        if _embedded is None:
            _embedded = EmbeddedServer()
        _embedded_users += 1
        return _embedded.url


def prestart_server() -> None:
    """Start the embedded server an ``app.run()`` of this process will use, now, without waiting for it: where
    no server is configured (SHOAL_SERVER_URL) and this home has no standing server. ``shoal run`` calls this
    before it imports the app's module, so the server's start runs beside those imports. The first
    ``app.run()`` takes it; if none does, it stops when this process exits."""
    global _embedded
    with _state_lock:
        if _embedded is not None or settings().server_url or _servers.standing() is not None:
            return
        _embedded = EmbeddedServer()
    atexit.register(_stop_unused)


def _stop_unused() -> None:
    global _embedded
    with _state_lock:
        if _embedded is not None and _embedded_users <= 0:
            _embedded.stop()
            _embedded = None


def release_server(url: str) -> None:
    global _embedded, _embedded_users
    with _state_lock:
        if _embedded is None or _embedded.url != url:
            return
        _embedded_users -= 1
        if _embedded_users <= 0:
            client = _clients.pop((url, _token(url)), None)
            if client is not None:
                from ._sync import run_sync

                run_sync(client.aclose())
            _embedded.stop()
            _embedded = None


def client_for(url: str) -> Client:
    """The (cached) client of the server at ``url``."""
    key = (url, _token(url))
    with _state_lock:
        client = _clients.get(key)
        if client is None:
            client = _clients[key] = Client(url, key[1])
        return client


def lookup_urls() -> list[str]:
    """Servers to ask about an id created elsewhere: the configured/standing one, then running embedded ones."""
    url = configured_url()
    urls = [url] if url else []
    return urls + [u for u in embedded_urls() if u not in urls]


def state_home() -> Path:
    return settings().home
