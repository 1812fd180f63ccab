"""A batch whose failures are fixed after it ran (tests/e2e/test_retry.py): a record fails while its Dict says
the cause is not fixed yet; 37 of every 1,000 records (x % 27 == 13) fail that way."""

from __future__ import annotations

import shoal

app = shoal.App("tests-retry")


def failing(x: int) -> bool:
    return x % 27 == 13


@app.function(max_containers=4)
def check(x: int, flag: str) -> int:
    if failing(x) and not shoal.Dict.from_name(flag, create_if_missing=True).get("fixed", False):
        raise ValueError(f"record {x} has a negative amount")
    return x
