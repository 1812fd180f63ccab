"""Generator functions for the remote_gen tests."""

from __future__ import annotations

import asyncio
import os
import time

import shoal

app = shoal.App("tests-generators")


class StreamError(Exception):
    """Raised by a generator after some items."""


@app.function()
def count(n: int):  # noqa: ANN201
    yield from range(n)


@app.function()
async def acount(n: int):  # noqa: ANN201
    for i in range(n):
        await asyncio.sleep(0)
        yield i


@app.function()
def fail_after(n: int):  # noqa: ANN201
    yield from range(n)
    raise StreamError(f"failed after {n} items")


@app.function()
def first_then_wait(directory: str):  # noqa: ANN201
    yield "first"
    deadline = time.monotonic() + 20
    while not os.path.exists(os.path.join(directory, "go")):  # the caller creates it once it has the first item
        if time.monotonic() > deadline:
            raise StreamError("the first item did not reach the caller while the generator ran")
        time.sleep(0.02)
    yield "second"


@app.function()
def endless(directory: str):  # noqa: ANN201
    try:
        i = 0
        while True:
            yield i
            i += 1
            time.sleep(0.05)
    finally:
        open(os.path.join(directory, "stopped"), "w").close()


@app.function()
def nested(n: int) -> list[int]:
    return list(count.remote_gen(n))


@app.cls()
class Tokenizer:
    prefix: str = shoal.parameter(default="tok")

    @shoal.method()
    def tokens(self, text: str):  # noqa: ANN201
        for word in text.split():
            yield f"{self.prefix}:{word}"
