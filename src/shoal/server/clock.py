"""The control plane's clock: wall-clock seconds that never step.

Leases, heartbeats, timeouts, scale-down windows and schedules are all durations between two readings of one
clock. Read from ``time.time()``, a step of the machine's clock (an NTP correction, a VM resumed, an operator's
``date -s``) would expire every lease at once when it jumps ahead, or stall schedules for as long as it went back.
So the server reads the wall clock once, at start, and counts on from there with ``time.monotonic()``: its times
still look like wall-clock times (they are stored, shown and compared with other processes' timestamps), and a
step is absorbed until the next start, which anchors afresh (every container is restarted then anyway).
"""

from __future__ import annotations

import time

_WALL_AT_START = time.time()
_MONOTONIC_AT_START = time.monotonic()


def now() -> float:
    """Seconds since the epoch, as the wall clock read at start and the monotonic clock since."""
    return _WALL_AT_START + (time.monotonic() - _MONOTONIC_AT_START)
