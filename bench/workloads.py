"""The benchmark's workloads: the functions every system runs, their inputs, and how results are checked.

Every system runs the same functions on the same inputs; they live in this importable module so that Ray, Dask
and Celery workers, and Shoal containers, import them by name.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

MIB = 1024 * 1024
SLEEP_SECONDS = 0.02


def double(x: int) -> int:
    return x * 2


def sleep20ms(x: int) -> int:
    time.sleep(SLEEP_SECONDS)
    return x


def spin(n: int) -> int:
    """Pure-Python CPU work: about ``n`` loop iterations (calibrated to ~50 ms)."""
    total = 0
    for i in range(n):
        total += i * i % 7
    return total


def spin_result(n: int) -> int:
    """What ``spin(n)`` returns, in closed form (i*i % 7 repeats every 7 values: 0 1 4 2 2 4 1)."""
    period = (0, 1, 4, 2, 2, 4, 1)
    return 14 * (n // 7) + sum(period[: n % 7])


def size(data: bytes) -> int:
    return len(data)


def calibrate_spin(target_seconds: float = 0.05) -> int:
    """The ``spin`` argument that takes about ``target_seconds`` on this machine (single process)."""
    n = 100_000
    while True:
        started = time.perf_counter()
        spin(n)
        elapsed = time.perf_counter() - started
        if elapsed > 0.01:
            return int(n * target_seconds / elapsed)
        n *= 4


@dataclass(frozen=True)
class Workload:
    """One row of the benchmark: a function, how many inputs, and the ideal wall time when it has one."""

    key: str
    title: str
    function: str
    count: int


W1 = Workload("W1", "10,000 x f(x)=x*2, ordered map", "double", 10_000)
W2 = Workload("W2", "1,000,000 x f(x)=x*2, ordered map", "double", 1_000_000)
W3 = Workload("W3", "500 x sleep(20 ms) on 2 workers (ideal 5 s)", "sleep20ms", 500)
W3C = Workload("W3c", "500 x sleep(20 ms), 32-way concurrency (ideal 0.31 s)", "sleep20ms", 500)
W4 = Workload("W4", "100 x ~50 ms pure-Python CPU (ideal ~2.5 s on 2 cores)", "spin", 100)
W5 = Workload("W5", "2,000 x spawn, then get each", "double", 2_000)
W6 = Workload("W6", "200 x 1 MiB bytes -> len", "size", 200)
LAT = Workload("LAT", "200 sequential warm single calls", "double", 200)
