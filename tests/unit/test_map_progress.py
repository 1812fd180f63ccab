"""A map's progress bar counts a cancelled input apart from a failed one (issue 25, item 4)."""

from __future__ import annotations

from shoal._output import MapProgress


def test_cancelled_inputs_are_counted_apart_from_failures():
    bar = MapProgress("f.map")  # not a terminal here: it counts without drawing
    bar.completed(3, 0, 0)
    assert bar.ended() == "0 failed"
    bar.completed(1, 1, 2)
    assert (bar.done, bar.failed, bar.cancelled) == (7, 1, 2)
    assert bar.ended() == "1 failed, 2 cancelled"
