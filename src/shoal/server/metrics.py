"""Per-function latency histograms: execution time, queue wait and cold start, kept in the store.

A histogram is a few counters per function (log-scale buckets, each 20% wider than the last), so recording is a
handful of upserts per batch and a percentile reads at most ~100 rows, however many inputs a function has run.
A percentile is the middle of its bucket: within 10% of the true value.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping

EXEC = "exec"  # seconds an input ran in its container
WAIT = "wait"  # seconds an input waited in the queue before a container leased it
COLD = "cold"  # seconds from asking for a container to its function being loaded
METRICS = (EXEC, WAIT, COLD)

_FLOOR = 1e-4  # 0.1 ms: anything shorter counts as this
_GROWTH = 1.2


def bucket_of(seconds: float) -> int:
    """The bucket a duration falls in (0 for anything up to 0.1 ms)."""
    if seconds <= _FLOOR:
        return 0
    return int(math.log(seconds / _FLOOR, _GROWTH)) + 1


def bucket_value(bucket: int) -> float:
    """A bucket's representative duration: the geometric middle of its bounds."""
    if bucket <= 0:
        return _FLOOR
    return float(_FLOOR * _GROWTH ** (bucket - 0.5))


def counts(durations: Iterable[float]) -> Counter[int]:
    """Bucket counts of some durations (what one batch adds to a histogram)."""
    return weighted_counts((d, 1) for d in durations)


def weighted_counts(durations: Iterable[tuple[float, int]]) -> Counter[int]:
    """Bucket counts of (duration, how many inputs took it): a chunk's inputs are counted at their mean."""
    found: Counter[int] = Counter()
    for seconds, n in durations:
        if seconds >= 0:
            found[bucket_of(seconds)] += n
    return found


def percentile(histogram: Mapping[int, int], q: float) -> float | None:
    """The ``q``-th percentile (0-100) of a histogram, or None when it is empty."""
    total = sum(histogram.values())
    if total == 0:
        return None
    rank = max(1, math.ceil(total * q / 100))
    seen = 0
    for bucket in sorted(histogram):
        seen += histogram[bucket]
        if seen >= rank:
            return bucket_value(bucket)
    return bucket_value(max(histogram))
