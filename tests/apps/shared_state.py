"""Dicts and Queues used from containers."""

from __future__ import annotations

import queue as stdlib_queue

import shoal

app = shoal.App("tests-shared-state")


@app.function(max_containers=4)
def consume(jobs: shoal.Queue, results: shoal.Dict, worker: int, ready: shoal.Dict) -> int:
    ready[worker] = True  # running: the producer starts once two consumers are (containers start in milliseconds)
    taken = 0
    while True:
        try:
            batch = jobs.get_many(100, timeout=2.0)
        except stdlib_queue.Empty:
            return taken
        if batch == ["STOP"]:
            return taken
        items = [x for x in batch if x != "STOP"]
        results.update({x: worker for x in items})
        taken += len(items)
        if len(items) < len(batch):
            return taken


@app.function(max_containers=2)
def remember(d: shoal.Dict, key: str, value: int) -> int | None:
    previous = d.get(key)
    d[key] = value
    return previous
