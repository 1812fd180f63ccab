"""Functions that misbehave on purpose, for the fault tests."""

from __future__ import annotations

import os
import time

import shoal
from tests.apps import me

app = shoal.App("tests-faults")


@app.function(max_containers=4, retries=shoal.Retries(max_retries=5, initial_delay=0.0, backoff_coefficient=1.0))
def busy(x: int) -> int:
    time.sleep(0.01)
    return x * 3


@app.function(max_containers=2, retries=shoal.Retries(max_retries=2, initial_delay=0.0, backoff_coefficient=1.0))
def exit_on_13(x: int) -> int:
    if x == 13:
        print("about to die on 13", flush=True)
        os._exit(1)
    return x


@app.function(
    timeout=2, retries=shoal.Retries(max_retries=1, initial_delay=0.0, backoff_coefficient=1.0), max_containers=1
)
def spin_forever(marker_dir: str) -> int:
    open(os.path.join(marker_dir, f"pid-{me()}"), "w").close()
    while True:
        pass


@app.function(max_containers=2, retries=shoal.Retries(max_retries=1, initial_delay=0.0, backoff_coefficient=1.0))
def report_pid_then_sleep(marker_dir: str, seconds: float) -> int:
    open(os.path.join(marker_dir, f"pid-{me()}"), "w").close()
    time.sleep(seconds)
    return me()
