"""Functions that write to stdout and stderr (tests/e2e/test_logs.py reads their lines back from code and CLI)."""

from __future__ import annotations

import sys
import time

import shoal

app = shoal.App("tests-logs")


@app.function()
def speak(x: int) -> int:
    print(f"out {x}")
    print(f"err {x}", file=sys.stderr)
    return x


@app.function()
def other(x: int) -> int:
    print(f"other {x}")
    return x


@app.function()
def slow_speak(x: int) -> int:
    time.sleep(1.0)
    print(f"late {x}")
    return x
