"""Functions used by the end-to-end tests (importable, so containers can import them)."""

from __future__ import annotations

import time

import shoal
from tests.apps import me

app = shoal.App("tests-basic")


class CustomError(Exception):
    """A user exception type that must come back as itself."""


class Unpicklable:
    def __reduce__(self):  # noqa: ANN204
        raise TypeError("this object refuses to be pickled")


@app.function(max_containers=2)
def square(x: int) -> int:
    return x * x


@app.function(max_containers=2)
def add(a: int, b: int, c: int = 0) -> int:
    return a + b + c


@app.function(max_containers=2)
def fail_on_odd(x: int) -> int:
    if x % 2:
        raise CustomError(f"odd input {x}")
    return x


@app.function(max_containers=2)
def slow_identity(x: int, delay: float = 0.2) -> int:
    time.sleep(delay)
    return x


@app.function(max_containers=1)
def nested_sum(n: int) -> int:
    return sum(square.map(range(n)))


@app.function(max_containers=2)
def whoami(x: int) -> dict:
    return {
        "input_id": shoal.current_input_id(),
        "call_id": shoal.current_function_call_id(),
        "is_local": shoal.is_local(),
        "pid": me(),
    }


@app.function(max_containers=1)
def chatty(x: int) -> int:
    print(f"hello from input {x}")
    return x


@app.function(max_containers=1)
def returns_unpicklable(x: int) -> object:
    return Unpicklable()


@app.function(max_containers=1)
def echo_bytes(data: bytes) -> int:
    return len(data)


@app.function(max_containers=1)
async def async_double(x: int) -> int:
    import asyncio

    await asyncio.sleep(0.01)
    return 2 * x
