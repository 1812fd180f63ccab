"""Modal's "web job queue" shapes, unchanged (issue 25, items 13 and 14): an ASGI app whose /factors handler spawns
a function and redirects to /result, which polls ``FunctionCall.from_id(id).get(timeout=0)``; and handlers that
stream another function's ``.remote_gen()`` items and a ``.map()``'s results with StreamingResponse."""

import time

import modal
from fastapi import FastAPI
from fastapi.responses import RedirectResponse, StreamingResponse
from modal.functions import FunctionCall

app = modal.App("modal-poll-page")
web = FastAPI()


@app.function()
def factor(n: int) -> list[int]:
    time.sleep(1.0)
    return [d for d in range(1, n + 1) if n % d == 0]


@app.function()
def count_up(n: int):
    for i in range(n):
        time.sleep(0.1)
        yield f"item {i}\n"


@app.function()
def square(x: int) -> str:
    return f"{x * x}\n"


@web.get("/factors")
def start(n: int) -> RedirectResponse:
    call = factor.spawn(n)
    return RedirectResponse(f"/result?function_id={call.object_id}", status_code=302)


@web.get("/result")
def result(function_id: str) -> dict:
    try:
        return {"factors": FunctionCall.from_id(function_id).get(timeout=0)}
    except TimeoutError:
        return {"status": "not ready"}


@web.get("/generated")
def generated(n: int = 5) -> StreamingResponse:
    return StreamingResponse(count_up.remote_gen(n), media_type="text/plain")


@web.get("/mapped")
def mapped(n: int = 5) -> StreamingResponse:
    return StreamingResponse(square.map(range(n)), media_type="text/plain")


@app.function()
@modal.asgi_app()
def fastapi_app() -> FastAPI:
    return web
