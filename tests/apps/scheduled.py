"""A scheduled function for the schedule tests: every tick puts its call id on a queue."""

from __future__ import annotations

import shoal

app = shoal.App("tests-scheduled")
ticks = shoal.Queue.from_name("tests-scheduled-ticks", create_if_missing=True)


@app.function(schedule=shoal.Period(seconds=1))
def tick() -> str:
    call_id = shoal.current_function_call_id() or "?"
    ticks.put(call_id)
    return call_id
