"""What a large argument costs the client's memory: one .remote() with a 300 MiB bytes argument.

Run:  python bench/big_argument.py [--mib 300]
"""

from __future__ import annotations

import argparse
import os
import resource
import time

import shoal

app = shoal.App("bench-big-argument")


@app.function(timeout=600, memory=2048)
def size(data: bytes) -> int:
    return len(data)


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mib", type=int, default=300)
    mib = parser.parse_args().mib
    with app.run(show_logs=False):
        size.remote(b"x")
        before = rss_mib()
        argument = os.urandom(mib << 20)
        started = time.perf_counter()
        assert size.remote(argument) == mib << 20
        seconds = time.perf_counter() - started
    peak = rss_mib()
    print(f"a {mib} MiB argument: client peak RSS {peak:.0f} MiB, {(peak - before) / mib:.2f}x the argument "
          f"(the argument itself included), {seconds:.1f} s")  # fmt: skip


if __name__ == "__main__":
    main()
