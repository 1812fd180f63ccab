"""Functions that ask for GPUs, CPUs and memory, for a server with a fake inventory (SHOAL_FAKE_GPUS=T4,T4,
SHOAL_CPUS=2, SHOAL_MEMORY_MIB=1000): what each container saw and when it ran."""

from __future__ import annotations

import os
import time
from typing import Any

import shoal

app = shoal.App("tests-resources")


def _hold(seconds: float) -> dict[str, Any]:
    started = time.time()
    time.sleep(seconds)
    return {"container": os.environ.get("SHOAL_CONTAINER_ID"), "cuda": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "nvidia": os.environ.get("NVIDIA_VISIBLE_DEVICES"), "start": started, "end": time.time()}  # fmt: skip


@app.function(gpu="T4", max_containers=4, scaledown_window=2)
def on_t4(seconds: float) -> dict[str, Any]:
    return _hold(seconds)


@app.function(gpu="t4:2", max_containers=1, scaledown_window=2)
def on_both(seconds: float) -> dict[str, Any]:
    return _hold(seconds)


@app.function(gpu=["A100", "T4"], max_containers=1, scaledown_window=2)
def preferring_a100(seconds: float) -> dict[str, Any]:
    return _hold(seconds)


@app.function(cpu=1, max_containers=8, scaledown_window=2)
def one_cpu(seconds: float) -> dict[str, Any]:
    return _hold(seconds)


@app.function(memory=400, max_containers=8, scaledown_window=2)
def big_memory(seconds: float) -> dict[str, Any]:
    return _hold(seconds)


@app.function(gpu="T4", max_containers=1, scaledown_window=2)
def newcomer(seconds: float) -> dict[str, Any]:
    return _hold(seconds)


@app.function(gpu="T4", max_containers=2, scaledown_window=2)
def burn(seconds: float) -> str | None:
    """Keeps a CPU busy for ``seconds``; returns its container."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        pass
    return os.environ.get("SHOAL_CONTAINER_ID")


refused = shoal.App("tests-resources-refused")


@refused.function(gpu="A100")
def on_a100() -> None:
    return None


def most_at_once(runs: list[dict[str, Any]]) -> int:
    """The most runs that overlapped in time."""
    edges = sorted([(r["start"], 1) for r in runs] + [(r["end"], -1) for r in runs])
    now = best = 0
    for _, step in edges:
        now += step
        best = max(best, now)
    return best


def overlapping(runs: list[dict[str, Any]]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    return [
        (a, b) for i, a in enumerate(runs) for b in runs[i + 1 :] if a["start"] < b["end"] and b["start"] < a["end"]
    ]
