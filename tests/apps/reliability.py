"""Functions for the reliability suite: fast work to kill containers under, poison inputs, native loops."""

from __future__ import annotations

import ctypes
import os
import re
import sys
import time

import shoal
from tests.apps import me

app = shoal.App("tests-reliability")
NO_DELAY = shoal.Retries(max_retries=3, initial_delay=0.0, backoff_coefficient=1.0)


@app.function(max_containers=4, retries=NO_DELAY)
def work(x: int) -> int:
    time.sleep(0.002)
    return x * 7


@app.function(max_containers=2, retries=shoal.Retries(max_retries=1, initial_delay=0.0), memory=(128, 1024))
def poison(x: int) -> int:
    if x == 100:
        ctypes.string_at(0)  # segfault
    if x == 200:
        os._exit(1)
    if x == 300:
        hog = bytearray(2 * 1024**3)  # over the 1 GiB memory limit
        return len(hog)
    return x


@app.function(timeout=2, retries=NO_DELAY, max_containers=1)
def python_loop(marker_dir: str) -> None:
    open(os.path.join(marker_dir, f"pid-{me()}"), "w").close()
    while True:
        pass


@app.function(timeout=2, retries=NO_DELAY, max_containers=1)
def native_loop(marker_dir: str) -> None:
    open(os.path.join(marker_dir, f"pid-{me()}"), "w").close()
    # catastrophic backtracking: the regex engine spins in C, holding the GIL (no watchdog, no heartbeat)
    re.match(r"(a+)+$", "a" * 64 + "b")


@app.function(max_containers=1, retries=shoal.Retries(max_retries=1, initial_delay=0.0))
def slow_pid(marker_dir: str, seconds: float) -> int:
    open(os.path.join(marker_dir, f"pid-{me()}"), "w").close()
    time.sleep(seconds)
    return me()


class LoadsBadly:
    """Pickles on the client; fails to unpickle in the container."""

    def __reduce__(self):  # noqa: ANN204
        return (_explode, ())


def _explode() -> None:
    raise RuntimeError("this payload cannot be rebuilt here")


@app.function(max_containers=1)
def identity(x: object) -> object:
    return x


@app.function(max_containers=1, secrets=[shoal.Secret.from_dict({"API_KEY": "sk-live-7f3a9c1e5b"})])
def leaky(x: int) -> str:
    key = os.environ["API_KEY"]
    print(f"using key {key}")
    raise ValueError(f"the server rejected key {key}")


@app.function(max_containers=1, secrets=[shoal.Secret.from_dict({"API_KEY": "sk-live-7f3a9c1e5b"})])
def leaky_in_pieces(x: int) -> int:
    """Writes the secret in pieces (one line, several writes), then below Python (fd 1) and crashes."""
    key = os.environ["API_KEY"]
    for char in key:
        sys.stdout.write(char)
    sys.stdout.write(" was the key\n")
    print(key[:4], key[4:], sep="")
    sys.stdout.flush()
    if x:
        os.write(1, f"raw {key}\n".encode())
        os._exit(3)
    return x


@app.function(max_containers=1)
def burst(mib: int) -> int:
    """Prints ``mib`` MiB of output as fast as it can, in 1 KiB lines."""
    line = "x" * 1023
    for _ in range(mib * 1024):
        print(line)
    return mib
