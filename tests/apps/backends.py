"""Functions of the core end-to-end tests that run on every backend (tests/e2e/test_backends.py), and of the
Ray backend's own tests (tests/e2e/test_ray_backend.py)."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import shoal
from tests.apps import me

app = shoal.App("tests-backends")
# what needs the sandbox (volumes, local mounts) is an app of its own: without bubblewrap, only its tests skip
mounting_app = shoal.App("tests-backends-mounts")
volume = shoal.Volume.from_name("tests-backends-volume", create_if_missing=True)
image = shoal.Image.debian_slim().env({"BACKEND_IMAGE": "set by the image"})
CONTENT = Path(__file__).parent / "local_content"
with_content = (shoal.Image.debian_slim().add_local_dir(CONTENT / "nested", "/srv/content")
                .add_local_file(CONTENT / "single.txt", "/srv/single.txt"))  # fmt: skip


@app.function(max_containers=3)
def square(x: int) -> int:
    return x * x


@app.function(max_containers=2)
def fail_on_odd(x: int) -> int:
    if x % 2:
        raise ValueError(f"odd input {x}")
    return x


@app.function(max_containers=1, retries=shoal.Retries(max_retries=3, initial_delay=0.0, backoff_coefficient=1.0))
def flaky(marker_dir: str, x: int) -> int:
    """Fails its first two attempts (counted in files the test can read), then succeeds."""
    attempts = len(list(Path(marker_dir).glob(f"{x}-*")))
    Path(marker_dir, f"{x}-{attempts}").touch()
    if attempts < 2:
        raise RuntimeError(f"attempt {attempts} fails")
    return x


@app.function(max_containers=1, timeout=1)
def oversleep(seconds: float) -> str:
    time.sleep(seconds)
    return "woke"


@app.function(max_containers=4)
def where(x: int) -> tuple[int, str, int]:
    """(the input, the node the container runs on, its pid)."""
    time.sleep(0.001)
    return x, os.environ.get("SHOAL_NODE", "local"), me()


@app.cls(max_containers=1)
class Greeter:
    @shoal.enter()
    def prepare(self) -> None:
        self.greeting = "hello"
        self.entered = me()

    @shoal.method()
    def greet(self, name: str) -> tuple[str, int]:
        return f"{self.greeting} {name}", self.entered


@app.function(max_containers=1)
@shoal.batched(max_batch_size=8, wait_ms=50)
def batch_size(xs: list[int]) -> list[int]:
    return [len(xs)] * len(xs)


@app.function(max_containers=1)
@shoal.concurrent(max_inputs=10)
async def overlap(seconds: float) -> float:
    started = time.time()
    await asyncio.sleep(seconds)
    return started


@app.function(max_containers=1, secrets=[shoal.Secret.from_dict({"BACKEND_SECRET": "s3cret"})], image=image)
def shared(d: shoal.Dict, q: shoal.Queue, x: int) -> dict[str, str | int | None]:
    d[f"key-{x}"] = x * 10
    q.put(x)
    return {"secret": os.environ.get("BACKEND_SECRET"), "image": os.environ.get("BACKEND_IMAGE"), "dict": d[f"key-{x}"]}


@mounting_app.function(max_containers=1, volumes={"/data": volume})
def write_file(name: str, text: str) -> list[str]:
    Path("/data", name).write_text(text)
    volume.commit()
    return sorted(os.listdir("/data"))


@mounting_app.function(max_containers=1, image=with_content)
def local_content() -> tuple[str, str, str]:
    """(the dir's file, the single file, where the dir's mount comes from in this container's mount table)."""
    source = next(line.split()[3] for line in open("/proc/self/mountinfo") if line.split()[4] == "/srv/content")
    return Path("/srv/content/hello.txt").read_text(), Path("/srv/single.txt").read_text(), source


@mounting_app.function(max_containers=1, volumes={"/data": volume})
def write_uncommitted(name: str) -> bool:
    Path("/data", name).write_text("never committed")
    return Path("/data", name).exists()


@mounting_app.function(max_containers=1, volumes={"/data": volume})
def probe_reload(name: str, marker_dir: str) -> tuple[bool, bool, bool]:
    """(the file exists at start, after another container committed it, after reload())."""
    before = Path("/data", name).exists()
    Path(marker_dir, "ready").touch()
    deadline = time.time() + 60
    while not Path(marker_dir, "committed").exists() and time.time() < deadline:
        time.sleep(0.05)
    unreloaded = Path("/data", name).exists()
    volume.reload()
    return before, unreloaded, Path("/data", name).exists()


built_app = shoal.App("tests-backends-built")
# unique per test session (the env step is part of the image's hash): every session's nodes build it afresh
SESSION = os.environ.setdefault("SHOAL_TESTS_SESSION", str(time.time_ns()))
built = shoal.Image.debian_slim().env({"SESSION": SESSION}).run_commands("echo built > $VIRTUAL_ENV/marker.txt")


@built_app.function(image=built)
def built_where() -> tuple[str, str, int]:
    """(the interpreter the container runs, what the image's build step wrote next to it, its niceness)."""
    import sys

    return sys.executable, Path(sys.prefix, "marker.txt").read_text().strip(), os.getpriority(os.PRIO_PROCESS, 0)


gpu_app = shoal.App("tests-backends-gpu")


@gpu_app.function(gpu="T4", max_containers=2, scaledown_window=2)
def on_gpu(seconds: float) -> tuple[str, str]:
    """(the node, the GPUs Ray gave the container); sleeps ``seconds`` holding the GPU."""
    time.sleep(seconds)
    return os.environ.get("SHOAL_NODE", ""), os.environ.get("CUDA_VISIBLE_DEVICES", "")


a100_app = shoal.App("tests-backends-a100")


@a100_app.function(gpu="A100")
def on_a100() -> None:
    pass


waiting_app = shoal.App("tests-backends-waiting")


@waiting_app.function(cpu=64.0)
def too_big() -> int:
    """No node of the test cluster has 64 CPUs: its container waits for a place (an autoscaler would add one)."""
    return 1


@gpu_app.function(gpu="T4", scaledown_window=2)
@shoal.fastapi_endpoint()
def gpu_hello() -> dict[str, str]:
    """Served from the GPU node's container (a node that is not the head, nor the server's)."""
    return {"node": os.environ.get("SHOAL_NODE", ""), "host": os.environ.get("SHOAL_WEB_HOST", "")}


@app.function()
@shoal.fastapi_endpoint()
def hello_node() -> dict[str, str]:
    """Served from a container its node's agent forked (any node)."""
    return {"node": os.environ.get("SHOAL_NODE", ""), "host": os.environ.get("SHOAL_WEB_HOST", "")}
