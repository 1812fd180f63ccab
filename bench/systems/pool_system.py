"""The single-machine limit: ``multiprocessing.Pool`` with chunked ``imap``."""

from __future__ import annotations

import multiprocessing
from typing import Any

import workloads

from . import chunksize


class PoolSystem:
    name = "pool"

    def start(self) -> None:
        self.pool = multiprocessing.Pool(2)

    def warm(self) -> None:
        self.pool.map(workloads.double, range(4))

    def stop(self) -> None:
        if hasattr(self, "wide"):
            self.wide.terminate()
        self.pool.terminate()
        self.pool.join()

    def map(self, fn: str, items: list[Any]) -> list[Any]:
        return list(self.pool.imap(getattr(workloads, fn), items, chunksize=chunksize(len(items))))

    def prepare_concurrent(self) -> None:
        self.wide = multiprocessing.Pool(32)
        self.wide.map(workloads.double, range(64), chunksize=1)

    def map_concurrent(self, fn: str, items: list[Any]) -> list[Any]:
        return list(self.wide.imap(getattr(workloads, fn), items, chunksize=1))

    def submit(self, fn: str, items: list[Any]) -> list[Any]:
        f = getattr(workloads, fn)
        return [self.pool.apply_async(f, (x,)) for x in items]

    def gather(self, handles: list[Any]) -> list[Any]:
        return [h.get() for h in handles]

    def call(self, fn: str, x: Any) -> Any:
        return self.pool.apply(getattr(workloads, fn), (x,))
