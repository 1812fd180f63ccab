"""How fast the dashboard's pages answer for a map of a million inputs (issue: pages stay fast at that size).

Run:  python bench/dashboard.py [--inputs 1000000] [--done 200000] [--repeat 20]

It writes a server's store directly (an app, a function, one map of ``--inputs`` inputs of which ``--done``
finished, 1% of those failed with three kinds of error, 5,000 log lines), starts a real server on it, and times
each page over HTTP (median and worst of ``--repeat`` requests). The same pages for a 1,000-input map come first,
so the two columns show what grows with the number of inputs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from shoal.protocol.messages import FailureInfo, LogEntry
from shoal.protocol.specs import FunctionSpec
from shoal.server.core.records import OutputStatus, ReportedOutput
from shoal.server.store import SQLiteStore

ERRORS = [("ValueError", "bad row"), ("KeyError", "'id'"), ("TimeoutError", "upstream slow")]


def fill(state: Path, inputs: int, done: int) -> dict[str, str]:
    """A store with one app and a map of ``inputs`` inputs, ``done`` of them finished; returns the ids."""
    state.mkdir(parents=True)
    store = SQLiteStore(state / "state.db")
    store.create_app("ap-bench", "dashboard-bench", "detached")
    store.create_function("fu-bench", "ap-bench", "process", FunctionSpec(max_containers=1), None)
    store.create_call("fc-bench", "fu-bench", "ap-bench", "map", None)
    payload = b"\x00" + b"x" * 40
    for start in range(0, inputs, 20_000):
        n = min(20_000, inputs - start)
        store.add_inputs("fc-bench", start, [payload] * n, close=start + n >= inputs)
    store.add_container("ta-bench", "fu-bench", "ap-bench")
    store.mark_started("ta-bench")
    finished = 0
    while finished < done:
        leased = store.lease_inputs("fu-bench", "ta-bench", min(2_000, done - finished))
        reports = []
        for x in leased:
            if x.index % 100 == 99:
                kind, message = ERRORS[x.index % 3]
                info = FailureInfo(kind, message, f"Traceback (most recent call last):\n{kind}: {message}\n")
                reports.append(ReportedOutput(x.call_id, x.index, x.lease, OutputStatus.FAILURE, b"\x00e", 0.01, info))
            else:
                reports.append(ReportedOutput(x.call_id, x.index, x.lease, OutputStatus.SUCCESS, b"\x00r", 0.002))
        store.complete("ta-bench", reports)
        finished += len(leased)
    store.lease_inputs("fu-bench", "ta-bench", 50)  # some running now
    now = time.time()
    for i in range(0, 5_000, 500):
        store.append_logs("ap-bench", "ta-bench", [LogEntry("fc-bench", i + k, "stdout", f"row {i + k}\n", now)
                                                   for k in range(500)])  # fmt: skip
    store.close()
    return {"app": "ap-bench", "call": "fc-bench", "container": "ta-bench"}


def pages(ids: dict[str, str]) -> dict[str, str]:
    return {
        "apps": "/dashboard/apps",
        "app": f"/dashboard/apps/{ids['app']}",
        "call": f"/dashboard/calls/{ids['call']}",
        "input": f"/dashboard/calls/{ids['call']}/inputs/99",
        "containers": "/dashboard/containers?all=1",
        "container": f"/dashboard/containers/{ids['container']}",
        "logs of the call": f"/dashboard/logs?call={ids['call']}",
        "logs searched": f"/dashboard/logs?app={ids['app']}&q=row+4999",
    }


def measure(inputs: int, done: int, repeat: int) -> dict[str, tuple[float, float]]:
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        ids = fill(Path(tmp) / "server", inputs, done)
        print(f"  filled a store with {inputs:,} inputs ({done:,} done) in {time.perf_counter() - started:.1f} s")
        proc = subprocess.Popen(
            [sys.executable, "-m", "shoal.server", "--port", "0", "--state-dir", str(Path(tmp) / "server")],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env={**os.environ, "SHOAL_MAX_TOTAL_CONTAINERS": "0"},
        )  # fmt: skip  # no container starts: the function has no code, only its records
        try:
            assert proc.stdout is not None
            url = proc.stdout.readline().decode().strip().split("=", 1)[1]
            out = {}
            with httpx.Client(base_url=url, timeout=60) as client:
                for name, path in pages(ids).items():
                    times = []
                    for _ in range(repeat):
                        t = time.perf_counter()
                        r = client.get(path)
                        times.append(time.perf_counter() - t)
                        assert r.status_code == 200, (path, r.status_code)
                    out[name] = (statistics.median(times) * 1000, max(times) * 1000)
            return out
        finally:
            proc.terminate()
            proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--inputs", type=int, default=1_000_000)
    parser.add_argument("--done", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    print("small map:")
    small = measure(1_000, 200, args.repeat)
    print("large map:")
    large = measure(args.inputs, args.done, args.repeat)
    print(f"\n| page | 1,000 inputs: median / worst ms | {args.inputs:,} inputs: median / worst ms |")
    print("|---|---|---|")
    for name in small:
        (a, b), (c, d) = small[name], large[name]
        print(f"| {name} | {a:.1f} / {b:.1f} | {c:.1f} / {d:.1f} |")


if __name__ == "__main__":
    main()
