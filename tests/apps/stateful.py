"""Classes, batching and concurrency for the end-to-end tests."""

from __future__ import annotations

import asyncio
import os
import time
import uuid

import shoal
from tests.apps import me

app = shoal.App("tests-stateful")


def _touch(directory: str, name: str) -> None:
    if directory:
        with open(os.path.join(directory, name), "w") as f:
            f.write(str(me()))


@app.cls(max_containers=2, scaledown_window=1)
class Counter:
    marker_dir: str = shoal.parameter(default="")
    label: str = shoal.parameter(default="plain")

    @shoal.enter()
    def first(self) -> None:
        self.order = ["first"]
        _touch(self.marker_dir, f"enter-{me()}-{uuid.uuid4().hex}")

    @shoal.enter()
    def second(self) -> None:
        self.order.append("second")

    @shoal.method()
    def hit(self, x: int) -> dict:
        return {"pid": me(), "order": self.order, "label": self.label, "x": x}

    @shoal.method()
    async def hit_async(self, x: int) -> int:
        await asyncio.sleep(0)
        return x + 1

    @shoal.exit()
    def bye(self) -> None:
        _touch(self.marker_dir, f"exit-{me()}")


@app.cls()
class BrokenEnter:
    @shoal.enter()
    def explode(self) -> None:
        raise RuntimeError("model weights not found")

    @shoal.method()
    def run(self, x: int) -> int:
        return x


@app.function(max_containers=1)
@shoal.batched(max_batch_size=8, wait_ms=50)
def batch_double(xs: list[int]) -> list[tuple[int, int]]:
    return [(2 * x, len(xs)) for x in xs]


@app.function(max_containers=1)
@shoal.batched(max_batch_size=4, wait_ms=10)
def batch_wrong_length(xs: list[int]) -> list[int]:
    return xs[:-1]


@app.function(max_containers=1)
@shoal.concurrent(max_inputs=20)
async def nap(x: int) -> int:
    await asyncio.sleep(0.5)
    return me()


@app.function(max_containers=1)
@shoal.concurrent(max_inputs=4)
async def cancellable(marker_dir: str, tag: str, seconds: float) -> str:
    _touch(marker_dir, f"start-{tag}")
    try:
        await asyncio.sleep(seconds)
    except asyncio.CancelledError:
        _touch(marker_dir, f"cancelled-{tag}")
        raise
    return tag


@app.function(max_containers=1)
@shoal.concurrent(max_inputs=4)
def threaded_sleeper(marker_dir: str, tag: str, seconds: float) -> str:
    """Sync code under @concurrent: its inputs run on worker threads, where a cancel arrives as an exception."""
    _touch(marker_dir, f"start-{tag}")
    try:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            time.sleep(0.005)
    except shoal.exception.InputCancellation:
        _touch(marker_dir, f"cancelled-{tag}")
        raise
    return tag


@app.function(max_containers=1)
def sequential_sleeper(marker_dir: str, tag: str, seconds: float) -> str:
    _touch(marker_dir, f"start-{tag}")
    try:
        time.sleep(seconds)
    except shoal.exception.InputCancellation:
        _touch(marker_dir, f"cancelled-{tag}")
        raise
    return tag


@app.function(max_containers=1, timeout=60)
def whoami(seconds: float = 0.0) -> dict[str, object]:
    """Its container's process, and how many of its inputs overlapped (a with_options variant's pool)."""
    import os

    started = time.time()
    time.sleep(seconds)
    return {
        "pid": os.environ.get("SHOAL_CONTAINER_ID"),  # (a sandbox's own pid namespace: every container's is 2)
        "start": started,
        "end": time.time(),
        "memory": os.environ.get("SHOAL_MEMORY_LIMIT_MIB"),
    }
