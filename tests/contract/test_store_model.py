"""Model-based test of the input lifecycle against each real store (hypothesis state machine).

Rules: submit, lease, heartbeat, complete, fail, report a whole leased chunk, report from a stale lease, crash,
cancel, advance the clock, expire results, restart (reopen the database). Invariants: each input in exactly one
state, never leased to a dead container, attempts within retries + 1, a written output never changes, call
counters agree, the scheduler's kept view of the containers matches the tables. The store keeps inputs in chunk
rows (several inputs a row); the invariants read the tables input by input, through the SQL both stores share.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from shoal.protocol import chunks
from shoal.protocol.messages import Release
from shoal.protocol.specs import FunctionSpec
from shoal.retries import RetryPolicy
from shoal.server.core.records import OutputStatus, ReportedOutput
from shoal.server.store import Store
from shoal.server.store.fleet import Fleet

from .conftest import postgres_place, sqlite_place

MAX_RETRIES = 2


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class InputLifecycle(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp())
        self.clock = Clock()
        self.open = self.place(self.dir)
        self.store = self._open()
        self.store.create_app("ap-1", "model")
        retries = RetryPolicy(max_retries=MAX_RETRIES, backoff_coefficient=1.0, initial_delay=1.0, max_delay=1.0)
        self.store.create_function("fu-1", "ap-1", "f", FunctionSpec(retries=retries), None)
        self.calls: list[str] = []
        self.submitted: dict[str, int] = {}
        self.alive: set[str] = set()
        self.started = 0
        self.held: dict[tuple[str, int], tuple[str, int]] = {}  # input -> (container, lease) per the model
        self.stale: list[tuple[str, str, int, int]] = []  # (container, call, index, lease) no longer current
        self.seen_outputs: dict[tuple[str, int], tuple[str, bytes]] = {}
        self.chunks: list[tuple[str, str, int, int, int]] = []  # leased chunks: (container, call, first, count, lease)
        self.expired: set[str] = set()

    @staticmethod
    def place(tmp: Path) -> Any:  # the store under test (a subclass per store)
        raise NotImplementedError

    def _open(self) -> Store:
        return self.open(self.clock)  # type: ignore[no-any-return]

    def teardown(self) -> None:
        self.store.close()

    @rule()
    def new_call(self) -> None:
        call_id = f"fc-{len(self.calls)}"
        self.store.create_call(call_id, "fu-1", "ap-1", "map", None)
        self.calls.append(call_id)
        self.submitted[call_id] = 0

    @precondition(lambda self: self.calls)
    @rule(data=st.data(), n=st.integers(1, 6), close=st.booleans())
    def submit(self, data: st.DataObject, n: int, close: bool) -> None:
        call_id = data.draw(st.sampled_from(self.calls))
        info = self.store.call(call_id)
        if info.num_inputs is not None:
            return
        start = self.submitted[call_id]
        self.store.add_inputs(call_id, start, [b"I%d" % i for i in range(n)], close)
        self.submitted[call_id] = start + n

    @precondition(lambda self: len(self.alive) < 3)
    @rule()
    def start_container(self) -> None:
        self.started += 1
        cid = f"ta-{self.started}"
        self.store.add_container(cid, "fu-1", "ap-1")
        self.store.mark_started(cid)
        self.alive.add(cid)

    @precondition(lambda self: self.alive)
    @rule(data=st.data(), n=st.integers(1, 5))
    def lease(self, data: st.DataObject, n: int) -> None:
        cid = data.draw(st.sampled_from(sorted(self.alive)))
        leased = self.store.lease_inputs("fu-1", cid, n)
        assert sum(x.count for x in leased) <= n
        self._hold(cid, leased)

    def _hold(self, cid: str, leased: list[Any]) -> None:
        for x in leased:
            for i in range(x.count):
                self.held[(x.call_id, x.index + i)] = (cid, x.lease)
            if x.count > 1:
                self.chunks.append((cid, x.call_id, x.index, x.count, x.lease))

    @precondition(lambda self: self.chunks)
    @rule(data=st.data())
    def report_chunk(self, data: st.DataObject) -> None:
        """A whole leased chunk succeeded: one report for all its inputs (accepted only while all are still held)."""
        cid, call_id, first, count, lease = chunk = data.draw(st.sampled_from(self.chunks))
        self.chunks.remove(chunk)
        keys = [(call_id, first + i) for i in range(count)]
        frame = chunks.pack([b"I%d" % i for i in range(count)])
        report = ReportedOutput(call_id, first, lease, OutputStatus.SUCCESS, frame, 1.0, count=count)
        accepted, _ = self.store.complete(cid, [report])
        # a chunk some of whose inputs went (reported, given back, cancelled) is rows of one now: its report is split
        # and counts for the inputs still held
        assert accepted == sum(1 for k in keys if self.held.get(k) == (cid, lease))
        for k in keys:
            if self.held.get(k) == (cid, lease):
                del self.held[k]
                self.stale.append((cid, k[0], k[1], lease))

    @precondition(lambda self: self.held)
    @rule(data=st.data(), ok=st.booleans())
    def report(self, data: st.DataObject, ok: bool) -> None:
        key = data.draw(st.sampled_from(sorted(self.held)))
        cid, lease = self.held.pop(key)
        status = OutputStatus.SUCCESS if ok else OutputStatus.FAILURE
        accepted, _ = self.store.complete(cid, [ReportedOutput(key[0], key[1], lease, status, b"I" + cid.encode())])
        assert accepted == 1
        self.stale.append((cid, key[0], key[1], lease))

    @precondition(lambda self: self.held)
    @rule(data=st.data(), with_reports=st.booleans())
    def exchange_or_release(self, data: st.DataObject, with_reports: bool) -> None:
        """A container's exchange (reports and a new lease in one transaction), or inputs given back unstarted."""
        key = data.draw(st.sampled_from(sorted(self.held)))
        cid, lease = self.held.pop(key)
        if with_reports:
            report = ReportedOutput(key[0], key[1], lease, OutputStatus.SUCCESS, b"I" + cid.encode())
            accepted, _, leased = self.store.report_and_lease(cid, "fu-1", [report], 2)
            assert accepted == 1
            self._hold(cid, leased)
        else:
            self.store.release(cid, [Release(key[0], key[1], lease)])
        self.stale.append((cid, key[0], key[1], lease))

    @precondition(lambda self: self.calls)
    @rule()
    def fail_the_queue(self) -> None:
        """The function's code cannot load: every queued (not leased) input fails."""
        self.store.fail_pending("fu-1", OutputStatus.INIT_FAILED, "cannot import")

    @precondition(lambda self: self.stale)
    @rule(data=st.data())
    def stale_report(self, data: st.DataObject) -> None:
        cid, call_id, index, lease = data.draw(st.sampled_from(self.stale))
        report = ReportedOutput(call_id, index, lease, OutputStatus.SUCCESS, b"Ilate")
        assert self.store.complete(cid, [report])[0] == 0

    @precondition(lambda self: self.alive)
    @rule(data=st.data())
    def heartbeat(self, data: st.DataObject) -> None:
        self.store.touch_container(data.draw(st.sampled_from(sorted(self.alive))))

    @precondition(lambda self: self.alive)
    @rule(data=st.data(), lost=st.booleans())
    def crash(self, data: st.DataObject, lost: bool) -> None:
        cid = data.draw(st.sampled_from(sorted(self.alive)))
        self.store.fail_container_inputs(cid, "killed", lost=lost)  # lost: with its node, no exit of its own
        self.alive.discard(cid)
        for key, (holder, lease) in list(self.held.items()):
            if holder == cid:
                self.stale.append((cid, key[0], key[1], lease))
                del self.held[key]

    @precondition(lambda self: self.calls)
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        call_id = data.draw(st.sampled_from(self.calls))
        self.store.cancel_call(call_id, "cancelled")
        for key in [k for k in self.held if k[0] == call_id]:
            cid, lease = self.held.pop(key)
            self.stale.append((cid, key[0], key[1], lease))

    @rule(seconds=st.floats(0.1, 3.0))
    def advance_clock(self, seconds: float) -> None:
        self.clock.now += seconds

    @rule()
    def expire(self) -> None:
        self.store.expire_results(retention=5.0)
        for call_id in self.calls:
            if self.store.call(call_id).expired:
                self.expired.add(call_id)

    @rule()
    def restart(self) -> None:
        """The server process dies and comes back: every container is gone."""
        self.store.close()
        self.store = self._open()
        for cid in sorted(self.alive):
            self.store.fail_container_inputs(cid, "server restarted", charge=False)
        for key, (cid, lease) in self.held.items():
            self.stale.append((cid, key[0], key[1], lease))
        self.held.clear()
        self.alive.clear()

    def _rows(self, table: str, columns: str, where: str = "1=1") -> dict[tuple[str, int], tuple[Any, ...]]:
        """A table's rows input by input: (call, index) -> the other columns (each row once per input it holds)."""
        found: dict[tuple[str, int], tuple[Any, ...]] = {}
        for call_id, idx, count, *rest in self.store.db.execute(  # type: ignore[attr-defined]
            f"SELECT call_id, idx, count, {columns} FROM {table} WHERE {where}"
        ):
            for i in range(count):
                assert (call_id, idx + i) not in found, "two rows hold the same input"
                found[(call_id, idx + i)] = (i, count, *rest)
        return found

    @invariant()
    def each_input_is_in_exactly_one_state(self) -> None:
        inputs, outputs = self._rows("inputs", "state"), self._rows("outputs", "status")
        assert not inputs.keys() & outputs.keys()
        for call_id in self.calls:
            if call_id in self.expired:
                continue
            pending = sum(1 for c, _ in inputs if c == call_id)
            done = sum(1 for c, _ in outputs if c == call_id)
            assert pending + done == self.submitted[call_id]
            assert self.store.call(call_id).done == done

    @invariant()
    def leases_belong_to_live_containers_and_match_the_model(self) -> None:
        rows = self._rows("inputs", "container_id, leases", "state='LEASED'")
        leased = {key: (cid, lease) for key, (_, _, cid, lease) in rows.items()}
        assert leased == self.held
        assert {cid for cid, _ in leased.values()} <= self.alive

    @invariant()
    def the_schedulers_view_matches_the_tables(self) -> None:
        # the view is read again only where the store's writes said they touched containers (store/fleet.py):
        # a write that forgot to say so would show here as a stale count, state or time
        kept = sorted(self.store.live_containers(), key=lambda c: c.id)
        fresh = Fleet(self.store.db)  # type: ignore[attr-defined]
        assert kept == sorted(fresh.view(), key=lambda c: c.id)

    @invariant()
    def the_queued_counters_match_the_table(self) -> None:
        counted = dict(self.store.db.execute(  # type: ignore[attr-defined]
            "SELECT function_id, SUM(count) FROM inputs WHERE state='PENDING' GROUP BY function_id"
        ).fetchall())  # fmt: skip
        assert self.store.queued_counts() == counted

    @invariant()
    def attempts_stay_within_retries(self) -> None:
        db = self.store.db  # type: ignore[attr-defined]
        worst = db.execute("SELECT MAX(failures) FROM inputs").fetchone()[0] or 0
        assert worst <= MAX_RETRIES

    @invariant()
    def outputs_never_change(self) -> None:
        for (call_id, idx), (i, count, status, data) in self._rows("outputs", "status, data").items():
            data = chunks.item(data, i) if count > 1 else data
            previous = self.seen_outputs.setdefault((call_id, idx), (status, data))
            assert previous == (status, data)


class SQLiteLifecycle(InputLifecycle):
    place = staticmethod(sqlite_place)


class PostgresLifecycle(InputLifecycle):
    place = staticmethod(postgres_place)


SQLiteLifecycle.TestCase.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)
PostgresLifecycle.TestCase.settings = settings(max_examples=30, stateful_step_count=40, deadline=None)
TestInputLifecycleSQLite = SQLiteLifecycle.TestCase
TestInputLifecyclePostgres = PostgresLifecycle.TestCase
