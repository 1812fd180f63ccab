"""The scheduler's kept view of the containers (store/fleet.py): what each write changes is seen at the next view,
and a write that did not say what it touched is seen at the next resync, never forgotten."""

from __future__ import annotations

from pathlib import Path

from shoal.protocol.specs import FunctionSpec
from shoal.server.core.records import ContainerState, OutputStatus, ReportedOutput
from shoal.server.store import fleet
from shoal.server.store.sqlite import SQLiteStore


class Ticks:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def a_store(tmp_path: Path) -> tuple[SQLiteStore, Ticks]:
    store = SQLiteStore(tmp_path / "state.db")
    ticks = Ticks()
    store.fleet = fleet.Fleet(store.db, ticks)
    store.create_app("ap-1", "a")
    store.create_function("fu-1", "ap-1", "f", FunctionSpec(), None)
    store.create_call("ca-1", "fu-1", "ap-1", "map", None, inputs=[b"1", b"2", b"3"], close=True)
    return store, ticks


def held(store: SQLiteStore) -> dict[str, tuple[ContainerState, int]]:
    return {c.id: (c.state, c.leased) for c in store.live_containers()}


def test_each_write_is_seen_at_the_next_view(tmp_path: Path) -> None:
    store, _ = a_store(tmp_path)
    assert held(store) == {}
    store.add_containers(["co-1", "co-2"], "fu-1", "ap-1")
    assert held(store) == {"co-1": (ContainerState.STARTING, 0), "co-2": (ContainerState.STARTING, 0)}
    store.mark_started("co-1")
    [lease] = store.lease_inputs("fu-1", "co-1", 1)
    assert held(store)["co-1"] == (ContainerState.RUNNING, 1)
    store.complete("co-1", [ReportedOutput("ca-1", lease.index, lease.lease, OutputStatus.SUCCESS, b"r")])
    assert held(store)["co-1"] == (ContainerState.RUNNING, 0)
    store.lease_inputs("fu-1", "co-1", 2)
    assert held(store)["co-1"] == (ContainerState.RUNNING, 2)
    store.cancel_call("ca-1", "cancelled")
    assert held(store)["co-1"] == (ContainerState.RUNNING, 0)
    store.set_container_state("co-2", ContainerState.STOPPED, "gone")
    assert set(held(store)) == {"co-1"}
    # the states every exchange reads: live ones kept as committed, a stopped one read from the tables
    assert store.fleet.state("co-1") == ("fu-1", ContainerState.RUNNING)
    assert store.fleet.state("co-2") is None
    assert store.container_state("co-2") == ("fu-1", ContainerState.STOPPED)


def test_a_write_that_said_nothing_is_seen_at_the_resync(tmp_path: Path) -> None:
    store, ticks = a_store(tmp_path)
    store.add_containers(["co-1"], "fu-1", "ap-1")
    assert held(store) == {"co-1": (ContainerState.STARTING, 0)}
    with store.db.tx() as db:  # another writer: nothing told the view
        db.execute("UPDATE containers SET state='DRAINING' WHERE id='co-1'")
    assert held(store) == {"co-1": (ContainerState.STARTING, 0)}  # kept, until...
    ticks.now += fleet.RESYNC_EVERY + 0.1
    assert held(store) == {"co-1": (ContainerState.DRAINING, 0)}


def test_a_touched_container_that_is_not_in_the_tables_leaves_the_view(tmp_path: Path) -> None:
    store, _ = a_store(tmp_path)
    store.add_containers(["co-1"], "fu-1", "ap-1")
    assert set(held(store)) == {"co-1"}
    with store.db.tx() as db:
        db.execute("DELETE FROM containers WHERE id='co-1'")
    store.fleet.touched(["co-1", None])
    assert held(store) == {}


def test_the_resync_is_spread_over_its_period_a_slice_at_each_view(tmp_path: Path) -> None:
    store, ticks = a_store(tmp_path)
    ids = [f"co-{i:02d}" for i in range(10)]
    store.add_containers(ids, "fu-1", "ap-1")
    assert len(held(store)) == 10
    with store.db.tx() as db:  # another writer: nothing told the view
        db.execute("UPDATE containers SET state='DRAINING'")
    ticks.now = fleet.RESYNC_EVERY * 1.5  # half of the next period: half of the containers read again
    assert sorted(held(store).values()).count((ContainerState.DRAINING, 0)) == 5
    ticks.now = fleet.RESYNC_EVERY * 2  # that period's end: every one of them
    assert all(state == ContainerState.DRAINING for state, _ in held(store).values())
