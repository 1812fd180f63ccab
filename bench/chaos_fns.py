"""The function of ``bench/ray_chaos.py`` as a Shoal app (its containers import this module)."""

from __future__ import annotations

import os
import time

import shoal

app = shoal.App("bench-chaos")


@app.function(max_containers=4)
def where(x: int, work_s: float) -> tuple[int, str]:
    """(the input, the node its container runs on), after ``work_s`` seconds of sleep."""
    time.sleep(work_s)
    return x, os.environ.get("SHOAL_NODE", "local")
