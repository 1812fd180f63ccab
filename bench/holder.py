"""The function bench/ray_actors.py starts containers of, in a module of its own: a container imports only this
(not the benchmark's harness, whose imports would cost each container more than Shoal does)."""

from __future__ import annotations

import os
import time

import shoal

app = shoal.App("bench-container-starts")


@app.function(cpu=0.01, max_containers=100, timeout=600)
def hold(seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()
