"""Functions the dashboard's browser tests run (importable, so containers can import them)."""

from __future__ import annotations

import os
import time

import shoal

app = shoal.App("tests-dashboard")


@app.function(max_containers=2)
def flaky(x: int) -> int:
    print(f"processing {x}")
    if x % 10 == 7:
        raise ValueError("the input ends in 7")
    if x == 12:
        raise KeyError("twelve")
    return x * x


@app.function(max_containers=2)
def gated(x: int, gate: str) -> int:
    """Waits for the test to open ``gate`` (a file), then takes a little time."""
    while not os.path.exists(gate):
        time.sleep(0.02)
    time.sleep(0.05)
    return x
