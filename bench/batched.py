"""@batched vs per-input calls for a vectorised function (a fixed cost per call, a small cost per item).

Run:  python bench/batched.py
The per-call cost stands for what batching amortises in real work: a model forward pass, a GPU kernel launch,
a database round trip.
"""

from __future__ import annotations

import json
import time

import shoal

app = shoal.App("bench-batched")
PER_CALL_SECONDS = 0.005
N = 2000


def vectorised(xs: list[float]) -> list[float]:
    time.sleep(PER_CALL_SECONDS)  # fixed cost of one call, whatever the batch size
    return [x * 2.0 for x in xs]


@app.function(max_containers=2)
def per_input(x: float) -> float:
    return vectorised([x])[0]


@app.function(max_containers=2)
@shoal.batched(max_batch_size=64, wait_ms=5)
def batched(xs: list[float]) -> list[float]:
    return vectorised(xs)


def rate(fn: shoal.Function) -> float:
    list(fn.map(range(50)))  # warm
    started = time.perf_counter()
    out = list(fn.map(range(N)))
    elapsed = time.perf_counter() - started
    assert out == [2.0 * x for x in range(N)]
    return N / elapsed


def main() -> None:
    with app.run(show_logs=False):
        single = rate(per_input)
        grouped = rate(batched)
    print(json.dumps({"per_input_inputs_per_s": round(single), "batched_inputs_per_s": round(grouped),
                      "speedup": round(grouped / single, 1)}))  # fmt: skip


if __name__ == "__main__":
    main()
