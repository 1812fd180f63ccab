"""The workloads as Celery tasks (the worker imports this module); the broker URL comes from the environment."""

from __future__ import annotations

import os

import workloads
from celery import Celery

url = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
app = Celery("bench", broker=url, backend=url)
app.conf.update(
    task_serializer="pickle", result_serializer="pickle", accept_content=["pickle"],
    broker_connection_retry_on_startup=True, worker_hijack_root_logger=False, task_default_queue="bench",
)  # fmt: skip

double = app.task(name="double")(workloads.double)
sleep20ms = app.task(name="sleep20ms")(workloads.sleep20ms)
spin = app.task(name="spin")(workloads.spin)
size = app.task(name="size")(workloads.size)
