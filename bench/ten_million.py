"""A 10,000,000-input map in bounded memory: throughput, and the peak RSS of the client and of the server.

Run:  python bench/ten_million.py [--inputs 10000000]
"""

from __future__ import annotations

import argparse
import resource
import threading
import time

import psutil

import shoal

app = shoal.App("bench-ten-million")


@app.function(max_containers=2)
def double(x: int) -> int:
    return x * 2


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--inputs", type=int, default=10_000_000)
    n = parser.parse_args().inputs
    with app.run(show_logs=False):
        double.remote(1)
        server = next(p for p in psutil.Process().children() if "shoal.server" in " ".join(p.cmdline()))
        peak = [0]

        def watch() -> None:
            while True:
                try:
                    peak[0] = max(peak[0], server.memory_info().rss)
                except psutil.Error:
                    return
                time.sleep(0.5)

        threading.Thread(target=watch, daemon=True).start()
        started = time.perf_counter()
        count = total = 0
        for y in double.map(range(n)):
            count += 1
            total += y
        seconds = time.perf_counter() - started
    assert count == n and total == n * (n - 1), "every input has exactly one result"
    client_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{n:,} inputs in {seconds:.0f} s ({n / seconds:,.0f}/s); peak RSS: client {client_mib:.0f} MiB, "
          f"server {peak[0] / 2**20:.0f} MiB")  # fmt: skip


if __name__ == "__main__":
    main()
