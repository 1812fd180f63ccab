"""Celery with a local ``redis-server`` on 127.0.0.1 as broker and result backend; the script starts both."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from typing import Any

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class CelerySystem:
    name = "celery"

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self) -> None:
        redis = shutil.which("redis-server")
        if redis is None:
            raise RuntimeError("Celery needs redis-server: apt-get install redis-server")
        port = _free_port()
        os.environ["BENCH_REDIS_URL"] = f"redis://127.0.0.1:{port}/0"
        os.environ["PYTHONPATH"] = HERE + os.pathsep + os.environ.get("PYTHONPATH", "")
        os.environ.setdefault("C_FORCE_ROOT", "1")  # the benchmark machine may run as root; pickle is needed for bytes
        self._spawn([redis, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        self._wait_for_redis(port)
        from . import celery_tasks

        self.tasks = celery_tasks
        self._worker("prefork", 2, "bench")

    def _spawn(self, argv: list[str]) -> None:
        out = subprocess.DEVNULL
        self.procs.append(subprocess.Popen(argv, cwd=HERE, stdout=out, stderr=out, start_new_session=True))

    def _worker(self, pool: str, concurrency: int, queue: str) -> None:
        self._spawn([sys.executable, "-m", "celery", "-A", "systems.celery_tasks", "worker", "-P", pool,
                     "-c", str(concurrency), "-Q", queue, "-l", "WARNING", "--without-gossip", "--without-mingle",
                     "--without-heartbeat", "-n", f"{queue}@%h"])  # fmt: skip

    def _wait_for_redis(self, port: int) -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.01)
        raise RuntimeError("redis-server did not start")

    def warm(self) -> None:
        [r.get(timeout=60) for r in [self.tasks.double.delay(i) for i in range(4)]]

    def stop(self) -> None:
        for p in reversed(self.procs):
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait()

    def map(self, fn: str, items: list[Any]) -> list[Any]:
        task = getattr(self.tasks, fn)
        return [r.get(timeout=600) for r in [task.delay(x) for x in items]]

    def prepare_concurrent(self) -> None:
        self._worker("threads", 32, "conc")
        self.tasks.double.apply_async((0,), queue="conc").get(timeout=60)

    def map_concurrent(self, fn: str, items: list[Any]) -> list[Any]:
        task = getattr(self.tasks, fn)
        return [r.get(timeout=600) for r in [task.apply_async((x,), queue="conc") for x in items]]

    def submit(self, fn: str, items: list[Any]) -> list[Any]:
        task = getattr(self.tasks, fn)
        return [task.delay(x) for x in items]

    def gather(self, handles: list[Any]) -> list[Any]:
        return [h.get(timeout=600) for h in handles]

    def call(self, fn: str, x: Any) -> Any:
        return getattr(self.tasks, fn).delay(x).get(timeout=60)
