"""Quick benchmark: inputs/s of a 10,000-input trivial map, and p50/p90 of 200 warm .remote() calls.

Run:  python bench/quick.py            (embedded server, as a user's first run gets)
The full comparison against the stdlib, Ray, Dask and Celery: python bench/run.py (see bench/README.md).
"""

from __future__ import annotations

import json
import statistics
import time

import shoal

app = shoal.App("bench-quick")


@app.function(max_containers=2)
def double(x: int) -> int:
    return x * 2


def main() -> None:
    with app.run(show_logs=False):
        assert double.remote(1) == 2  # warm: containers started
        list(double.map(range(2000)))
        started = time.perf_counter()
        out = list(double.map(range(10_000)))
        map_seconds = time.perf_counter() - started
        assert out == [2 * x for x in range(10_000)]
        latencies = []
        for i in range(200):
            t = time.perf_counter()
            assert double.remote(i) == 2 * i
            latencies.append((time.perf_counter() - t) * 1000)
    q = statistics.quantiles(latencies, n=100)
    result = {
        "map_10k_inputs_per_s": round(10_000 / map_seconds),
        "remote_p50_ms": round(statistics.median(latencies), 2),
        "remote_p90_ms": round(q[89], 2),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
