"""Shoal, as a user runs it: ``app.run()`` with the embedded server, containers warmed up first."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

from . import shoal_fns


class ShoalSystem:
    name = "shoal"

    def __init__(self) -> None:
        self._run: AbstractContextManager[Any] | None = None

    def start(self) -> None:
        self._run = shoal_fns.app.run(show_logs=False)
        self._run.__enter__()

    def warm(self) -> None:
        """Start every function's containers (autoscaling from zero is COLD's business, not the others')."""
        for f in (shoal_fns.double, shoal_fns.sleep20ms, shoal_fns.spin, shoal_fns.size):
            list(f.map(range(2), order_outputs=False)) if f is not shoal_fns.size else list(f.map([b"x", b"y"]))
        list(shoal_fns.sleep20ms_concurrent.map(range(4)))
        list(shoal_fns.double.map(range(2000)))

    def stop(self) -> None:
        if self._run is not None:
            self._run.__exit__(None, None, None)

    def _f(self, fn: str) -> Any:
        return getattr(shoal_fns, fn)

    def map(self, fn: str, items: list[Any]) -> list[Any]:
        return list(self._f(fn).map(items))

    def map_concurrent(self, fn: str, items: list[Any]) -> list[Any]:
        return list(self._f(fn + "_concurrent").map(items))

    def submit(self, fn: str, items: list[Any]) -> list[Any]:
        f = self._f(fn)
        return [f.spawn(x) for x in items]

    def gather(self, handles: list[Any]) -> list[Any]:
        return [h.get() for h in handles]

    def call(self, fn: str, x: Any) -> Any:
        return self._f(fn).remote(x)
