"""Dask distributed: a LocalCluster of 2 worker processes x 1 thread, ``client.map``."""

from __future__ import annotations

import os
from typing import Any

import workloads


def _cluster(workers: int, threads: int) -> Any:
    from dask.distributed import Client, LocalCluster

    cluster = LocalCluster(
        n_workers=workers, threads_per_worker=threads, processes=True, dashboard_address=None, host="127.0.0.1"
    )
    return cluster, Client(cluster)


class DaskSystem:
    name = "dask"

    def start(self) -> None:
        here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        os.environ["PYTHONPATH"] = here + os.pathsep + os.environ.get("PYTHONPATH", "")
        self.cluster, self.client = _cluster(2, 1)

    def warm(self) -> None:
        self.client.gather(self.client.map(workloads.double, range(4), pure=False))

    def stop(self) -> None:
        self.client.close()
        self.cluster.close()

    def map(self, fn: str, items: list[Any]) -> list[Any]:
        return self.client.gather(self.client.map(getattr(workloads, fn), items, pure=False))  # type: ignore[no-any-return]

    def prepare_concurrent(self) -> None:
        self.client.close()
        self.cluster.close()
        self.cluster, self.client = _cluster(2, 16)
        self.warm()

    def map_concurrent(self, fn: str, items: list[Any]) -> list[Any]:
        return self.map(fn, items)

    def submit(self, fn: str, items: list[Any]) -> list[Any]:
        f = getattr(workloads, fn)
        return [self.client.submit(f, x, pure=False) for x in items]

    def gather(self, handles: list[Any]) -> list[Any]:
        return [h.result() for h in handles]

    def call(self, fn: str, x: Any) -> Any:
        return self.client.submit(getattr(workloads, fn), x, pure=False).result()
