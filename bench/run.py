"""The benchmark suite: Shoal against multiprocessing.Pool, Ray, Dask and Celery, in one invocation.

    pip install -e '.[bench]' && apt-get install redis-server   # peers (optional)
    python bench/run.py                    # every system, 3 runs each (about 15 minutes on 2 cores)
    python bench/run.py --systems shoal,pool --runs 1

Writes ``bench/results/latest.json`` and ``bench/results/latest.md`` (the table in bench/README.md).
Each system runs in fresh child processes (``harness.py``); every result is checked.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from report import render  # noqa: E402
from systems import TITLES  # noqa: E402
from workloads import calibrate_spin  # noqa: E402

NEEDS = {"ray": "ray", "raypool": "ray", "shoal-ray": "ray", "dask": "distributed", "celery": "celery"}
W2_SYSTEMS = {"shoal", "pool", "raypool"}  # the others would take 15 min to hours for a million inputs
CHILD_TIMEOUT = 1800


def available(name: str) -> bool:
    module = NEEDS.get(name)
    return module is None or importlib.util.find_spec(module) is not None


def child(argv: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, str(HERE / "harness.py"), *argv], cwd=HERE, stdout=subprocess.PIPE,
                            text=True)  # fmt: skip


def compile_sources() -> None:
    """Compile Shoal's modules and the bench's own to bytecode first, as ``pip install`` does for an installed
    package. An editable install under ``PYTHONDONTWRITEBYTECODE=1`` (the environment of this project's machines)
    would compile every module again in every process: about 0.1 s for the embedded server alone, and as much for
    the client and each fresh container, where the peers, installed from wheels, compile nothing."""
    import compileall

    spec = importlib.util.find_spec("shoal")
    for folder in [Path(spec.origin).parent] if spec and spec.origin else []:
        compileall.compile_dir(folder, quiet=1)
    compileall.compile_dir(HERE, quiet=1)


def cold_start(name: str) -> float:
    """Seconds from starting a fresh interpreter to the first result of one call."""
    started = time.perf_counter()
    proc = child([name, "--cold"])
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("COLD-RESULT"):
            seconds = time.perf_counter() - started
            proc.wait(CHILD_TIMEOUT)
            return seconds
    raise RuntimeError(f"{name}: the cold-start run failed (exit {proc.wait()})")


class PeakRSS:
    """Samples the peak RSS of a process (the client) and of its helpers (server, workers) while it runs."""

    def __init__(self, pid: int, server_marker: str | None) -> None:
        self.proc = psutil.Process(pid)
        self.server_marker = server_marker
        self.client = self.helpers = 0
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.done.wait(0.1):
            try:
                self.client = max(self.client, self.proc.memory_info().rss)
                total = 0
                for p in self.proc.children(recursive=True):
                    try:
                        if self.server_marker is None or self.server_marker in " ".join(p.cmdline()):
                            total += p.memory_info().rss
                    except psutil.Error:
                        pass
                self.helpers = max(self.helpers, total)
            except psutil.Error:
                return

    def stop(self) -> tuple[float, float]:
        self.done.set()
        self.thread.join()
        return self.client / 2**20, self.helpers / 2**20


def run_child(argv: list[str], server_marker: str | None = None) -> tuple[dict[str, Any], tuple[float, float]]:
    proc = child(argv)
    sampler = PeakRSS(proc.pid, server_marker)
    out, _ = proc.communicate(timeout=CHILD_TIMEOUT)
    rss = sampler.stop()
    lines = [line for line in out.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{argv[0]}: the benchmark child failed (exit {proc.returncode})")
    return json.loads(lines[-1][len("RESULT ") :]), rss


def bench_system(name: str, runs: int, spin: int, only: list[str]) -> dict[str, Any]:
    results: dict[str, Any] = {}
    if "COLD" in only:
        results["COLD"] = [{"seconds": cold_start(name)} for _ in range(runs)]
        print(f"  {name} COLD done", file=sys.stderr, flush=True)
    main = [k for k in only if k not in ("COLD", "W2")]
    if main:
        found, _ = run_child([name, "--runs", str(runs), "--spin", str(spin), "--only", ",".join(main)])
        results.update(found)
    if "W2" in only:
        if name in W2_SYSTEMS:
            found, (_, helpers) = run_child([name, "--runs", str(runs), "--only", "W2"],
                                            "shoal.server" if name == "shoal" else None)  # fmt: skip
            for r in found["W2"]:
                r["server_rss_mib"] = helpers
            results.update(found)
        else:
            results["W2"] = {"skipped": "too slow for a million inputs"}
    return results


def summarize(runs: list[dict[str, float]] | dict[str, str]) -> dict[str, Any]:
    if isinstance(runs, dict):
        return runs
    return {
        metric: {"median": statistics.median(values), "min": min(values), "max": max(values)}
        for metric in runs[0]
        for values in [[r[metric] for r in runs]]
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--systems", default=",".join(TITLES))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", default="COLD,LAT,W1,W2,W3,W3c,W4,W5,W6")
    parser.add_argument("--out", default=str(HERE / "results"))
    args = parser.parse_args()
    compile_sources()
    spin = calibrate_spin()
    report: dict[str, Any] = {
        "machine": {"cpus": psutil.cpu_count(), "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
                    "python": platform.python_version(), "platform": platform.platform()},
        "date": time.strftime("%Y-%m-%d"), "runs": args.runs, "spin": spin, "versions": versions(), "systems": {},
    }  # fmt: skip
    for name in args.systems.split(","):
        if not available(name):
            print(f"skipping {name}: not installed (pip install -e '.[bench]')", file=sys.stderr)
            continue
        print(f"{name}...", file=sys.stderr, flush=True)
        try:
            raw = bench_system(name, args.runs, spin, args.only.split(","))
        except Exception as exc:  # one system failing must not lose the others' results
            print(f"{name} failed: {exc}", file=sys.stderr, flush=True)
            report["failed"] = {**report.get("failed", {}), name: str(exc)}
            continue
        report["systems"][name] = {key: summarize(value) for key, value in raw.items()}
        write(Path(args.out), report)  # after every system: a later failure keeps what is done
    print(write(Path(args.out), report))


def write(out: Path, report: dict[str, Any]) -> str:
    out.mkdir(parents=True, exist_ok=True)
    (out / "latest.json").write_text(json.dumps(report, indent=1) + "\n")
    table = render(report)
    (out / "latest.md").write_text(table)
    return table


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for dist in ("shoal", "ray", "dask", "distributed", "celery", "redis"):
        try:
            found[dist] = version(dist)
        except PackageNotFoundError:
            pass
    return found


if __name__ == "__main__":
    main()
