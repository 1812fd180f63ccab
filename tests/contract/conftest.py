"""The store contract: every test here runs against each store implementation (SQLite, and PostgreSQL on a private
server the tests start; add others to STORES)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from shoal.container.ledger import ChunkLedger
from shoal.protocol.messages import LeasedInput
from shoal.protocol.specs import FunctionSpec
from shoal.retries import RetryPolicy
from shoal.server.store import SQLiteStore, Store
from tests import postgres


class Clock:
    """A clock the tests move by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def sqlite_place(tmp: Path) -> Callable[[Clock], Store]:
    """A new SQLite file: how to open (and reopen) a store on it."""
    return lambda clock: SQLiteStore(tmp / "state.db", clock=clock)


def postgres_place(tmp: Path) -> Callable[[Clock], Store]:
    """A new database on the tests' PostgreSQL server: how to open (and reopen) a store on it."""
    from shoal.server.store.postgres import PostgresStore

    dsn = postgres.shared().new_database()
    return lambda clock: PostgresStore(dsn, clock=clock)


STORES: dict[str, Callable[[Path], Callable[[Clock], Store]]] = {"sqlite": sqlite_place, "postgresql": postgres_place}


@pytest.fixture(params=sorted(STORES))
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], Store]]:
    """Opens the store under test (again, to check durability) at one place with one fake clock."""
    clock = Clock()
    opened: list[Store] = []
    place = STORES[request.param](tmp_path)

    def make() -> Store:
        store = place(clock)
        store.clock_ = clock  # type: ignore[attr-defined]
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


@pytest.fixture
def store(make_store: Callable[[], Store]) -> Store:
    """A store with app ap-1, function fu-1 (one retry, 2 s apart), map call fc-1 and containers ta-1 and ta-2
    (a module may define its own ``store``)."""
    s = make_store()
    s.create_app("ap-1", "app")
    retries = RetryPolicy(max_retries=1, backoff_coefficient=1.0, initial_delay=2.0, max_delay=60.0)
    s.create_function("fu-1", "ap-1", "f", FunctionSpec(retries=retries), None)
    s.create_call("fc-1", "fu-1", "ap-1", "map", None)
    for cid in ("ta-1", "ta-2"):
        s.add_container(cid, "fu-1", "ap-1")
    return s


def inputs_of(leased: Sequence[LeasedInput]) -> list[LeasedInput]:
    """Leased rows input by input (a chunk row holds several), as a container runs them."""
    return ChunkLedger().expand(leased)
