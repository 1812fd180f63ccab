"""Web endpoints for the end-to-end tests: every decorator, streaming, and the seed's kickoff-and-poll pattern."""

from __future__ import annotations

import asyncio
from typing import Any

import shoal
from tests.apps import me

app = shoal.App("tests-web")


@app.function()
@shoal.fastapi_endpoint()
def hello(name: str = "world", times: int = 1) -> dict[str, str]:
    return {"hello": " ".join([name] * times)}


@app.function()
@shoal.fastapi_endpoint(method="POST", docs=True)
def total(item: dict[str, Any]) -> dict[str, Any]:
    return {"total": sum(item["values"])}


@app.function()
@shoal.asgi_app()
def site() -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import HTMLResponse, StreamingResponse
    from starlette.routing import Route, WebSocketRoute
    from starlette.websockets import WebSocket

    async def index(request: Request) -> HTMLResponse:
        return HTMLResponse('<a href="/ticks">ticks</a> seen at ' + request.url.path)

    async def ticks(request: Request) -> StreamingResponse:
        async def chunks() -> Any:
            for i in range(3):
                yield f"tick {i}\n"
                await asyncio.sleep(0.4)

        return StreamingResponse(chunks(), media_type="text/plain")

    async def upload(request: Request) -> HTMLResponse:
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
        return HTMLResponse(str(size))

    async def echo(websocket: WebSocket) -> None:
        await websocket.accept()
        async for text in websocket.iter_text():
            await websocket.send_text(f"echo: {text}")

    routes = [Route("/", index), Route("/ticks", ticks), Route("/upload", upload, methods=["POST"])]
    return Starlette(routes=[*routes, WebSocketRoute("/echo", echo)])


@app.function()
@shoal.asgi_app()
def broken() -> Any:
    raise RuntimeError("this app cannot be built")


@app.function()
@shoal.asgi_app()
def with_lifespan() -> Any:
    import contextlib

    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> Any:
        app.state.started = "at container start"  # ASGI lifespan startup, once per container
        yield

    async def index(request: Request) -> JSONResponse:
        return JSONResponse({"started": request.app.state.started})

    return Starlette(routes=[Route("/", index)], lifespan=lifespan)


@app.function()
@shoal.web_server(8765, startup_timeout=10)
def own_server() -> None:
    import subprocess
    import sys

    subprocess.Popen([sys.executable, "-m", "http.server", "8765", "--bind", "127.0.0.1", "--directory", "/"])


@app.function()
@shoal.wsgi_app(label="tests-legacy")
def legacy() -> Any:
    def wsgi(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("content-type", "text/plain")])
        return [f"wsgi {environ['PATH_INFO']}?{environ['QUERY_STRING']}".encode()]

    return wsgi


@app.function(timeout=1)
@shoal.fastapi_endpoint()
def slow() -> str:
    import time

    time.sleep(3)
    return "too late"


@app.function(timeout=60)
@shoal.fastapi_endpoint()
def sleepy(seconds: float = 30) -> str:
    import time

    time.sleep(seconds)
    return "awake"


@app.function()
@shoal.fastapi_endpoint(requires_proxy_auth=True)
def guarded() -> str:
    return "secret handshake"


# ---- the seed pattern: POST a batch, get a job id, poll it --------------------------------------------


@app.function(max_containers=2)
def process(item: dict[str, int]) -> int:
    return item["x"] * 2


@app.function()
def run_batch(items: list[dict[str, int]]) -> int:
    return sum(process.map(items))


@app.function()
@shoal.fastapi_endpoint(method="POST")
def kickoff(items: list[dict[str, int]]) -> dict[str, str]:
    return {"job_id": run_batch.spawn(items).object_id}


@app.function()
@shoal.fastapi_endpoint()
def status(job_id: str) -> dict[str, Any]:
    try:
        return {"status": "done", "result": shoal.FunctionCall.from_id(job_id).get(timeout=0)}
    except TimeoutError:
        return {"status": "running"}


@app.function()
@shoal.asgi_app()
def guestbook() -> Any:
    """A page with a form (submitted by GET, so no form-parsing package is needed) and its answer."""
    from html import escape

    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import HTMLResponse
    from starlette.routing import Route

    async def form(request: Request) -> HTMLResponse:
        return HTMLResponse(
            "<html><body><h1>Guestbook</h1><form action='/sign' method='get'>"
            "<input id='name' name='name'><button id='sign' type='submit'>Sign</button></form></body></html>"
        )

    async def sign(request: Request) -> HTMLResponse:
        name = escape(request.query_params.get("name", ""))
        return HTMLResponse(f"<html><body><p id='thanks'>Thanks for signing, {name}!</p>"
                            "<a id='back' href='/'>back</a></body></html>")  # fmt: skip

    return Starlette(routes=[Route("/", form), Route("/sign", sign)])


@app.cls()
class Greeter:
    entered = 0

    @shoal.enter()
    def load(self) -> None:
        type(self).entered += 1  # once per container, before its first request
        self.greeting = "hello"

    @shoal.fastapi_endpoint()
    def greet(self, name: str = "world") -> dict[str, Any]:

        return {"greeting": f"{self.greeting}, {name}", "entered": type(self).entered, "pid": me()}

    @shoal.method()
    def shout(self, text: str) -> str:
        return text.upper()


@app.function()
@shoal.fastapi_endpoint()
def fan_out() -> dict[str, Any]:
    """A handler that calls other functions: they hang under the request's own call."""
    child = process.spawn({"x": 21})
    return {"call": shoal.current_function_call_id(), "child": child.object_id, "value": child.get()}
