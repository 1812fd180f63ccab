"""The store contract: every test here runs against each store implementation (SQLite now; add others to STORES)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from shoal.server.store import SQLiteStore, Store


class Clock:
    """A clock the tests move by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


STORES: dict[str, Callable[[Path, Clock], Store]] = {
    "sqlite": lambda tmp, clock: SQLiteStore(tmp / "state.db", clock=clock),
}


@pytest.fixture(params=sorted(STORES))
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], Store]]:
    """Opens the store under test (again, to check durability) at one place with one fake clock."""
    clock = Clock()
    opened: list[Store] = []

    def make() -> Store:
        store = STORES[request.param](tmp_path, clock)
        store.clock_ = clock  # type: ignore[attr-defined]
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()
