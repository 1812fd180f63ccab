"""An app driven through the `shoal` command line in the CLI tests."""

from __future__ import annotations

import datetime
import itertools
import os
import time
from collections.abc import Iterator
from typing import Literal, Optional

import shoal

app = shoal.App("cli-app")


@app.function(max_containers=2)
def double(x: int) -> int:
    print(f"doubling {x}")
    return 2 * x


@app.function(max_containers=4)
def touch(directory: str, i: int) -> int:
    time.sleep(0.05)
    with open(os.path.join(directory, f"{i}.done"), "w") as f:
        f.write(os.environ.get("SHOAL_CONTAINER_ID", ""))  # run as a script: no tests package here
    return i


@app.local_entrypoint()
def main(
    n: int,
    label: str = "x",
    verbose: bool = False,
    when: Optional[datetime.datetime] = None,  # noqa: UP045 - the CLI must accept typing.Optional
    mode: Literal["fast", "slow"] = "fast",
    ratio: float = 1.5,
) -> None:
    total = sum(double.map(range(n)))
    print(f"ARGS n={n} label={label} verbose={verbose} when={when} mode={mode} ratio={ratio} total={total}")


@app.local_entrypoint()
def fan_out(directory: str, count: int = 500) -> None:
    call = touch.spawn_map([directory] * count, range(count))
    print(f"SUBMITTED {call.object_id}", flush=True)
    time.sleep(3600)  # the test kills this client here


@app.local_entrypoint()
def text() -> str:
    return "written by -w"


@app.local_entrypoint()
def fails() -> None:
    double.remote(None)  # type: ignore[arg-type]


@app.cls(max_containers=1)
class Greeter:
    greeting: str = shoal.parameter(default="hello")

    @shoal.enter()
    def load(self) -> None:
        self.suffix = "!"

    @shoal.method()
    def greet(self, name: str, times: int = 1) -> str:
        return " ".join([f"{self.greeting} {name}{self.suffix}"] * times)


@app.local_entrypoint()
def map_and_wait(directory: str, count: int = 400) -> None:
    results = touch.map([directory] * count, range(count))
    next(results)
    print(f"MAPPING {results.function_call_id}", flush=True)
    for _ in results:
        pass


@app.function(max_containers=4)
def shout(k: int, lines: int) -> int:
    for i in range(lines):
        print(f"input {k} line {i}")
    return lines


@app.local_entrypoint()
def many_lines(inputs: int = 4, lines: int = 25_000) -> None:
    print(f"TOTAL {sum(shout.map(range(inputs), kwargs={'lines': lines}))}")


@app.function(max_containers=4)
def check(x: int) -> int:
    if x % 10 == 3:
        raise ValueError(f"record {x * 1000 + 999} has a negative amount")
    return x


@app.local_entrypoint()
def audit(count: int = 50) -> None:
    """A batch whose failures are returned: ``shoal call status`` groups them."""
    results = check.map(range(count), return_exceptions=True)
    failed = sum(isinstance(r, Exception) for r in results)
    print(f"AUDITED {results.function_call_id} {failed}", flush=True)


@app.local_entrypoint()
def map_while_submitting(directory: str) -> None:
    """A map whose inputs come slowly after the first 50 (a long iterable): interrupted while submitting them."""

    def slowly() -> Iterator[int]:
        for i in range(100_000):
            if i >= 50:
                time.sleep(0.02)
            yield i

    results = touch.map(itertools.repeat(directory), slowly())
    next(results)
    print(f"MAPPING {results.function_call_id}", flush=True)
    for _ in results:
        pass
