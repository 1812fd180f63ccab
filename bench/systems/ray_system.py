"""Ray on this machine (node IP 127.0.0.1, 2 CPUs): one task per input, and Ray's chunked Pool."""

from __future__ import annotations

import os
from typing import Any

import workloads

from . import NotSupported, PoolLike


def _init_ray() -> Any:
    import ray

    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    os.environ["PYTHONPATH"] = here + os.pathsep + os.environ.get("PYTHONPATH", "")
    ray.init(
        num_cpus=2, _node_ip_address="127.0.0.1", include_dashboard=False, log_to_driver=False,
        configure_logging=False, runtime_env={"env_vars": {"PYTHONPATH": os.environ["PYTHONPATH"]}},
    )  # fmt: skip
    return ray


class RayTasks:
    name = "ray"

    def start(self) -> None:
        self.ray = _init_ray()
        self.tasks = {fn: self.ray.remote(getattr(workloads, fn)) for fn in ("double", "sleep20ms", "spin", "size")}

    def warm(self) -> None:
        self.ray.get([self.tasks["double"].remote(i) for i in range(4)])

    def stop(self) -> None:
        self.ray.shutdown()

    def map(self, fn: str, items: list[Any]) -> list[Any]:
        task = self.tasks[fn]
        return self.ray.get([task.remote(x) for x in items])  # type: ignore[no-any-return]

    def map_concurrent(self, fn: str, items: list[Any]) -> list[Any]:
        task = self.tasks[fn].options(num_cpus=2 / 32)
        return self.ray.get([task.remote(x) for x in items])  # type: ignore[no-any-return]

    def submit(self, fn: str, items: list[Any]) -> list[Any]:
        task = self.tasks[fn]
        return [task.remote(x) for x in items]

    def gather(self, handles: list[Any]) -> list[Any]:
        return [self.ray.get(h) for h in handles]

    def call(self, fn: str, x: Any) -> Any:
        return self.ray.get(self.tasks[fn].remote(x))


class RayPool(PoolLike):
    name = "raypool"

    def start(self) -> None:
        self.ray = _init_ray()
        from ray.util.multiprocessing import Pool

        self.pool = Pool(processes=2)

    def warm(self) -> None:
        self.pool.map(workloads.double, range(4))

    def stop(self) -> None:
        self.pool.terminate()
        self.ray.shutdown()

    def map_concurrent(self, fn: str, items: list[Any]) -> list[Any]:
        raise NotSupported("a Ray Pool runs one actor per CPU")
