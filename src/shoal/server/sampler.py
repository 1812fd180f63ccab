"""Resources and progress over time: every ``SHOAL_SAMPLE_INTERVAL`` seconds the control plane asks its backend
what each container uses (CPU, memory, GPU: :meth:`~shoal.backends.base.Backend.sample`) and notes each unfinished
call's progress and its function's containers, in the store, where the dashboard's charts read them. Samples go
when results do (the result retention)."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter

from ..backends.base import Backend
from ..config import settings
from . import clock
from .core.records import CallSample, ContainerSample
from .store import Store

log = logging.getLogger("shoal.sampler")
MAX_CONTAINERS = 2_000  # a fleet larger than this is not sampled per container (the rows would outgrow their use)


class Sampler:
    def __init__(self, store: Store, backend: Backend) -> None:
        self.store = store
        self.backend = backend
        self.interval = settings().sample_interval
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.interval > 0:
            self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait({self._task}, timeout=2)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.sample_once()
            except Exception:  # noqa: BLE001 - a failed sample is a gap in a chart, never the server's end
                log.exception("sampling failed")

    async def sample_once(self) -> None:
        live = self.store.live_containers()
        at = clock.now()
        function_of = {c.id: c.function_id for c in live}
        usage = await self.backend.sample() if len(live) <= MAX_CONTAINERS else {}
        containers = [ContainerSample(cid, function_of[cid], at, u.cpu, u.memory_mib, u.gpu, u.gpu_memory_mib)
                      for cid, u in usage.items() if cid in function_of]  # fmt: skip
        per_function = Counter(c.function_id for c in live)
        calls = [CallSample(call_id, at, done, per_function.get(function_id, 0))
                 for call_id, function_id, done in self.store.samples.unfinished_calls()]  # fmt: skip
        if containers or calls:
            self.store.samples.add(containers, calls)
