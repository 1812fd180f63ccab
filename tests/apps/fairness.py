"""Functions that compete for a machine-wide cap of containers: two with long backlogs, eight that come later
(imported without the test fixtures)."""

from __future__ import annotations

import time
from collections.abc import Callable

import shoal

app = shoal.App("tests-fairness")


def _work() -> Callable[[int], int]:
    """A function pickled by value (a closure): its containers need nothing of the tests package."""

    def work(x: int) -> int:
        time.sleep(0.2)
        return x

    return work


hogs = [app.function(name=f"hog_{i}", max_containers=6, serialized=True)(_work()) for i in range(2)]
late = [app.function(name=f"late_{i}", max_containers=6, serialized=True)(_work()) for i in range(8)]
