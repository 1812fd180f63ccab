"""The single-machine limit: ``multiprocessing.Pool`` with chunked ``imap``."""

from __future__ import annotations

import multiprocessing
from typing import Any

import workloads

from . import PoolLike


class PoolSystem(PoolLike):
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

    def prepare_concurrent(self) -> None:
        self.wide = multiprocessing.Pool(32)
        self.wide.map(workloads.double, range(64), chunksize=1)

    def map_concurrent(self, fn: str, items: list[Any]) -> list[Any]:
        return list(self.wide.imap(getattr(workloads, fn), items, chunksize=1))
