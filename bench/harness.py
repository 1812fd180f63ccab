"""Run the workloads against one system in this process and print the measurements as one JSON line.

    python bench/harness.py SYSTEM --runs 3 --spin N [--only W1,W5] | --cold

The driver (``run.py``) starts one of these per system, so each system gets a fresh interpreter, and a separate
one for W2 (to measure its memory) and for COLD (a fresh interpreter, nothing running, to the first result).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import workloads as w
from systems import NotSupported, System, load

Measure = Callable[[System], dict[str, float]]


def timed(f: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    out = f()
    return time.perf_counter() - started, out


def check(ok: bool, what: str) -> None:
    if not ok:
        raise AssertionError(f"wrong results: {what}")


def w1(system: System, count: int = w.W1.count) -> dict[str, float]:
    items = list(range(count))
    seconds, out = timed(lambda: system.map("double", items))
    check(out == [2 * x for x in items], "double")
    return {"seconds": seconds, "per_s": count / seconds}


def w2(system: System) -> dict[str, float]:
    return {**w1(system, w.W2.count), "client_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def w3(system: System) -> dict[str, float]:
    items = list(range(w.W3.count))
    seconds, out = timed(lambda: system.map("sleep20ms", items))
    check(out == items, "sleep")
    return {"seconds": seconds, "efficiency": w.W3.count * w.SLEEP_SECONDS / 2 / seconds}


def w3c(system: System) -> dict[str, float]:
    items = list(range(w.W3C.count))
    seconds, out = timed(lambda: system.map_concurrent("sleep20ms", items))
    check(out == items, "sleep, concurrent")
    return {"seconds": seconds, "efficiency": w.W3C.count * w.SLEEP_SECONDS / 32 / seconds}


def w4(system: System, spin: int) -> dict[str, float]:
    items = [spin + i for i in range(w.W4.count)]
    seconds, out = timed(lambda: system.map("spin", items))
    check(out == [w.spin_result(n) for n in items], "spin")
    return {"seconds": seconds}


def w5(system: System) -> dict[str, float]:
    items = list(range(w.W5.count))
    started = time.perf_counter()
    handles = system.submit("double", items)
    submitted = time.perf_counter() - started
    out = system.gather(handles)
    total = time.perf_counter() - started
    check(out == [2 * x for x in items], "spawn/get")
    return {"seconds": total, "submit_seconds": submitted, "submits_per_s": w.W5.count / submitted}


def w6(system: System) -> dict[str, float]:
    items = [bytes([i]) * w.MIB for i in range(w.W6.count)]
    seconds, out = timed(lambda: system.map("size", items))
    check(out == [w.MIB] * w.W6.count, "size")
    return {"seconds": seconds, "mib_per_s": w.W6.count / seconds}


def lat(system: System) -> dict[str, float]:
    latencies = []
    for i in range(w.LAT.count):
        seconds, out = timed(lambda i=i: system.call("double", i))
        check(out == 2 * i, "call")
        latencies.append(seconds * 1000)
    q = statistics.quantiles(latencies, n=100)
    return {"p50_ms": statistics.median(latencies), "p90_ms": q[89], "p99_ms": q[98]}


ORDER = ["LAT", "W1", "W3", "W4", "W5", "W6", "W3c"]  # W3c last: some systems rebuild their workers for it


def measure(system: System, key: str, spin: int) -> dict[str, float]:
    table: dict[str, Measure] = {"W1": w1, "W2": w2, "W3": w3, "W3c": w3c, "W5": w5, "W6": w6, "LAT": lat,
                                 "W4": lambda s: w4(s, spin)}  # fmt: skip
    return table[key](system)


def run(name: str, keys: list[str], runs: int, spin: int) -> dict[str, Any]:
    system = load(name)
    system.start()
    results: dict[str, Any] = {}
    try:
        system.warm()  # type: ignore[attr-defined]
        for key in [k for k in ORDER + ["W2"] if k in keys]:
            try:
                if key == "W3c" and hasattr(system, "prepare_concurrent"):
                    system.prepare_concurrent()
                results[key] = [measure(system, key, spin) for _ in range(runs)]
            except NotSupported as exc:
                results[key] = {"skipped": str(exc)}
            print(f"  {name} {key} done", file=sys.stderr, flush=True)
    finally:
        system.stop()
    return results


def cold(name: str) -> None:
    """Start the system and get the first result of one call; the driver times this whole process."""
    system = load(name)
    system.start()
    check(system.call("double", 21) == 42, "cold call")
    print("COLD-RESULT", flush=True)
    system.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("system")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--spin", type=int, default=0)
    parser.add_argument("--only", default=",".join(ORDER))
    parser.add_argument("--cold", action="store_true")
    args = parser.parse_args()
    if args.cold:
        cold(args.system)
        return
    print("RESULT " + json.dumps(run(args.system, args.only.split(","), args.runs, args.spin)), flush=True)


if __name__ == "__main__":
    main()
