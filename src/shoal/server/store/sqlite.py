"""Durable state in SQLite (WAL): apps, functions, calls, inputs, outputs, containers, logs.

The store is the source of truth. An input is committed before its id is acknowledged, moves
PENDING -> LEASED -> (deleted, with exactly one row in ``outputs``), and a report from a lease that is
no longer current is rejected, so every input ends in exactly one result whatever crashes.

All methods are synchronous and meant to be called from one thread (the server's event loop); each
public method is one transaction.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import msgspec

from ...protocol import chunks
from ...protocol.messages import FailureInfo, InputRef, LogEntry, OutputRow, Release
from ...protocol.specs import FunctionSpec, InvalidSpec, decode_spec
from ...retries import RetryPolicy
from .. import metrics
from ..clock import now as clock_now
from ..errors import Invalid, NotFound
from ..records import (
    RETRYABLE,
    CallInfo,
    ContainerRecord,
    ContainerRow,
    ContainerState,
    FunctionLoad,
    FunctionRecord,
    Intent,
    LeasedInput,
    Output,
    OutputStatus,
    ReportedOutput,
)
from . import schema
from .blob_refs import BLOB_PAYLOAD_LEN, BlobRefs
from .catalog import Catalog
from .checkpoints import Checkpointer
from .insights import Insights
from .kv import KVTables
from .schedules import ScheduleBook
from .secrets import SecretRows
from .streams import ItemStreams
from .tokens import TokenRows

log = logging.getLogger("shoal.store")
_STATES = {s.value: s for s in ContainerState}  # a dict lookup instead of an Enum call per row
_NO_ROW = (0, 0, "", 0)  # what _held has for a report that matches no leased row
PAYLOAD_STATUSES = {OutputStatus.SUCCESS.value, OutputStatus.FAILURE.value}  # outputs whose data is a payload
RECOUNT_EVERY = 300.0  # seconds between checks of the queued-input counters against the table

# what the caller raises for an input that ended without running to an answer (the dashboard's grouping key)
ERROR_TYPES = {"TIMEOUT": "FunctionTimeoutError", "CANCELLED": "InputCancellation"}


class Ending(NamedTuple):
    """An input leaving the queue with its output, and what people see of its last attempt."""

    rowid: int
    call_id: str
    idx: int
    status: str
    data: bytes
    lease: int
    container_id: str | None = None
    duration: float | None = None
    error: FailureInfo | None = None
    span: int = 1  # a chunk's successes: idx .. idx+span-1, data a frame of their results

    def described(self) -> FailureInfo | None:
        """The failure as text: the container's account of a user exception, else the server's message."""
        if self.status == OutputStatus.SUCCESS.value:
            return None
        if self.error is not None:
            return self.error
        if self.status == OutputStatus.FAILURE.value:
            return FailureInfo("Exception", "(no description was reported)", "")
        message = chunks.item(self.data, 0) if self.span > 1 else self.data  # a chunk's: the same for each input
        return FailureInfo(ERROR_TYPES.get(self.status, "ExecutionError"), message.decode(errors="replace"), "")


class SQLiteStore:
    """SQLite-backed state of one control plane."""

    def __init__(self, path: Path | str, clock: Any = clock_now) -> None:
        self.path = str(path)
        self.clock = clock
        self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode: a commit survives a crash of the process, not necessarily a power loss.
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("PRAGMA busy_timeout=5000")
        self.db.execute("PRAGMA wal_autocheckpoint=0")  # checkpoints run on their own thread (checkpoints.py)
        schema.create(self.db)
        self._checkpointer = Checkpointer(self.path)
        self.catalog = Catalog(self)
        self.insights = Insights(self)
        self.kv = KVTables(self)
        self.items = ItemStreams(self)
        self.blob_refs = BlobRefs(self)
        self.schedules = ScheduleBook(self)
        self.secrets = SecretRows(self)
        self.tokens = TokenRows(self)
        # PENDING inputs per function, kept with each commit so that a scheduler tick does not count the queue
        # (a full scan: 20 ms at 100,000 inputs, 10 times a second); recounted at open and every RECOUNT_EVERY s
        self._queued: Counter[str] = Counter()
        self._queued_delta: Counter[str] = Counter()  # this transaction's changes, applied when it commits
        self._recounted = 0.0
        self._recount()
        self._specs: dict[str, FunctionSpec] = {}
        self._unusable: set[str] = set()  # functions whose stored spec cannot be read (logged once)

    def close(self) -> None:
        self._checkpointer.close()
        self.db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self._queued_delta.clear()
            if self.db.in_transaction:  # SQLite already rolled back on some errors (e.g. a full disk)
                self.db.execute("ROLLBACK")
            raise
        try:
            self.db.execute("COMMIT")
        except BaseException:
            self._queued_delta.clear()
            raise
        if self._queued_delta:
            self._queued.update(self._queued_delta)
            self._queued_delta.clear()

    def _recount(self) -> None:
        """Count the PENDING inputs of every function from the table (at open, and as a periodic check)."""
        counted = Counter(dict(self.db.execute(
            "SELECT function_id, SUM(count) FROM inputs WHERE state='PENDING' GROUP BY function_id"
        ).fetchall()))  # fmt: skip
        kept = +self._queued
        if self._recounted and kept != counted:
            log.warning("queued-input counters drifted (kept %s, counted %s); corrected", dict(kept), dict(counted))
        self._queued = counted
        self._recounted = time.monotonic()

    def queued_counts(self) -> dict[str, int]:
        """PENDING inputs per function (including those in a retry backoff), as the store keeps them."""
        return {fid: n for fid, n in self._queued.items() if n}

    # ---- apps and functions -------------------------------------------------------------------

    def create_app(self, app_id: str, name: str, mode: str = "ephemeral") -> None:
        now = self.clock()
        with self._tx() as db:
            db.execute(
                "INSERT INTO apps (id, name, state, created_at, mode, client_seen) VALUES (?, ?, 'RUNNING', ?, ?, ?)",
                (app_id, name, now, mode, now),
            )

    def app_state(self, app_id: str) -> str | None:
        row = self.db.execute("SELECT state FROM apps WHERE id=?", (app_id,)).fetchone()
        return row[0] if row else None

    def create_function(
        self, function_id: str, app_id: str, tag: str, spec: FunctionSpec, pickled: bytes | None
    ) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO functions (id, app_id, tag, spec, pickled, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                (function_id, app_id, tag, msgspec.json.encode(spec).decode(), pickled, self.clock()),
            )

    def function(self, function_id: str) -> FunctionRecord | None:
        row = self.db.execute("SELECT app_id, tag, spec, pickled FROM functions WHERE id=?", (function_id,)).fetchone()
        return FunctionRecord(function_id, row[0], row[1], self._spec(function_id, row[2]), row[3]) if row else None

    def _spec(self, function_id: str, text: str) -> FunctionSpec:
        """Specs change only through :meth:`update_spec`: decoded once per function."""
        spec = self._specs.get(function_id)
        if spec is None:
            spec = self._specs[function_id] = decode_spec(text)
        return spec

    def update_spec(self, function_id: str, change: Callable[[FunctionSpec], FunctionSpec]) -> FunctionSpec:
        """Replace a function's spec by ``change(spec)`` in one transaction (autoscaler settings)."""
        with self._tx() as db:
            row = db.execute("SELECT spec FROM functions WHERE id=?", (function_id,)).fetchone()
            if row is None:
                raise NotFound(function_id)
            spec = change(decode_spec(row[0]))
            db.execute("UPDATE functions SET spec=? WHERE id=?", (msgspec.json.encode(spec).decode(), function_id))
        self._specs[function_id] = spec
        return spec

    def function_by_tag(self, app_id: str, tag: str) -> str | None:
        row = self.db.execute(
            "SELECT id FROM functions WHERE app_id=? AND tag=? ORDER BY created_at DESC, rowid DESC LIMIT 1",
            (app_id, tag),
        ).fetchone()
        return row[0] if row else None

    def _policy(self, function_id: str) -> RetryPolicy:
        found = self.function(function_id)
        return found.spec.retries if found else RetryPolicy()

    # ---- calls and inputs ---------------------------------------------------------------------

    def create_call(
        self, call_id: str, function_id: str, app_id: str, kind: str, parent_input: str | None,
        inputs: Sequence[bytes] = (), close: bool = False,
    ) -> None:  # fmt: skip
        """Create a call, with its first inputs (and closed: a spawn) in the same transaction."""
        with self._tx() as db:
            db.execute(
                "INSERT INTO calls (id, function_id, app_id, kind, parent_input, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                (call_id, function_id, app_id, kind, parent_input, self.clock()),
            )
            if inputs or close:
                self._add_inputs(db, call_id, 0, inputs, close)

    def record_requests(self, rows: Sequence[tuple[str, str, str, float, float, bool]]) -> None:
        """Finished web requests as calls of one input each: (call, function, app, started, finished, failed)."""
        with self._tx() as db:
            db.executemany(
                "INSERT OR IGNORE INTO calls (id, function_id, app_id, kind, created_at, num_inputs, submitted, done, "
                "failed, finished_at) VALUES (?, ?, ?, 'web', ?, 1, 1, 1, ?, ?)",
                [(c, f, a, started, int(failed), finished) for c, f, a, started, finished, failed in rows],
            )

    def add_inputs(self, call_id: str, start: int, payloads: Sequence[bytes], close: bool) -> int:
        """Commit inputs ``start..start+len-1`` of a call (idempotent per index); returns how many are new."""
        with self._tx() as db:
            return self._add_inputs(db, call_id, start, payloads, close)

    def _add_inputs(self, db: sqlite3.Connection, call_id: str, start: int, payloads: Sequence[bytes],
                    close: bool) -> int:  # fmt: skip
        row = db.execute("SELECT function_id, num_inputs, cancelled FROM calls WHERE id=?", (call_id,)).fetchone()
        if row is None:
            raise NotFound(call_id)
        function_id, num_inputs, cancelled = row
        now = self.clock()
        if num_inputs is not None:
            if start + len(payloads) <= num_inputs:
                return 0  # a client retrying a batch it already sent (its response was lost)
            raise Invalid(f"call {call_id} is closed: it takes no more inputs")
        if cancelled:
            raise Invalid(f"call {call_id} was cancelled")
        submitted = db.execute("SELECT submitted FROM calls WHERE id=?", (call_id,)).fetchone()[0]
        if start < submitted:  # inputs the call already has (a client resending a batch whose answer it lost)
            skip = min(submitted - start, len(payloads))
            start, payloads = start + skip, payloads[skip:]
        rows = [(call_id, start + offset, function_id, chunks.frame_or_item(group), len(group), now)
                for offset, group in _groups(payloads)]  # fmt: skip
        added = self._insert_inputs(db, rows)
        BlobRefs.record(db, call_id, "in", payloads)
        self._queued_delta[function_id] += added
        db.execute("UPDATE calls SET submitted = MAX(submitted, ?) WHERE id=?", (start + len(payloads), call_id))
        if close:
            db.execute("UPDATE calls SET num_inputs = submitted WHERE id=?", (call_id,))
            self._maybe_finish(db, call_id)
        return added

    def _insert_inputs(self, db: sqlite3.Connection, rows: Sequence[tuple[str, int, str, bytes, int, float]]) -> int:
        """Insert PENDING rows (call, idx, function, payload, count, queued_at); returns the inputs that are new.

        Each row's id is a multiple of ``ROW_SPACING`` above every row's now: the queue's order, with room after each
        chunk for the pieces it may be cut into (see :meth:`_cut`), which then keep its place."""
        top = db.execute("SELECT MAX(rowid) FROM inputs").fetchone()[0] or 0
        first = (top // ROW_SPACING + 1) * ROW_SPACING
        spaced = [(first + j * ROW_SPACING, *r) for j, r in enumerate(rows)]
        insert = (
            "INSERT OR IGNORE INTO inputs (rowid, call_id, idx, function_id, state, payload, count, queued_at) "
            "VALUES (?, ?, ?, ?, 'PENDING', ?, ?, ?)"
        )
        db.execute("SAVEPOINT inputs")
        before = db.total_changes
        db.executemany(insert, spaced)
        if db.total_changes - before == len(spaced):  # the usual case: every row is new
            added = sum(r[4] for r in rows)
        else:
            db.execute("ROLLBACK TO inputs")
            added = sum(r[5] for r in spaced if db.execute(insert, r).rowcount)
        db.execute("RELEASE inputs")
        return added

    @staticmethod
    def _room_after(db: sqlite3.Connection, rowid: int, n: int) -> bool:
        """Whether row ids ``rowid+1 .. rowid+n-1`` are free (a chunk's pieces can take them, in its place)."""
        return (
            n <= ROW_SPACING
            and db.execute("SELECT 1 FROM inputs WHERE rowid>? AND rowid<? LIMIT 1", (rowid, rowid + n)).fetchone()
            is None
        )

    def lease_inputs(self, function_id: str, container_id: str, max_inputs: int) -> list[LeasedInput]:
        """Lease up to ``max_inputs`` ready inputs, oldest first; an isolated input is always leased alone."""
        if not self._has_pending(function_id):  # e.g. a container woken by an input its sibling took first
            return []
        with self._tx() as db:
            return self._lease(db, function_id, container_id, max_inputs, self.clock())

    def _has_pending(self, function_id: str) -> bool:
        """Whether the function has PENDING inputs, by the counters kept with each commit (this transaction's
        changes included): without one, a lease would find nothing, so it need not ask the table."""
        return self._queued[function_id] + self._queued_delta[function_id] > 0

    def report_and_lease(
        self, container_id: str, function_id: str, reports: Sequence[ReportedOutput], max_inputs: int
    ) -> tuple[int, set[str], list[LeasedInput]]:
        """:meth:`complete` then :meth:`lease_inputs` in one transaction (one commit per container exchange)."""
        now = self.clock()
        with self._tx() as db:
            accepted, touched = self._complete(db, container_id, reports, now) if reports else (0, set())
            wanted = max_inputs > 0 and self._has_pending(function_id)
            leased = self._lease(db, function_id, container_id, max_inputs, now) if wanted else []
            if not reports and not leased:  # nothing above marked it seen
                db.execute("UPDATE containers SET last_seen=? WHERE id=?", (now, container_id))
        return accepted, touched, leased

    def _lease(
        self, db: sqlite3.Connection, function_id: str, container_id: str, max_inputs: int, now: float
    ) -> list[LeasedInput]:
        rows = db.execute(
            "SELECT rowid, call_id, idx, payload, leases, isolate, queued_at, count FROM inputs "
            "WHERE function_id=? AND state='PENDING' AND not_before<=? ORDER BY rowid LIMIT ?",
            (function_id, now, max_inputs),
        ).fetchall()
        if not rows:
            return []
        if rows[0][5]:
            rows = rows[:1]
        else:
            rows = [r for r in rows if not r[5]]
        taken, items, cut = [], 0, None
        for r in rows:  # whole rows up to max_inputs inputs; a chunk that would pass it is cut there
            if items + r[7] > max_inputs:
                cut = r if items < max_inputs else None
                break
            taken.append(r)
            items += r[7]
        leased = [LeasedInput(r[1], r[2], r[4] + 1, r[3], r[7]) for r in taken]
        for chunk in _chunks([r[0] for r in taken]):
            db.execute(
                "UPDATE inputs SET state='LEASED', container_id=?, leases=leases+1, leased_at=? "
                f"WHERE rowid IN ({','.join('?' * len(chunk))})",
                (container_id, now, *chunk),
            )
        if cut is not None:
            leased.append(self._cut(db, function_id, cut, max_inputs - items, container_id, now))
            taken.append(cut)
        self._queued_delta[function_id] -= sum(x.count for x in leased)
        db.execute("UPDATE containers SET last_active=?, last_seen=? WHERE id=?", (now, now, container_id))
        self._observe(db, function_id, metrics.WAIT, [(now - r[6], x.count) for r, x in zip(taken, leased) if r[6]])
        return leased

    def _cut(
        self, db: sqlite3.Connection, function_id: str, row: Any, k: int, container_id: str, now: float
    ) -> LeasedInput:
        """Lease the first ``k`` inputs of a queued chunk.

        The chunk is cut into pieces of ``k`` inputs, in its place in the queue (row ids after its own), and the
        first is leased: a container that keeps asking for ``k`` (one at a time, for slow inputs) then takes a piece
        whole, one small write per lease as for a row of one input, instead of rewriting the rest of the chunk each
        time. Where its row ids are taken, the first ``k`` become a row of their own and the rest stays."""
        rowid, call_id, idx, payload, leases, _, queued_at, count = row
        pieces = -(-count // k)
        if not self._room_after(db, rowid, pieces):
            return self._lease_head(db, row, k, container_id, now)
        items = chunks.unpack(payload)
        db.execute("DELETE FROM inputs WHERE rowid=?", (rowid,))
        parts = [
            (chunks.frame_or_item(items[start : start + k]), min(k, count - start)) for start in range(0, count, k)
        ]
        db.executemany(
            "INSERT INTO inputs (rowid, call_id, idx, function_id, state, payload, count, leases, container_id, "
            "leased_at, queued_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(rowid + p, call_id, idx + p * k, function_id, "PENDING", part, n, leases, None, None, queued_at) if p else
             (rowid, call_id, idx, function_id, "LEASED", part, n, leases + 1, container_id, now, queued_at)
             for p, (part, n) in enumerate(parts)],
        )  # fmt: skip
        return LeasedInput(call_id, idx, leases + 1, *parts[0])

    def _lease_head(self, db: sqlite3.Connection, row: Any, k: int, container_id: str, now: float) -> LeasedInput:
        """Lease the first ``k`` inputs of a queued chunk: they become a row of their own, the rest stays queued in
        the chunk's place."""
        rowid, call_id, idx, payload, leases, _, queued_at, count = row
        head, tail = chunks.split(payload, k)
        db.execute("UPDATE inputs SET idx=?, count=?, payload=? WHERE rowid=?", (idx + k, count - k, tail, rowid))
        db.execute(
            "INSERT INTO inputs (call_id, idx, function_id, state, payload, count, leases, container_id, leased_at, "
            "queued_at) SELECT call_id, ?, function_id, 'LEASED', ?, ?, ?, ?, ?, queued_at FROM inputs WHERE rowid=?",
            (idx, head, k, leases + 1, container_id, now, rowid),
        )
        return LeasedInput(call_id, idx, leases + 1, head, k)

    def _explode(self, db: sqlite3.Connection, where: str, params: Sequence[Any]) -> None:
        """Turn the chunks (rows of several inputs) that ``where`` selects into rows of one input each, in the same
        state: what happens to inputs one by one (a failure, a crash, a cancel) then happens to rows."""
        rows = db.execute(
            "SELECT rowid, call_id, idx, function_id, state, payload, count, leases, failures, isolate, container_id, "
            f"leased_at, not_before, queued_at FROM inputs WHERE count>1 AND ({where})",
            params,
        ).fetchall()
        for rowid, call_id, idx, *rest in rows:
            function_id, state, payload, count, *kept = rest
            db.execute("DELETE FROM inputs WHERE rowid=?", (rowid,))
            room = self._room_after(db, rowid, count)  # the singles keep the chunk's place in the queue if they can
            singles = [(rowid + i if room or i == 0 else None, call_id, idx + i, function_id, state, item, *kept)
                       for i, item in enumerate(chunks.unpack(payload))]  # fmt: skip
            db.executemany(
                "INSERT INTO inputs (rowid, call_id, idx, function_id, state, payload, leases, failures, isolate, "
                "container_id, leased_at, not_before, queued_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                singles,
            )

    def _observe(
        self, db: sqlite3.Connection, function_id: str, metric: str, durations: Sequence[tuple[float, int]]
    ) -> None:
        """Add (duration, inputs) to a function's histogram (one upsert per bucket touched)."""
        db.executemany(
            "INSERT INTO function_metrics VALUES (?, ?, ?, ?) "
            "ON CONFLICT (function_id, metric, bucket) DO UPDATE SET n = n + excluded.n",
            [(function_id, metric, b, n) for b, n in metrics.weighted_counts(durations).items()],
        )

    def next_retry_at(self, function_id: str) -> float | None:
        """When the function's earliest input in its retry backoff becomes ready (None: none is waiting)."""
        row = self.db.execute(
            "SELECT MIN(not_before) FROM inputs INDEXED BY inputs_waiting "  # the retried rows only, not the queue
            "WHERE not_before>0 AND not_before>? AND function_id=? AND state='PENDING'",
            (self.clock(), function_id),
        ).fetchone()
        return float(row[0]) if row and row[0] is not None else None

    def complete(self, container_id: str, reports: Sequence[ReportedOutput]) -> tuple[int, set[str]]:
        """Apply a container's reports. Returns (accepted count, ids of calls that got new outputs).

        A report whose lease is no longer current (a zombie container, a cancelled call) is ignored.
        A retryable failure with retries left puts the input back in the queue after its backoff.
        The whole batch is one transaction: outputs are inserted together and each call's counters updated once.
        """
        with self._tx() as db:
            return self._complete(db, container_id, reports, self.clock())

    def _complete(
        self, db: sqlite3.Connection, container_id: str, reports: Sequence[ReportedOutput], now: float
    ) -> tuple[int, set[str]]:
        accepted = 0
        finished: list[Ending] = []
        ran: dict[str, list[tuple[float, int]]] = {}  # function -> (duration, inputs) of the accepted reports
        reports, held = self._matched(db, container_id, reports)
        for r in reports:
            row = held.pop((r.call_id, r.index, r.lease), None)
            if row is None or row[3] != r.count:  # not (or no longer) this container's lease
                continue
            accepted += r.count
            if r.duration > 0:
                ran.setdefault(row[2], []).append((r.duration / r.count, r.count))
            ending = Ending(row[0], r.call_id, r.index, r.status.value, r.data, r.lease, container_id,
                            r.duration or None, r.error, r.count)  # fmt: skip
            if r.status in RETRYABLE and self._retry(db, row[2], row[1], ending, now):
                continue
            finished.append(ending)
        self._finish(db, finished, now)
        db.execute(
            "UPDATE containers SET last_active=?, last_seen=?, served=served+? WHERE id=?",
            (now, now, accepted, container_id),
        )
        for function_id, durations in ran.items():
            self._observe(db, function_id, metrics.EXEC, durations)
        return accepted, {f.call_id for f in finished}

    @staticmethod
    def _held(db: sqlite3.Connection, container_id: str) -> dict[tuple[str, int, int], tuple[int, int, str, int]]:
        """A container's leased rows: (call, idx, lease) -> (rowid, failures, function, count)."""
        return {
            (call_id, idx, leases): (rowid, failures, function_id, count)
            for rowid, call_id, idx, leases, failures, function_id, count in db.execute(
                "SELECT rowid, call_id, idx, leases, failures, function_id, count FROM inputs "
                "WHERE container_id=? AND state='LEASED'",
                (container_id,),
            )
        }

    def _matched(
        self, db: sqlite3.Connection, container_id: str, reports: Sequence[ReportedOutput]
    ) -> tuple[Sequence[ReportedOutput], dict[tuple[str, int, int], tuple[int, int, str, int]]]:
        """A container's reports (or releases, as reports) and its leased rows, made to match one to one: the usual
        case as they are; else through :meth:`_per_input`, then the rows again."""
        held = self._held(db, container_id)
        if all(held.get((r.call_id, r.index, r.lease), _NO_ROW)[3] == r.count for r in reports):
            return reports, held
        return self._per_input(db, reports, held), self._held(db, container_id)

    def _per_input(
        self, db: sqlite3.Connection, reports: Sequence[ReportedOutput],
        held: dict[tuple[str, int, int], tuple[int, int, str, int]],
    ) -> list[ReportedOutput]:  # fmt: skip
        """Reports that do not match a leased row one to one, made to: the chunks they report inputs of become rows
        of one input each, and a report of a whole chunk that is no longer one becomes a report per input (a
        release, which has no data, becomes a release per input)."""
        spans: dict[tuple[str, int], list[tuple[int, int, int]]] = {}
        for (call_id, idx, lease), (rowid, _, _, count) in held.items():
            if count > 1:
                spans.setdefault((call_id, lease), []).append((idx, count, rowid))
        split: set[int] = set()
        out: list[ReportedOutput] = []
        for r in reports:
            row = held.get((r.call_id, r.index, r.lease))
            if row is not None and row[3] == r.count:
                out.append(r)
                continue
            if r.count > 1:  # a chunk's results, for inputs that are now rows of their own
                if r.status != OutputStatus.SUCCESS:
                    continue  # not something a container sends: ignored like a stale report
                per = r.duration / r.count
                data = chunks.unpack(r.data) if r.data else [b""] * r.count
                out += [msgspec.structs.replace(r, index=r.index + i, data=d, duration=per, count=1)
                        for i, d in enumerate(data)]  # fmt: skip
            else:
                out.append(r)
            for idx, count, rowid in spans.get((r.call_id, r.lease), ()):
                if idx < r.index + r.count and r.index < idx + count:  # a chunk holding any input it reports
                    split.add(rowid)
        if split:
            rowids = sorted(split)
            self._explode(db, f"rowid IN ({','.join('?' * len(rowids))})", rowids)
        return out

    def _retry(self, db: sqlite3.Connection, function_id: str, failures: int, attempt: Ending, now: float) -> bool:
        """Put a failed input back in the queue after its backoff, keeping the attempt for people; False when its
        retries are spent."""
        delay = self._policy(function_id).delay_before_retry(failures + 1)
        if delay is None:
            return False
        db.execute(
            "UPDATE inputs SET state='PENDING', container_id=NULL, failures=failures+1, not_before=?, queued_at=? "
            "WHERE rowid=?",
            (now + delay, now + delay, attempt.rowid),
        )
        self._queued_delta[function_id] += 1
        self._record_attempts(db, [attempt], now)
        return True

    def _record_attempts(self, db: sqlite3.Connection, attempts: Sequence[Ending], now: float) -> None:
        rows = []
        for a in attempts:
            error = a.described()
            rows.append((a.call_id, a.idx, a.lease, a.container_id, a.status, a.duration,
                         error.type if error else None, error.message if error else None, now))  # fmt: skip
        db.executemany("INSERT INTO attempts VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)

    def _finish(self, db: sqlite3.Connection, rows: Sequence[Ending], now: float) -> None:
        """End inputs: they become outputs (the first result of an input wins), counted on their calls, and leave
        the queue. One statement per step, whatever the batch size."""
        insert = (
            "INSERT OR IGNORE INTO outputs (call_id, idx, status, data, lease, created_at, container_id, duration, "
            "error_type, error_message, traceback, count) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        )
        values = []
        for r in rows:
            e = r.described()
            values.append((r.call_id, r.idx, r.status, r.data, r.lease, now, r.container_id, r.duration,
                           e and e.type, e and e.message, e and e.traceback, r.span))  # fmt: skip
        db.execute("SAVEPOINT outputs")
        before = db.total_changes
        db.executemany(insert, values)
        if db.total_changes - before == len(values):  # the usual case: every output is new
            new = values
        else:  # some input already had its result (the first one wins): find which rows are new, one by one
            db.execute("ROLLBACK TO outputs")
            new = [v for v in values if db.execute(insert, v).rowcount]
        db.execute("RELEASE outputs")
        counts: dict[str, list[int]] = {}
        for call_id, _, status, data, *_, count in new:
            if len(data) == BLOB_PAYLOAD_LEN and count == 1 and status in PAYLOAD_STATUSES:  # it may name a blob
                BlobRefs.record(db, call_id, "out", (data,))
            c = counts.setdefault(call_id, [0, 0])
            c[0] += count
            c[1] += count if status != OutputStatus.SUCCESS.value else 0
        for call_id, (done, failed) in counts.items():
            db.execute("UPDATE calls SET done=done+?, failed=failed+? WHERE id=?", (done, failed, call_id))
            self._maybe_finish(db, call_id)
        for chunk in _chunks([r[0] for r in rows]):
            deleted = db.execute(
                f"DELETE FROM inputs WHERE rowid IN ({','.join('?' * len(chunk))}) RETURNING function_id, state, count",
                chunk,
            ).fetchall()
            for function_id, state, count in deleted:  # the queued count follows every row that leaves the queue
                if state == "PENDING":
                    self._queued_delta[function_id] -= count

    def release(self, container_id: str, leases: Sequence[Release]) -> None:
        """Give back inputs a container leased but never started, without charging an attempt."""
        with self._tx() as db:
            as_reports = [ReportedOutput(r.call_id, r.index, r.lease, OutputStatus.SUCCESS, b"", count=r.count)
                          for r in leases]  # fmt: skip
            items, held = self._matched(db, container_id, as_reports)
            for r in items:
                if (row := held.pop((r.call_id, r.index, r.lease), None)) is None or row[3] != r.count:
                    continue  # no longer this container's
                db.execute("UPDATE inputs SET state='PENDING', container_id=NULL WHERE rowid=?", (row[0],))
                self._queued_delta[row[2]] += row[3]

    def _settle(self, db: sqlite3.Connection, function_id: str, failures: int, ending: Ending, now: float) -> bool:
        """Finish or retry one leased input; True when an output was written."""
        if ending.status in RETRYABLE and self._retry(db, function_id, failures, ending, now):
            return False
        self._finish(db, [ending], now)
        return True

    def _maybe_finish(self, db: sqlite3.Connection, call_id: str) -> None:
        db.execute(
            "UPDATE calls SET finished_at=? WHERE id=? AND num_inputs IS NOT NULL AND done>=num_inputs "
            "AND finished_at IS NULL",
            (self.clock(), call_id),
        )

    def fail_container_inputs(
        self,
        container_id: str,
        message: str,
        status: OutputStatus = OutputStatus.CRASHED,
        charge: bool = True,
        lost: bool = False,
    ) -> set[str]:
        """A container died: re-queue its leased inputs.

        When it held one input (or inputs already isolated), that input caused or suffered the crash and is
        charged an attempt. When it held several, none is charged, but each is isolated (leased alone from now
        on), so a poison input is found after at most one uncharged crash and every budget still ends. A ``lost``
        container (the backend lost it with its node: nothing says an input caused it) is treated as one that held
        several even when it held one: only an input already isolated is charged.
        """
        now = self.clock()
        touched: set[str] = set()
        with self._tx() as db:
            self._explode(db, "container_id=? AND state='LEASED'", (container_id,))
            rows = db.execute(
                "SELECT rowid, call_id, idx, leases, failures, function_id, isolate FROM inputs "
                "WHERE container_id=? AND state='LEASED'",
                (container_id,),
            ).fetchall()
            endings = [Ending(r[0], r[1], r[2], status.value, message.encode(), r[3], container_id) for r in rows]
            blamed = len(rows) == 1 and (not lost or bool(rows[0][6]))
            if not (charge and blamed):
                db.executemany(
                    "UPDATE inputs SET state='PENDING', container_id=NULL, isolate=?, queued_at=? WHERE rowid=?",
                    [(int(charge), now, r[0]) for r in rows],
                )
                for r in rows:
                    self._queued_delta[r[5]] += 1
                self._record_attempts(db, endings, now)
                return touched
            for ending, r in zip(endings, rows):
                if self._settle(db, r[5], r[4], ending, now):  # (function, failures)
                    touched.add(ending.call_id)
        return touched

    def fail_pending(self, function_id: str, status: OutputStatus, message: str) -> set[str]:
        """End every queued (not leased) input of a function with ``status`` (e.g. its module cannot load)."""
        now = self.clock()
        with self._tx() as db:
            rows = db.execute(
                "SELECT rowid, call_id, idx, leases, count FROM inputs WHERE function_id=? AND state='PENDING'",
                (function_id,),
            ).fetchall()
            data = message.encode()
            self._finish(db, [Ending(rowid, call_id, idx, status.value, _each(data, count), lease, span=count)
                              for rowid, call_id, idx, lease, count in rows], now)  # fmt: skip
        return {r[1] for r in rows}

    def cancel_call(self, call_id: str, message: str) -> list[tuple[str, int]]:
        """Cancel every unfinished input of a call; returns (container, index) of the ones being run."""
        now = self.clock()
        with self._tx() as db:
            self._explode(db, "call_id=? AND state='LEASED'", (call_id,))  # running inputs are interrupted one by one
            rows = db.execute(
                "SELECT rowid, idx, leases, container_id, state, count FROM inputs WHERE call_id=?", (call_id,)
            ).fetchall()
            data, cancelled = message.encode(), OutputStatus.CANCELLED.value
            endings = [Ending(rowid, call_id, idx, cancelled, _each(data, count), lease, cid, span=count)
                       for rowid, idx, lease, cid, _, count in rows]  # fmt: skip
            self._finish(db, endings, now)
            db.execute(
                "UPDATE calls SET cancelled=1, num_inputs=COALESCE(num_inputs, submitted) WHERE id=?", (call_id,)
            )
            self._maybe_finish(db, call_id)
        return sorted((r[3], r[1]) for r in rows if r[4] == "LEASED" and r[3])

    def call(self, call_id: str) -> CallInfo | None:
        row = self.db.execute(
            "SELECT c.id, c.function_id, f.tag, c.app_id, c.kind, c.created_at, c.num_inputs, c.submitted, c.done, "
            "c.failed, c.cancelled, c.expired, c.finished_at, c.parent_input "
            "FROM calls c JOIN functions f ON f.id = c.function_id WHERE c.id=?",
            (call_id,),
        ).fetchone()
        if row is None:
            return None
        return CallInfo(*row[:10], bool(row[10]), bool(row[11]), row[12], row[13])  # type: ignore[call-arg]

    def child_calls(self, parent_input_prefix: str) -> list[str]:
        rows = self.db.execute(  # a range, not LIKE: the calls_parent index serves it
            "SELECT id FROM calls WHERE parent_input >= ? AND parent_input < ? ORDER BY created_at",
            (parent_input_prefix, parent_input_prefix + "\U0010ffff"),
        ).fetchall()
        return [r[0] for r in rows]

    def unfinished_calls(self, app_id: str) -> list[str]:
        rows = self.db.execute("SELECT id FROM calls WHERE app_id=? AND finished_at IS NULL", (app_id,)).fetchall()
        return [r[0] for r in rows]

    def outputs(self, call_id: str, since_seq: int, limit: int) -> list[Output]:
        """Outputs after ``since_seq``, one per input (a chunk's whole, even past ``limit``), in commit order."""
        found: list[Output] = []
        for r in self.output_rows(call_id, since_seq, limit):
            if r.count == 1:
                found.append(Output(r.seq, r.index, r.status, r.data))
            else:
                found += [Output(r.seq, r.index + i, r.status, d) for i, d in enumerate(chunks.unpack(r.data))]
        return found

    def output_rows(self, call_id: str, since_seq: int, limit: int) -> list[OutputRow]:
        """Output rows after ``since_seq`` as stored (a chunk as one), up to about ``limit`` inputs."""
        rows = self.db.execute(
            "SELECT seq, idx, status, data, count FROM outputs WHERE call_id=? AND seq>? ORDER BY seq LIMIT ?",
            (call_id, since_seq, limit),
        ).fetchall()
        found: list[OutputRow] = []
        inputs = 0
        for row in rows:
            if inputs >= limit:
                break
            found.append(OutputRow(*row))
            inputs += row[4]
        return found

    def output_at(self, call_id: str, index: int) -> Output | None:
        row = self.db.execute(  # the row holding the index: its own, or the chunk it is in
            "SELECT seq, idx, status, data, count FROM outputs WHERE call_id=? AND idx<=? ORDER BY idx DESC LIMIT 1",
            (call_id, index),
        ).fetchone()
        if row is None or row[1] + row[4] <= index:
            return None
        seq, idx, status, data, count = row
        return Output(seq, index, status, data if count == 1 else chunks.item(data, index - idx))

    def expire_results(self, retention: float) -> int:
        """Delete the outputs of calls finished more than ``retention`` seconds ago."""
        cutoff = self.clock() - retention
        with self._tx() as db:
            ids = [r[0] for r in db.execute("SELECT id FROM calls WHERE finished_at<? AND expired=0", (cutoff,))]
            db.executemany("DELETE FROM outputs WHERE call_id=?", [(i,) for i in ids])
            db.executemany("DELETE FROM gen_items WHERE call_id=?", [(i,) for i in ids])
            db.executemany("DELETE FROM attempts WHERE call_id=?", [(i,) for i in ids])
            self.blob_refs.release_calls(db, ids)
            db.executemany("UPDATE calls SET expired=1 WHERE id=?", [(i,) for i in ids])
        return len(ids)

    # ---- containers -----------------------------------------------------------------------------

    def add_container(self, container_id: str, function_id: str, app_id: str) -> None:
        now = self.clock()
        with self._tx() as db:
            db.execute(
                "INSERT INTO containers (id, function_id, app_id, state, created_at, last_seen, last_active) "
                "VALUES (?, ?, ?, 'STARTING', ?, ?, ?)",
                (container_id, function_id, app_id, now, now, now),
            )

    def container_state(self, container_id: str) -> tuple[str, ContainerState] | None:
        """(function_id, state) of a container, or None."""
        row = self.db.execute("SELECT function_id, state FROM containers WHERE id=?", (container_id,)).fetchone()
        return (row[0], ContainerState(row[1])) if row else None

    def container(self, container_id: str) -> ContainerRecord | None:
        row = self.db.execute(
            "SELECT c.function_id, c.app_id, c.state, c.kill_reason, c.kill_status, c.kill_charge, f.startup_failures "
            "FROM containers c JOIN functions f ON f.id=c.function_id WHERE c.id=?",
            (container_id,),
        ).fetchone()
        if row is None:
            return None
        intent = Intent(row[3], OutputStatus(row[4]), bool(row[5])) if row[3] is not None else None
        return ContainerRecord(container_id, row[0], row[1], ContainerState(row[2]), intent, int(row[6]))

    def set_intent(self, container_id: str, intent: Intent) -> None:
        """Record why the control plane is killing a container (its exit is then explained by this)."""
        with self._tx() as db:
            db.execute(
                "UPDATE containers SET kill_reason=?, kill_status=?, kill_charge=? WHERE id=?",
                (intent.reason, intent.status.value, int(intent.charge), container_id),
            )

    def add_interrupts(self, container_id: str, inputs: Sequence[InputRef]) -> None:
        """Inputs a container must interrupt (their call was cancelled), until it takes them."""
        with self._tx() as db:
            db.executemany(
                "INSERT INTO interrupts VALUES (?, ?, ?)", [(container_id, r.call_id, r.index) for r in inputs]
            )

    def take_interrupts(self, container_id: str) -> list[InputRef]:
        with self._tx() as db:
            rows = db.execute(
                "SELECT call_id, idx FROM interrupts WHERE container_id=? ORDER BY rowid", (container_id,)
            ).fetchall()
            if rows:
                db.execute("DELETE FROM interrupts WHERE container_id=?", (container_id,))
        return [InputRef(c, i) for c, i in rows]

    def startup_error(self, function_id: str) -> tuple[int, str | None]:
        """(consecutive failed starts, the last one's error) of a function."""
        row = self.db.execute("SELECT startup_failures, startup_error FROM functions WHERE id=?", (function_id,))
        found = row.fetchone()
        return (int(found[0]), found[1]) if found else (0, None)

    def set_container_node(self, container_id: str, node: str) -> None:
        """Where the container runs (the backend says once it placed it)."""
        with self._tx() as db:
            db.execute("UPDATE containers SET node=? WHERE id=?", (node, container_id))

    def set_web_port(self, container_id: str, port: int) -> None:
        with self._tx() as db:
            db.execute("UPDATE containers SET web_port=? WHERE id=?", (port, container_id))

    def web_containers(self, function_id: str) -> list[tuple[str, int]]:
        """(container, port) of the function's running containers that serve its web app, oldest first."""
        rows = self.db.execute(
            "SELECT id, web_port FROM containers WHERE function_id=? AND state='RUNNING' AND web_port IS NOT NULL "
            "ORDER BY created_at",
            (function_id,),
        ).fetchall()
        return [(r[0], int(r[1])) for r in rows]

    def touch_active(self, container_id: str) -> None:
        """A container did work now (a web request began or ended): it is not idle."""
        now = self.clock()
        self.db.execute("UPDATE containers SET last_active=?, last_seen=MAX(last_seen, ?) WHERE id=?",
                        (now, now, container_id))  # fmt: skip

    def endpoint_port(self, label: str) -> int | None:
        row = self.db.execute("SELECT port FROM endpoints WHERE label=?", (label,)).fetchone()
        return int(row[0]) if row else None

    def bind_endpoint(self, label: str, app_id: str, function_id: str, port: int) -> None:
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO endpoints VALUES (?, ?, ?, ?)", (label, app_id, function_id, port))

    def live_endpoints(self) -> list[tuple[str, str, str]]:
        """(label, function id, app id) of the endpoints of running apps."""
        return self.db.execute(
            "SELECT e.label, e.function_id, e.app_id FROM endpoints e JOIN apps a ON a.id=e.app_id "
            "WHERE a.state='RUNNING' ORDER BY e.label"
        ).fetchall()

    def endpoints_of_app(self, app_id: str) -> dict[str, tuple[str, int]]:
        """function tag -> (label, port) of an app's endpoints."""
        rows = self.db.execute(
            "SELECT f.tag, e.label, e.port FROM endpoints e JOIN functions f ON f.id=e.function_id WHERE e.app_id=?",
            (app_id,),
        ).fetchall()
        return {tag: (label, int(port)) for tag, label, port in rows}

    def mark_started(self, container_id: str) -> None:
        now = self.clock()
        with self._tx() as db:
            started = db.execute(
                "UPDATE containers SET state='RUNNING', last_seen=?, last_active=?, started_at=? "
                "WHERE id=? AND state='STARTING' RETURNING function_id, created_at",
                (now, now, now, container_id),
            ).fetchall()
            for function_id, created_at in started:
                self._observe(db, function_id, metrics.COLD, [(now - created_at, 1)])
            db.execute(
                "UPDATE functions SET startup_failures=0 WHERE id=(SELECT function_id FROM containers WHERE id=?)",
                (container_id,),
            )

    def record_startup_failure(self, container_id: str, error: str) -> int:
        """Count a failed container start against its function; returns consecutive failures so far."""
        with self._tx() as db:
            fid = db.execute("SELECT function_id FROM containers WHERE id=?", (container_id,)).fetchone()[0]
            db.execute(
                "UPDATE functions SET startup_failures=startup_failures+1, last_startup_failure=?, startup_error=? "
                "WHERE id=?",
                (self.clock(), error, fid),
            )
            return int(db.execute("SELECT startup_failures FROM functions WHERE id=?", (fid,)).fetchone()[0])

    def touch_container(self, container_id: str) -> None:
        self.db.execute("UPDATE containers SET last_seen=? WHERE id=?", (self.clock(), container_id))

    def set_container_state(self, container_id: str, state: ContainerState, reason: str | None = None) -> None:
        """Move a container on (never out of STOPPED). A draining container keeps why it was stopped when it exits,
        with how its process ended after it: ``stopped by the user (exit code 0)``."""
        with self._tx() as db:
            row = db.execute("SELECT state, stop_reason FROM containers WHERE id=?", (container_id,)).fetchone()
            if row is None or row[0] == ContainerState.STOPPED.value:
                return
            if state == ContainerState.STOPPED and row[0] == ContainerState.DRAINING.value and row[1] and reason:
                reason = f"{row[1]} ({reason})"
            db.execute(
                "UPDATE containers SET state=?, stop_reason=COALESCE(?, stop_reason) WHERE id=?",
                (state.value, reason, container_id),
            )

    def live_containers(self) -> list[ContainerRow]:
        held = {  # one pass over the leased rows (the only ones with a container) instead of two per container
            cid: (n, oldest)
            for cid, n, oldest in self.db.execute(
                "SELECT container_id, SUM(count), MIN(leased_at) FROM inputs "
                "WHERE container_id IS NOT NULL AND state='LEASED' GROUP BY container_id"
            )
        }
        rows = self.db.execute(
            "SELECT id, function_id, state, created_at, last_seen, last_active FROM containers WHERE state!='STOPPED'"
        ).fetchall()
        return [ContainerRow(r[0], r[1], _STATES[r[2]], r[3], r[4], r[5], *held.get(r[0], (0, None)))
                for r in rows]  # fmt: skip

    def containers_of_app(self, app_id: str) -> list[str]:
        rows = self.db.execute("SELECT id FROM containers WHERE app_id=? AND state!='STOPPED'", (app_id,)).fetchall()
        return [r[0] for r in rows]

    # ---- scheduler view -------------------------------------------------------------------------

    def function_loads(self, demand: dict[str, int] | None = None) -> list[FunctionLoad]:
        """Load of every function that has queued or leased inputs, live containers, or ``demand`` (web requests
        waiting or being served, counted as ready inputs)."""
        now = self.clock()
        if time.monotonic() - self._recounted > RECOUNT_EVERY:
            self._recount()
        counts: dict[str, list[int]] = {fid: [n, 0, 0] for fid, n in (demand or {}).items()}
        for fid, n in self.queued_counts().items():
            counts.setdefault(fid, [0, 0, 0])[0] += n
        for fid, n in self.db.execute(  # leased rows only (the only ones with a container): bounded by containers
            "SELECT function_id, SUM(count) FROM inputs INDEXED BY inputs_container "
            "WHERE container_id IS NOT NULL AND state='LEASED' GROUP BY 1"
        ):
            counts.setdefault(fid, [0, 0, 0])[2] += n
        for fid, n in self.db.execute(  # inputs in their retry backoff (the partial index holds only retried ones)
            "SELECT function_id, COUNT(*) FROM inputs INDEXED BY inputs_waiting "
            "WHERE not_before>0 AND not_before>? AND state='PENDING' GROUP BY 1",
            (now,),
        ):
            c = counts.setdefault(fid, [0, 0, 0])
            c[0], c[1] = c[0] - n, c[1] + n
        for (fid,) in self.db.execute("SELECT DISTINCT function_id FROM containers WHERE state!='STOPPED'"):
            counts.setdefault(fid, [0, 0, 0])
        for (fid,) in self.db.execute(
            "SELECT f.id FROM functions f JOIN apps a ON a.id=f.app_id WHERE a.state='RUNNING' "
            "AND json_extract(f.spec, '$.min_containers') > 0"
        ):
            counts.setdefault(fid, [0, 0, 0])
        loads = []
        for fid, (ready, waiting, leased) in counts.items():
            row = self.db.execute(
                "SELECT app_id, spec, startup_failures, last_startup_failure FROM functions WHERE id=?", (fid,)
            ).fetchone()
            try:
                spec = self._spec(fid, row[1])
            except InvalidSpec as exc:  # stored by an older Shoal and not upgradable: it cannot run, others can
                if fid not in self._unusable:
                    self._unusable.add(fid)
                    log.warning("function %s cannot be scheduled: %s", fid, exc)
                continue
            loads.append(
                FunctionLoad(
                    fid, row[0], ready, waiting, leased, spec.min_containers, spec.max_containers,
                    spec.buffer_containers, spec.scaledown_window, spec.startup_timeout, spec.timeout,
                    row[2], row[3], spec.capacity,
                )
            )  # fmt: skip
        return loads

    # ---- logs -----------------------------------------------------------------------------------

    def append_logs(self, app_id: str, container_id: str, entries: Sequence[LogEntry]) -> None:
        if not entries:
            return
        with self._tx() as db:
            db.executemany(
                "INSERT INTO logs (app_id, call_id, input_idx, container_id, stream, data, ts) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(app_id, e.call_id, e.index, container_id, e.stream, e.text, e.ts) for e in entries],
            )

    def logs(self, app_id: str, since_seq: int, limit: int = 5000) -> list[tuple[int, str, str, str | None]]:
        """(seq, stream, text, container id) after ``since_seq``."""
        return self.db.execute(
            "SELECT seq, stream, data, container_id FROM logs WHERE app_id=? AND seq>? ORDER BY seq LIMIT ?",
            (app_id, since_seq, limit),
        ).fetchall()

    def stop_app(self, app_id: str, reason: str = "stopped") -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE apps SET state='STOPPED', stopped_at=?, stop_reason=? WHERE id=?",
                (self.clock(), reason, app_id),
            )


def _each(message: bytes, count: int) -> bytes:
    """The data of an output row that ends ``count`` queued inputs the same way (a cancel): a frame for a chunk."""
    return message if count == 1 else chunks.pack([message] * count)


CHUNK_INPUTS = 256  # inputs per chunk row at most
ROW_SPACING = CHUNK_INPUTS  # ids between two chunk rows: room for the pieces of a cut (SQLiteStore._cut)
# and bytes: a lease that takes the first inputs of a chunk rewrites the rest of it (a container leasing one input
# at a time out of a large chunk would write the chunk again and again)
CHUNK_BYTES = 64 * 1024


def _groups(payloads: Sequence[bytes]) -> Iterator[tuple[int, Sequence[bytes]]]:
    """Consecutive payloads grouped into chunks: (offset of the first, the group)."""
    start, size = 0, 0
    for i, p in enumerate(payloads):
        if i > start and (i - start >= CHUNK_INPUTS or size + len(p) > CHUNK_BYTES):
            yield start, payloads[start:i]
            start, size = i, 0
        size += len(p)
    if start < len(payloads):
        yield start, payloads[start:]


def _chunks(values: list[Any], size: int = 500) -> Iterator[list[Any]]:
    """Slices small enough for one statement's parameters."""
    for start in range(0, len(values), size):
        yield values[start : start + size]
