"""Durable state in SQL (SQLite by default, or PostgreSQL): apps, functions, calls, inputs, outputs, containers, logs.

The store is the source of truth. An input is committed before its id is acknowledged, moves
PENDING -> LEASED -> (deleted, with exactly one row in ``outputs``), and a report from a lease that is
no longer current is rejected, so every input ends in exactly one result whatever crashes.

The store writes rows; what becomes of an input is decided by ``server/core/inputs.py`` (:func:`settle`) from the
facts read here, in the same transaction. The queue's row mechanics (chunks) are in ``queue.py``; each other part
(``catalog``, ``kv``, ...) takes the :class:`~.database.Database`.

All methods are synchronous and meant to be called from one thread (the server's event loop); each
public method is one transaction.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import msgspec

from ...protocol import chunks
from ...protocol.messages import LogEntry, OutputRow, Release
from ...protocol.specs import FunctionSpec, InvalidSpec, decode_spec
from ...retries import RetryPolicy
from .. import metrics
from ..clock import now as clock_now
from ..core import inputs
from ..core.records import (
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
    shown_tag,
)
from ..errors import Conflict, Invalid, NotFound
from . import queue
from .blob_refs import BlobRefs
from .catalog import Catalog
from .database import Database
from .fleet import Fleet
from .insights import Insights
from .kv import KVTables
from .queue import Ending
from .samples import Samples
from .schedules import ScheduleBook
from .secrets import SecretRows
from .streams import ItemStreams
from .tokens import TokenRows

log = logging.getLogger("shoal.store")
RECOUNT_EVERY = 300.0  # seconds between checks of the queued-input counters against the table


class SQLStore:
    """The control plane's state in a SQL database (:class:`~.database.Database`: SQLite or PostgreSQL)."""

    def __init__(self, db: Database, clock: Any = clock_now) -> None:
        self.db = db
        self.clock = clock

        def now() -> float:  # the parts read the store's clock (a test may replace it)
            return float(self.clock())

        self.catalog = Catalog(db, now, self.update_spec)
        self.insights = Insights(db, self.catalog)
        self.kv = KVTables(db, now)
        self.items = ItemStreams(db)
        self.blob_refs = BlobRefs(db, now)
        self.schedules = ScheduleBook(db, now, self.call, self.create_call)
        self.secrets = SecretRows(db, now)
        self.tokens = TokenRows(db, now)
        self.samples = Samples(db)
        # the live containers' states and the scheduler's view of them, in memory: every write below says which
        # containers it touched, and what state it committed
        self.fleet = Fleet(db)
        self.db.recount()
        self._specs: dict[str, FunctionSpec] = {}
        self._unusable: set[str] = set()  # functions whose stored spec cannot be read (logged once)

    def close(self) -> None:
        self.db.close()

    def describe(self) -> str:
        """What the store is, for people: ``sqlite (PATH)``, ``postgresql (URL without its password)``."""
        return self.db.describe()

    def queued_counts(self) -> dict[str, int]:
        """PENDING inputs per function (including those in a retry backoff), as the store keeps them."""
        return {fid: n for fid, n in self.db.queued.items() if n}

    # ---- apps and functions -------------------------------------------------------------------

    def create_app(self, app_id: str, name: str, mode: str = "ephemeral") -> None:
        now = self.clock()
        with self.db.tx() as db:
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
        with self.db.tx() as db:
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
        with self.db.tx() as db:
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
        inputs: Sequence[bytes] = (), close: bool = False, key: str | None = None, expected: int | None = None,
    ) -> str:  # fmt: skip
        """Create a call, with its first inputs (and closed: a spawn) in the same transaction; returns its id.
        ``expected``: how many inputs the caller says it will submit (for progress until they are all in).

        With ``key``: the call of the app that holds that key while its results are kept is returned instead, and
        nothing is created (the unique index settles two servers or requests at once: the loser finds the winner's).
        """
        insert = ("INSERT INTO calls (id, function_id, app_id, kind, parent_input, created_at, idem_key, expected) "
                  "VALUES (?, ?, ?, ?, ?, ?, ?, ?)")  # fmt: skip
        row = (call_id, function_id, app_id, kind, parent_input, self.clock(), key, expected)
        with self.db.tx() as db:
            if key is None:
                db.execute(insert, row)
            elif db.execute(insert + " ON CONFLICT DO NOTHING RETURNING id", row).fetchone() is None:  # key taken
                held = db.execute("SELECT id FROM calls WHERE app_id=? AND idem_key=?", (app_id, key)).fetchone()
                return str(held[0])
            if inputs or close:
                self._add_inputs(db, call_id, 0, inputs, close)
        return call_id

    def call_by_key(self, app_id: str, key: str) -> str | None:
        """The call of the app that holds ``key`` (while its results are kept), or None."""
        row = self.db.execute("SELECT id FROM calls WHERE app_id=? AND idem_key=?", (app_id, key)).fetchone()
        return str(row[0]) if row else None

    def record_requests(self, rows: Sequence[tuple[str, str, str, float, float, bool]]) -> None:
        """Finished web requests as calls of one input each: (call, function, app, started, finished, failed)."""
        with self.db.tx() as db:
            db.executemany(
                "INSERT OR IGNORE INTO calls (id, function_id, app_id, kind, created_at, num_inputs, submitted, done, "
                "failed, finished_at) VALUES (?, ?, ?, 'web', ?, 1, 1, 1, ?, ?)",
                [(c, f, a, started, int(failed), finished) for c, f, a, started, finished, failed in rows],
            )

    def add_inputs(self, call_id: str, start: int, payloads: Sequence[bytes], close: bool) -> int:
        """Commit inputs ``start..start+len-1`` of a call (idempotent per index); returns how many are new."""
        with self.db.tx() as db:
            return self._add_inputs(db, call_id, start, payloads, close)

    def _add_inputs(self, db: Database, call_id: str, start: int, payloads: Sequence[bytes],
                    close: bool) -> int:  # fmt: skip
        row = db.execute(
            "SELECT function_id, num_inputs, cancelled, submitted FROM calls WHERE id=?", (call_id,)
        ).fetchone()
        if row is None:
            raise NotFound(call_id)
        function_id, num_inputs, cancelled, submitted = row
        now = self.clock()
        if num_inputs is not None:
            if start + len(payloads) <= num_inputs:
                return 0  # a client retrying a batch it already sent (its response was lost)
            raise Invalid(f"call {call_id} is closed: it takes no more inputs")
        if cancelled:
            raise Invalid(f"call {call_id} was cancelled")
        if start < submitted:  # inputs the call already has (a client resending a batch whose answer it lost)
            skip = min(submitted - start, len(payloads))
            start, payloads = start + skip, payloads[skip:]
        rows = [(call_id, start + offset, function_id, chunks.frame_or_item(group), len(group), now)
                for offset, group in queue.groups(payloads)]  # fmt: skip
        added = queue.insert(db, rows)
        BlobRefs.record(db, call_id, "in", payloads)
        db.queued_delta[function_id] += added
        db.execute("UPDATE calls SET submitted = MAX(submitted, ?) WHERE id=?", (start + len(payloads), call_id))
        if close:
            db.execute("UPDATE calls SET num_inputs = submitted WHERE id=?", (call_id,))
            queue.maybe_finish(db, call_id, now)
        return added

    def lease_inputs(self, function_id: str, container_id: str, max_inputs: int) -> list[LeasedInput]:
        """Lease up to ``max_inputs`` ready inputs, oldest first; an isolated input is always leased alone."""
        if not self.db.has_pending(function_id):  # e.g. a container woken by an input its sibling took first
            return []
        with self.db.tx() as db:
            self.fleet.touched([container_id])
            return self._lease(db, function_id, container_id, max_inputs, self.clock())

    def report_and_lease(
        self, container_id: str, function_id: str, reports: Sequence[ReportedOutput], max_inputs: int
    ) -> tuple[int, set[str], list[LeasedInput]]:
        """:meth:`complete` then :meth:`lease_inputs` in one transaction (one commit per container exchange)."""
        now = self.clock()
        with self.db.tx() as db:
            self.fleet.touched([container_id])
            accepted, touched = self._complete(db, container_id, reports, now) if reports else (0, set())
            wanted = max_inputs > 0 and db.has_pending(function_id)
            leased = self._lease(db, function_id, container_id, max_inputs, now, seen=bool(reports)) if wanted else []
            if not reports and not leased:  # nothing above marked it seen
                db.execute("UPDATE containers SET last_seen=? WHERE id=?", (now, container_id))
        return accepted, touched, leased

    def _lease(
        self, db: Database, function_id: str, container_id: str, max_inputs: int, now: float, seen: bool = False
    ) -> list[LeasedInput]:
        """``seen``: this transaction marked the container active now already (its reports)."""
        leased, queued_at = queue.take(db, function_id, container_id, max_inputs, now)
        if not leased:
            return leased
        if not seen:
            db.execute("UPDATE containers SET last_active=?, last_seen=? WHERE id=?", (now, now, container_id))
        self._observe(db, function_id, metrics.WAIT, [(now - at, x.count) for at, x in zip(queued_at, leased) if at])
        return leased

    def _observe(self, db: Database, function_id: str, metric: str, durations: Sequence[tuple[float, int]]) -> None:
        """Add (duration, inputs) to a function's histogram (one upsert per bucket touched)."""
        db.executemany(
            "INSERT INTO function_metrics VALUES (?, ?, ?, ?) "
            "ON CONFLICT (function_id, metric, bucket) DO UPDATE SET n = function_metrics.n + excluded.n",
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

        A report whose lease is no longer current (a zombie container, a cancelled call) is ignored; the rest are
        settled by :func:`core.inputs.settle`. The whole batch is one transaction: outputs are inserted together and
        each call's counters updated once.
        """
        with self.db.tx() as db:
            self.fleet.touched([container_id])
            return self._complete(db, container_id, reports, self.clock())

    def _complete(
        self, db: Database, container_id: str, reports: Sequence[ReportedOutput], now: float
    ) -> tuple[int, set[str]]:
        accepted = 0
        finished: list[Ending] = []
        ran: dict[str, list[tuple[float, int]]] = {}  # function -> (duration, inputs) of the accepted reports
        failed: list[tuple[str, Ending, inputs.Verdict]] = []  # (function, row, verdict) of the other reports
        reports, held = queue.matched(db, container_id, reports)
        for r in reports:
            row = held.pop((r.call_id, r.index, r.lease), None)
            if row is None or row[3] != r.count:  # not (or no longer) this container's lease
                continue
            accepted += r.count
            if r.duration > 0:
                ran.setdefault(row[2], []).append((r.duration / r.count, r.count))
            ending = Ending(row[0], r.call_id, r.index, r.status.value, r.data, r.lease, container_id,
                            r.duration or None, None, r.count)  # fmt: skip
            if r.status == OutputStatus.SUCCESS:  # the usual case, without a verdict to make: a success ends it
                finished.append(ending)
                continue
            event = inputs.Reported(r.status, r.data, r.error)
            [verdict] = inputs.settle(event, [inputs.Held(row[1])], self._policy(row[2]), now)
            failed.append((row[2], ending, verdict))
        finished += self._apply(db, failed, now)
        queue.finish(db, finished, now, leased=True)  # every report ended a leased input of this container
        db.execute(
            "UPDATE containers SET last_active=?, last_seen=?, served=served+? WHERE id=?",
            (now, now, accepted, container_id),
        )
        for function_id, durations in ran.items():
            self._observe(db, function_id, metrics.EXEC, durations)
        return accepted, {f.call_id for f in finished}

    def _apply(self, db: Database, verdicts: Sequence[tuple[str, Ending, inputs.Verdict]], now: float) -> list[Ending]:
        """Write verdicts about input rows, (function, the row with its lease and the event's facts, verdict) each:
        the retried and requeued rows in one statement each, their attempts in one; returns the endings of the rows
        that finish (the caller writes them with its own in one batch)."""
        finished: list[Ending] = []
        retried: list[tuple[float, float, int]] = []
        requeued: list[tuple[int, float, int]] = []
        attempts: list[Ending] = []
        for function_id, row, verdict in verdicts:
            if isinstance(verdict, inputs.Finish):
                whole = row.span == 1 or verdict.status == OutputStatus.SUCCESS  # else one message for a chunk's
                data = verdict.data if whole else queue.each(verdict.data, row.span)
                finished.append(row._replace(status=verdict.status.value, data=data, error=verdict.error))
                continue
            db.queued_delta[function_id] += row.span
            if isinstance(verdict, inputs.Retry):
                retried.append((verdict.not_before, verdict.not_before, row.rowid))
                attempts.append(row._replace(status=verdict.status.value, error=verdict.attempt))
            else:
                requeued.append((int(verdict.isolate), now, row.rowid))
                if verdict.attempt is not None and verdict.status is not None:
                    attempts.append(row._replace(status=verdict.status.value, error=verdict.attempt))
        db.executemany(
            "UPDATE inputs SET state='PENDING', container_id=NULL, failures=failures+1, not_before=?, queued_at=? "
            "WHERE rowid=?",
            retried,
        )
        db.executemany(
            "UPDATE inputs SET state='PENDING', container_id=NULL, isolate=?, queued_at=? WHERE rowid=?", requeued
        )
        queue.record_attempts(db, attempts, now)
        return finished

    def release(self, container_id: str, leases: Sequence[Release]) -> None:
        """Give back inputs a container leased but never started, without charging an attempt."""
        now = self.clock()
        with self.db.tx() as db:
            self.fleet.touched([container_id])
            as_reports = [ReportedOutput(r.call_id, r.index, r.lease, OutputStatus.SUCCESS, b"", count=r.count)
                          for r in leases]  # fmt: skip
            items, held = queue.matched(db, container_id, as_reports)
            for r in items:
                if (row := held.pop((r.call_id, r.index, r.lease), None)) is None or row[3] != r.count:
                    continue  # no longer this container's
                [verdict] = inputs.settle(inputs.Released(), [inputs.Held(row[1], bool(row[4]))], RetryPolicy(), now)
                assert isinstance(verdict, inputs.Requeue)
                db.execute(  # back in its place in the queue (its wait goes on: queued_at is kept)
                    "UPDATE inputs SET state='PENDING', container_id=NULL, isolate=? WHERE rowid=?",
                    (int(verdict.isolate), row[0]),
                )
                db.queued_delta[row[2]] += row[3]

    def fail_container_inputs(
        self,
        container_id: str,
        message: str,
        status: OutputStatus = OutputStatus.CRASHED,
        charge: bool = True,
        lost: bool = False,
    ) -> set[str]:
        """A container died: its leased inputs are settled by :func:`core.inputs.settle` (who is to blame is decided
        there). Returns the calls that got outputs."""
        now = self.clock()
        with self.db.tx() as db:
            self.fleet.touched([container_id])
            queue.explode(db, "container_id=? AND state='LEASED'", (container_id,))
            rows = db.execute(
                "SELECT rowid, call_id, idx, leases, failures, function_id, isolate FROM inputs "
                "WHERE container_id=? AND state='LEASED'",
                (container_id,),
            ).fetchall()
            event = inputs.ContainerFailed(status, message, charge, lost)
            facts = [inputs.Held(r[4], bool(r[6])) for r in rows]
            verdicts = inputs.settle(event, facts, self._policy(rows[0][5]) if rows else RetryPolicy(), now)
            data = message.encode()
            settled = [(r[5], Ending(r[0], r[1], r[2], status.value, data, r[3], container_id), v)
                       for r, v in zip(rows, verdicts)]  # fmt: skip
            return queue.finish(db, self._apply(db, settled, now), now)

    def fail_pending(self, function_id: str, status: OutputStatus, message: str) -> set[str]:
        """End every queued (not leased) input of a function with ``status`` (e.g. its module cannot load)."""
        now = self.clock()
        with self.db.tx() as db:
            rows = db.execute(
                "SELECT rowid, call_id, idx, leases, count FROM inputs WHERE function_id=? AND state='PENDING'",
                (function_id,),
            ).fetchall()
            verdicts = inputs.settle(
                inputs.QueueFailed(status, message), [inputs.Held()] * len(rows), RetryPolicy(), now
            )
            endings = [Ending(rowid, call_id, idx, status.value, b"", lease, span=count)
                       for rowid, call_id, idx, lease, count in rows]  # fmt: skip
            return queue.finish(db, self._apply(db, [(function_id, e, v) for e, v in zip(endings, verdicts)], now), now)

    def cancel_call(self, call_id: str, message: str) -> list[tuple[str, int]]:
        """Cancel every unfinished input of a call; returns (container, index) of the ones being run."""
        now = self.clock()
        with self.db.tx() as db:
            queue.explode(db, "call_id=? AND state='LEASED'", (call_id,))  # running inputs are interrupted one by one
            rows = db.execute(
                "SELECT rowid, idx, leases, container_id, state, count, function_id FROM inputs WHERE call_id=?",
                (call_id,),
            ).fetchall()
            self.fleet.touched(r[3] for r in rows)
            verdicts = inputs.settle(inputs.Cancelled(message), [inputs.Held()] * len(rows), RetryPolicy(), now)
            endings = [Ending(rowid, call_id, idx, "", b"", lease, cid, span=count)
                       for rowid, idx, lease, cid, _, count, _ in rows]  # fmt: skip
            queue.finish(db, self._apply(db, [(r[6], e, v) for r, e, v in zip(rows, endings, verdicts)], now), now)
            db.execute(
                "UPDATE calls SET cancelled=1, num_inputs=COALESCE(num_inputs, submitted) WHERE id=?", (call_id,)
            )
            queue.maybe_finish(db, call_id, now)
        return sorted((r[3], r[1]) for r in rows if r[4] == "LEASED" and r[3])

    def call(self, call_id: str) -> CallInfo | None:
        row = self.db.execute(
            "SELECT c.id, c.function_id, f.tag, c.app_id, c.kind, c.created_at, c.num_inputs, c.submitted, c.done, "
            "c.failed, c.cancelled, c.expired, c.finished_at, c.parent_input, c.expected "
            "FROM calls c JOIN functions f ON f.id = c.function_id WHERE c.id=?",
            (call_id,),
        ).fetchone()
        if row is None:
            return None
        return CallInfo(row[0], row[1], shown_tag(row[2]), *row[3:10], bool(row[10]), bool(row[11]), row[12],  # type: ignore[call-arg]
                        row[13], row[14])  # fmt: skip

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
        with self.db.tx() as db:
            ids = [r[0] for r in db.execute("SELECT id FROM calls WHERE finished_at<? AND expired=0", (cutoff,))]
            db.executemany("DELETE FROM outputs WHERE call_id=?", [(i,) for i in ids])
            db.executemany("DELETE FROM gen_items WHERE call_id=?", [(i,) for i in ids])
            db.executemany("DELETE FROM attempts WHERE call_id=?", [(i,) for i in ids])
            db.executemany("DELETE FROM kept_inputs WHERE call_id=?", [(i,) for i in ids])
            self.blob_refs.release_calls(db, ids)
            # its key is free again: a spawn with it starts a new call
            db.executemany("UPDATE calls SET expired=1, idem_key=NULL WHERE id=?", [(i,) for i in ids])
        return len(ids)

    def retry_call(self, call_id: str, function_id: str, statuses: Sequence[str]) -> tuple[int, int]:
        """Queue again, on ``function_id``, the inputs of a finished call that ended with one of ``statuses``
        (:func:`.queue.retry`): returns (queued again, without a kept payload).

        Raises:
            NotFound: no such call.
            Conflict: the call has not finished, or its results expired.
        """
        with self.db.tx() as db:
            row = db.execute("SELECT finished_at, expired, cancelled FROM calls WHERE id=?", (call_id,)).fetchone()
            if row is None:
                raise NotFound(call_id)
            if row[1]:
                raise Conflict(f"call {call_id}'s results expired: there is nothing left to retry")
            if row[0] is None and not row[2]:
                raise Conflict(f"call {call_id} has not finished: retry its failed inputs once it has")
            return queue.retry(db, call_id, function_id, statuses, self.clock())

    # ---- containers -----------------------------------------------------------------------------

    def add_container(self, container_id: str, function_id: str, app_id: str) -> None:
        self.add_containers([container_id], function_id, app_id)

    def add_containers(self, container_ids: Sequence[str], function_id: str, app_id: str) -> None:
        """New STARTING containers of one function, in one transaction (a launch of many at once)."""
        now = self.clock()
        with self.db.tx() as db:
            db.executemany(
                "INSERT INTO containers (id, function_id, app_id, state, created_at, last_seen, last_active) "
                "VALUES (?, ?, ?, 'STARTING', ?, ?, ?)",
                [(container_id, function_id, app_id, now, now, now) for container_id in container_ids],
            )
        self.fleet.committed(container_ids, function_id, ContainerState.STARTING)

    def container_state(self, container_id: str) -> tuple[str, ContainerState] | None:
        """(function_id, state) of a container, or None."""
        known = self.fleet.state(container_id)
        if known is not None:
            return known
        row = self.db.execute("SELECT function_id, state FROM containers WHERE id=?", (container_id,)).fetchone()
        if row is None:
            return None
        found = row[0], ContainerState(row[1])
        self.fleet.remember(container_id, *found)
        return found

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
        with self.db.tx() as db:
            db.execute(
                "UPDATE containers SET kill_reason=?, kill_status=?, kill_charge=? WHERE id=?",
                (intent.reason, intent.status.value, int(intent.charge), container_id),
            )

    def startup_error(self, function_id: str) -> tuple[int, str | None]:
        """(consecutive failed starts, the last one's error) of a function."""
        row = self.db.execute("SELECT startup_failures, startup_error FROM functions WHERE id=?", (function_id,))
        found = row.fetchone()
        return (int(found[0]), found[1]) if found else (0, None)

    def set_container_node(self, container_id: str, node: str) -> None:
        """Where the container runs (the backend says once it placed it)."""
        with self.db.tx() as db:
            db.execute("UPDATE containers SET node=? WHERE id=?", (node, container_id))

    def set_web_address(self, container_id: str, host: str, port: int) -> None:
        with self.db.tx() as db:
            db.execute("UPDATE containers SET web_host=?, web_port=? WHERE id=?", (host, port, container_id))

    def web_containers(self, function_id: str) -> list[tuple[str, tuple[str, int]]]:
        """(container, (host, port)) of the function's running containers that serve its web app, oldest first."""
        rows = self.db.execute(
            "SELECT id, web_host, web_port FROM containers WHERE function_id=? AND state='RUNNING' "
            "AND web_port IS NOT NULL ORDER BY created_at",
            (function_id,),
        ).fetchall()
        return [(r[0], (r[1] or "127.0.0.1", int(r[2]))) for r in rows]

    def touch_active(self, container_id: str) -> None:
        """A container did work now (a web request began or ended): it is not idle."""
        now = self.clock()
        self.fleet.touched([container_id])
        self.db.execute("UPDATE containers SET last_active=?, last_seen=MAX(last_seen, ?) WHERE id=?",
                        (now, now, container_id))  # fmt: skip

    def endpoint_port(self, label: str) -> int | None:
        row = self.db.execute("SELECT port FROM endpoints WHERE label=?", (label,)).fetchone()
        return int(row[0]) if row else None

    def bind_endpoint(self, label: str, app_id: str, function_id: str, port: int) -> None:
        with self.db.tx() as db:
            db.execute(
                "INSERT INTO endpoints VALUES (?, ?, ?, ?) ON CONFLICT (label) DO UPDATE SET app_id=excluded.app_id, "
                "function_id=excluded.function_id, port=excluded.port",
                (label, app_id, function_id, port),
            )

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
        with self.db.tx() as db:
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
        for function_id, _ in started:
            self.fleet.committed([container_id], function_id, ContainerState.RUNNING)

    def record_startup_failure(self, container_id: str, error: str) -> int:
        """Count a failed container start against its function; returns consecutive failures so far."""
        with self.db.tx() as db:
            fid = db.execute("SELECT function_id FROM containers WHERE id=?", (container_id,)).fetchone()[0]
            db.execute(
                "UPDATE functions SET startup_failures=startup_failures+1, last_startup_failure=?, startup_error=? "
                "WHERE id=?",
                (self.clock(), error, fid),
            )
            return int(db.execute("SELECT startup_failures FROM functions WHERE id=?", (fid,)).fetchone()[0])

    def touch_container(self, container_id: str) -> None:
        self.fleet.touched([container_id])
        self.db.execute("UPDATE containers SET last_seen=? WHERE id=?", (self.clock(), container_id))

    def set_container_state(self, container_id: str, state: ContainerState, reason: str | None = None) -> None:
        """Move a container on (never out of STOPPED). A draining container keeps why it was stopped when it exits,
        with how its process ended after it: ``stopped by the user (exit code 0)``."""
        with self.db.tx() as db:
            row = db.execute(
                "SELECT state, stop_reason, function_id FROM containers WHERE id=?", (container_id,)
            ).fetchone()
            if row is None or row[0] == ContainerState.STOPPED.value:
                self.fleet.committed([container_id], "", ContainerState.STOPPED)
                return
            if state == ContainerState.STOPPED and row[0] == ContainerState.DRAINING.value and row[1] and reason:
                reason = f"{row[1]} ({reason})"
            db.execute(
                "UPDATE containers SET state=?, stop_reason=COALESCE(?, stop_reason) WHERE id=?",
                (state.value, reason, container_id),
            )
        self.fleet.committed([container_id], row[2], state)

    def live_containers(self) -> list[ContainerRow]:
        """Every live container with the inputs it holds, from :class:`~.fleet.Fleet` (read again where written)."""
        return self.fleet.view()

    def containers_of_app(self, app_id: str) -> list[str]:
        rows = self.db.execute("SELECT id FROM containers WHERE app_id=? AND state!='STOPPED'", (app_id,)).fetchall()
        return [r[0] for r in rows]

    # ---- scheduler view -------------------------------------------------------------------------

    def function_loads(self, demand: dict[str, int] | None = None) -> list[FunctionLoad]:
        """Load of every function that has queued or leased inputs, live containers, or ``demand`` (web requests
        waiting or being served, counted as ready inputs)."""
        now = self.clock()
        if time.monotonic() - self.db.recounted > RECOUNT_EVERY:
            self.db.recount()
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
            f"AND {self.db.json_number('f.spec', 'min_containers')} > 0"
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
                    row[2], row[3], spec.capacity, "gpu" if spec.resources.gpu else "cpu",
                )
            )  # fmt: skip
        return loads

    # ---- logs -----------------------------------------------------------------------------------

    def append_logs(self, app_id: str, container_id: str, entries: Sequence[LogEntry]) -> None:
        self.append_container_logs(app_id, [(container_id, e) for e in entries])

    def append_container_logs(self, app_id: str, rows: Sequence[tuple[str, LogEntry]]) -> None:
        """Log lines of an app's containers, each with its container, in one transaction."""
        if not rows:
            return
        with self.db.tx() as db:
            db.executemany(
                "INSERT INTO logs (app_id, call_id, input_idx, container_id, stream, data, ts) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(app_id, e.call_id, e.index, cid, e.stream, e.text, e.ts) for cid, e in rows],
            )

    def logs(self, app_id: str, since_seq: int, limit: int = 5000) -> list[tuple[int, str, str, str | None]]:
        """(seq, stream, text, container id) after ``since_seq``."""
        return self.db.execute(
            "SELECT seq, stream, data, container_id FROM logs WHERE app_id=? AND seq>? ORDER BY seq LIMIT ?",
            (app_id, since_seq, limit),
        ).fetchall()

    def stop_app(self, app_id: str, reason: str = "stopped") -> None:
        with self.db.tx() as db:
            db.execute(
                "UPDATE apps SET state='STOPPED', stopped_at=?, stop_reason=? WHERE id=?",
                (self.clock(), reason, app_id),
            )
