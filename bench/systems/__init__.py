"""One adapter per system under test, all with the same small interface (:class:`System`)."""

from __future__ import annotations

import importlib
from typing import Any, Protocol


class NotSupported(Exception):
    """The system has no natural way to run this workload (shown as a dash in the table)."""


class System(Protocol):
    name: str

    def start(self) -> None: ...
    def stop(self) -> None: ...
    def map(self, fn: str, items: list[Any]) -> list[Any]:
        """Ordered results of ``fn`` over ``items`` on 2 workers."""

    def map_concurrent(self, fn: str, items: list[Any]) -> list[Any]:
        """Ordered results with 32 inputs in flight at once."""

    def submit(self, fn: str, items: list[Any]) -> list[Any]:
        """One handle per input (spawn)."""

    def gather(self, handles: list[Any]) -> list[Any]:
        """The result of each handle, fetched one by one."""

    def call(self, fn: str, x: Any) -> Any:
        """One blocking call."""


ADAPTERS = {
    "shoal": ("systems.shoal_system", "ShoalSystem"),
    "shoal-ray": ("systems.shoal_ray_system", "ShoalRaySystem"),
    "pool": ("systems.pool_system", "PoolSystem"),
    "ray": ("systems.ray_system", "RayTasks"),
    "raypool": ("systems.ray_system", "RayPool"),
    "dask": ("systems.dask_system", "DaskSystem"),
    "celery": ("systems.celery_system", "CelerySystem"),
}
TITLES = {
    "shoal": "Shoal (embedded server)",
    "shoal-ray": "Shoal on its Ray backend (1 node, 2 CPUs)",
    "pool": "multiprocessing.Pool (chunked imap)",
    "ray": "Ray, one task per input",
    "raypool": "Ray Pool (chunked imap)",
    "dask": "Dask LocalCluster (2x1)",
    "celery": "Celery + Redis",
}


def load(name: str) -> System:
    module, cls = ADAPTERS[name]
    return getattr(importlib.import_module(module), cls)()  # type: ignore[no-any-return]


class PoolLike:
    """What ``multiprocessing.Pool`` and Ray's Pool share: chunked ``imap``, ``apply_async`` per input."""

    pool: Any

    def map(self, fn: str, items: list[Any]) -> list[Any]:
        return list(self.pool.imap(_workload(fn), items, chunksize=chunksize(len(items))))

    def submit(self, fn: str, items: list[Any]) -> list[Any]:
        f = _workload(fn)
        return [self.pool.apply_async(f, (x,)) for x in items]

    def gather(self, handles: list[Any]) -> list[Any]:
        return [h.get() for h in handles]

    def call(self, fn: str, x: Any) -> Any:
        return self.pool.apply(_workload(fn), (x,))


def _workload(fn: str) -> Any:
    return getattr(importlib.import_module("workloads"), fn)


def chunksize(n: int) -> int:
    """The chunk size the chunked pools use: about 16 chunks per map, at most 1,000 inputs each."""
    return max(1, min(1000, n // 16))
