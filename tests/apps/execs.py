"""A container to run commands in (``shoal container exec``): it leaves a mark in its private /tmp."""

from __future__ import annotations

import os
import time
from pathlib import Path

import shoal

app = shoal.App("tests-exec")
SECRET = "exec-secret-5e1f"


@app.function(max_containers=1, scaledown_window=120, secrets=[shoal.Secret.from_dict({"EXEC_SECRET": SECRET})])
def mark(tag: str) -> str:
    """Writes ``tag`` to /tmp/exec-mark (the container's own /tmp) and says which container it runs in."""
    Path("/tmp/exec-mark").write_text(tag)
    return os.environ["SHOAL_CONTAINER_ID"]


@app.function(max_containers=1)
def hold(queue: shoal.Queue, seconds: float) -> None:
    """Busy for ``seconds`` once it said which container it runs in."""
    queue.put(os.environ["SHOAL_CONTAINER_ID"])
    time.sleep(seconds)
