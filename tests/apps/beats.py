"""A long input in a @concurrent container, which long-polls for more while it runs (tests/e2e/test_heartbeats.py)."""

from __future__ import annotations

import os
import time

import shoal

app = shoal.App("tests-beats")


@app.function(max_containers=1)
@shoal.concurrent(max_inputs=4)
def interruptible(marker_dir: str) -> int:
    open(os.path.join(marker_dir, "started"), "w").close()
    try:
        for _ in range(600):
            time.sleep(0.05)
    finally:
        open(os.path.join(marker_dir, "stopped"), "w").close()
    return 0
