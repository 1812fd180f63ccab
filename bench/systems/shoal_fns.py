"""The benchmark's functions as a Shoal app (containers import this module)."""

from __future__ import annotations

import workloads

import shoal

app = shoal.App("bench")

double = app.function(max_containers=2, serialized=False)(workloads.double)
sleep20ms = app.function(max_containers=2)(workloads.sleep20ms)
spin = app.function(max_containers=2)(workloads.spin)
size = app.function(max_containers=2)(workloads.size)


@app.function(max_containers=1)
@shoal.concurrent(max_inputs=32)
def sleep20ms_concurrent(x: int) -> int:
    return workloads.sleep20ms(x)
