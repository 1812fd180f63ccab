"""Functions for the trust suite (issue 11): failures among results, retries, two functions sharing the cap."""

from __future__ import annotations

import time

import shoal

app = shoal.App("tests-trust")


class Boom(Exception):
    """The one failing input of a map."""


@app.function(max_containers=2)
def fail_at(x: int, bad: int, delay_bad: float = 0.0) -> int:
    if x == bad:
        time.sleep(delay_bad)
        raise Boom(f"input {x} failed")
    return x


@app.function(max_containers=1, retries=shoal.Retries(max_retries=2, initial_delay=1.0, backoff_coefficient=1.0))
def flaky_twice(marker: str) -> list[float]:
    """Fails on its first two attempts; returns the times of every attempt (kept in a file beside the marker)."""
    with open(marker, "a") as f:
        f.write(f"{time.time()}\n")
    with open(marker) as f:
        times = [float(line) for line in f if line.strip()]
    if len(times) < 3:
        raise RuntimeError(f"attempt {len(times)} fails on purpose")
    return times


cap_app = shoal.App("tests-trust-cap")


@cap_app.function(max_containers=64, scaledown_window=60)
def hog(x: int) -> int:
    time.sleep(0.05)
    return x


@cap_app.function(max_containers=1)
def other(x: int) -> int:
    return x + 1


restart_app = shoal.App("tests-trust-restart")


@restart_app.function(max_containers=2)
def steady(x: int) -> int:
    time.sleep(0.005)
    return x
