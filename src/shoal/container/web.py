"""A web function's container: build its app once (after ``@enter``) and serve it on a port of its own.

The port is on the loopback, or, on a Ray node of another machine, on the node's address (``SHOAL_WEB_HOST``, set
by the backend), which the gateway reaches. The gateway in the control plane proxies each request of the
endpoint's URL to this port with a key of this container's (``SHOAL_WEB_KEY``); the app answers nobody else (403),
and sees its own root. ``fastapi_endpoint`` wraps the function as a FastAPI route at ``/``; ``asgi_app`` and
``wsgi_app`` call it for the app; ``web_server`` calls it to start a server of its own and waits for its port
to accept connections (such a server checks no key: it is the user's).
"""

from __future__ import annotations

import hmac
import socket
import threading
import time
from typing import Any

from .. import _loop
from .._context import _current_input, set_current_input
from ..config import container_env
from ..exception import InvalidError
from ..protocol import routes

try:
    import uvicorn
except ImportError:  # an image without a web server
    raise InvalidError(
        "A web function's container needs uvicorn: add it to the function's image, e.g. "
        "Image.debian_slim().pip_install('fastapi[standard]')"
    ) from None
from ..partial import WebConfig
from .usercode import UserCode


class WebServer:
    """The app, served by uvicorn on a thread of its own (the main thread keeps the container's signals)."""

    def __init__(self, code: UserCode, web: WebConfig, method: str | None = None) -> None:
        self.web = web
        self.done = threading.Event()
        self.server: uvicorn.Server | None = None
        self.port = 0
        env = container_env()
        self.host = env.web_host if env else "127.0.0.1"
        target = getattr(code.instance, method) if method else code.fn  # a web method: bound, after @enter
        if web.kind == "server":
            code.resolve(target())  # starts the user's own server
            self.port = _await_port(self.host, web.port or 0, web.startup_timeout)
            return
        app = only_from_gateway(as_calls(build_app(code, web, target)), env.web_key if env else "")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # no Nagle delay on small answers
        sock.bind((self.host, 0))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=5,
                                timeout_keep_alive=300,  # the gateway keeps its connections
                                lifespan="off" if web.kind == "wsgi" else "auto")  # fmt: skip
        self.server = uvicorn.Server(config)
        thread = threading.Thread(target=self._run, args=(sock,), name="shoal-web", daemon=True)
        thread.start()
        deadline = time.monotonic() + max(web.startup_timeout, 30.0)
        while not self.server.started:
            if self.done.is_set() or time.monotonic() > deadline:
                raise RuntimeError("the web app did not start (see the container's output above)")
            time.sleep(0.01)

    def _run(self, sock: socket.socket) -> None:
        assert self.server is not None
        try:
            _loop.run(self.server.serve(sockets=[sock]))
        finally:
            self.done.set()

    def wait(self) -> None:
        """Until the app stops (a signal handler's SystemExit ends the wait sooner)."""
        if self.server is None:
            threading.Event().wait()
        self.done.wait()

    def stop(self, grace: float = 5.0) -> None:
        """Stop taking requests and let the ones in flight finish, for up to ``grace`` seconds."""
        if self.server is not None:
            self.server.should_exit = True
            self.done.wait(grace)


def build_app(code: UserCode, web: WebConfig, target: Any) -> Any:
    """The ASGI app of a web function (or method: ``target`` is then bound to the container's instance)."""
    if web.kind == "fastapi":
        try:
            from fastapi import FastAPI
        except ImportError:
            raise InvalidError(
                "fastapi_endpoint needs FastAPI where the container runs: pip install fastapi, or add it to the "
                "function's image (Image.debian_slim().pip_install('fastapi'))"
            ) from None
        app = FastAPI(redoc_url=None, docs_url="/docs" if web.docs else None,
                      openapi_url="/openapi.json" if web.docs else None)  # fmt: skip
        app.add_api_route("/", target, methods=[web.method])
        return app
    made = code.resolve(target())
    if web.kind == "wsgi":
        from a2wsgi import WSGIMiddleware

        return WSGIMiddleware(made)
    return made


def only_from_gateway(app: Any, key: str) -> Any:
    """``app``, answering only requests that carry the gateway's key for this container (none: every request, as
    in a container started by hand); the key is taken off before the app sees the request."""
    if not key:
        return app
    expected = key.encode()

    async def guarded(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            await app(scope, receive, send)
            return
        presented = next((v for k, v in scope.get("headers", []) if k == routes.GATEWAY_KEY_HEADER), b"")
        if not hmac.compare_digest(presented, expected):
            await _refuse(scope, send)
            return
        headers = [(k, v) for k, v in scope["headers"] if k != routes.GATEWAY_KEY_HEADER]
        await app({**scope, "headers": headers}, receive, send)

    return guarded


async def _refuse(scope: dict[str, Any], send: Any) -> None:
    """403 to a request that did not come through the gateway (a websocket is closed before it opens)."""
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008})
        return
    body = b"This port answers the Shoal gateway only: call the endpoint's URL.\n"
    headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 403, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def as_calls(app: Any) -> Any:
    """Run each request as the call the gateway made of it: ``shoal.current_function_call_id()`` in a handler
    is that call, and what the handler calls hangs under it in ``FunctionCall.get_call_graph()`` (the control
    plane sees those calls made from the request's input, and keeps the request as a call)."""

    async def wrapped(scope: dict[str, Any], receive: Any, send: Any) -> None:
        call_id = next((v for k, v in scope.get("headers", []) if k == b"x-shoal-call-id"), None)
        token = set_current_input(call_id.decode() if call_id else None, 0)
        try:
            await app(scope, receive, send)
        finally:
            _current_input.reset(token)

    return wrapped


def _await_port(host: str, port: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return port
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"web_server(port={port}): nothing accepted connections on that port within "
                    f"startup_timeout={timeout:g}s"
                ) from None
            time.sleep(0.05)
