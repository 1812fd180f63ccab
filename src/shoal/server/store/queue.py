"""The input queue's rows: inserting inputs in chunks, leasing them, cutting and exploding chunks, finishing them.

Inputs are kept in chunk rows (up to ``CHUNK_INPUTS`` inputs, ``CHUNK_BYTES`` of payload, a row): a map of
100,000 inputs is 400 rows to insert and lease. Each row's id is a multiple of ``ROW_SPACING`` above every row's
then: the queue's order, with room after each chunk for the pieces it may be cut into (:func:`cut`), which then
keep its place. What happens to inputs one by one (a failure, a crash, a cancel) first makes their chunk rows of
one input each (:func:`explode`).

These are rows only: what becomes of an input is decided in ``server/core/inputs.py``; every function here runs
inside the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

import msgspec

from ...protocol import chunks
from ...protocol.messages import FailureInfo
from ..core.records import LeasedInput, OutputStatus, ReportedOutput
from .blob_refs import BLOB_PAYLOAD_LEN, BlobRefs
from .database import Database

CHUNK_INPUTS = 256  # inputs per chunk row at most
ROW_SPACING = CHUNK_INPUTS  # ids between two chunk rows: room for the pieces of a cut
# and bytes: a lease that takes the first inputs of a chunk rewrites the rest of it (a container leasing one input
# at a time out of a large chunk would write the chunk again and again)
CHUNK_BYTES = 64 * 1024
PAYLOAD_STATUSES = {OutputStatus.SUCCESS.value, OutputStatus.FAILURE.value}  # outputs whose data is a payload
NO_ROW = (0, 0, "", 0, 0)  # what a report that matches no leased row finds in :func:`held`

# (call, idx, lease) -> (rowid, failures, function, count, isolate)
Held = dict[tuple[str, int, int], tuple[int, int, str, int, int]]


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
    error: FailureInfo | None = None  # as core.inputs.describe made it (None: a success)
    span: int = 1  # a chunk's: idx .. idx+span-1, data a frame of their outputs


def groups(payloads: Sequence[bytes]) -> Iterator[tuple[int, Sequence[bytes]]]:
    """Consecutive payloads grouped into chunks: (offset of the first, the group)."""
    start, size = 0, 0
    for i, p in enumerate(payloads):
        if i > start and (i - start >= CHUNK_INPUTS or size + len(p) > CHUNK_BYTES):
            yield start, payloads[start:i]
            start, size = i, 0
        size += len(p)
    if start < len(payloads):
        yield start, payloads[start:]


def slices(values: Sequence[Any], size: int = 500) -> Iterator[Sequence[Any]]:
    """Slices small enough for one statement's parameters."""
    for start in range(0, len(values), size):
        yield values[start : start + size]


def marks(n: int) -> str:
    """``?, ?, ...``: ``n`` parameters."""
    return ",".join("?" * n)


def each(message: bytes, count: int) -> bytes:
    """The data of an output row that ends ``count`` queued inputs the same way (a cancel): a frame for a chunk."""
    return message if count == 1 else chunks.pack([message] * count)


def insert(db: Database, rows: Sequence[tuple[str, int, str, bytes, int, float]]) -> int:
    """Insert PENDING rows (call, idx, function, payload, count, queued_at); returns the inputs that are new."""
    db.serialize("shoal.inputs")  # row ids come from the highest: one inserting transaction at a time
    top = db.execute("SELECT MAX(rowid) FROM inputs").fetchone()[0] or 0
    first = (top // ROW_SPACING + 1) * ROW_SPACING
    spaced = [(first + j * ROW_SPACING, *r) for j, r in enumerate(rows)]
    sql = (
        "INSERT OR IGNORE INTO inputs (rowid, call_id, idx, function_id, state, payload, count, queued_at) "
        "VALUES (?, ?, ?, ?, 'PENDING', ?, ?, ?)"
    )
    return sum(r[5] for r in db.insert_new(sql, spaced, (1, 2)))


def next_rowid(db: Database) -> int:
    """A row id after every row's (for a row that cannot keep its chunk's place)."""
    return int(db.execute("SELECT MAX(rowid) FROM inputs").fetchone()[0] or 0) + 1


def room_after(db: Database, rowid: int, n: int) -> bool:
    """Whether row ids ``rowid+1 .. rowid+n-1`` are free (a chunk's pieces can take them, in its place)."""
    if n > ROW_SPACING:
        return False
    return db.execute("SELECT 1 FROM inputs WHERE rowid>? AND rowid<? LIMIT 1", (rowid, rowid + n)).fetchone() is None


def take(
    db: Database, function_id: str, container_id: str, max_inputs: int, now: float
) -> tuple[list[LeasedInput], list[float]]:
    """Lease up to ``max_inputs`` ready inputs, oldest first (an isolated input always alone); returns them and when
    each was queued."""
    rows = db.execute(
        "SELECT rowid, call_id, idx, payload, leases, isolate, queued_at, count FROM inputs "
        "WHERE function_id=? AND state='PENDING' AND not_before<=? ORDER BY rowid LIMIT ?" + db.skip_locked,
        (function_id, now, max_inputs),
    ).fetchall()
    if not rows:
        return [], []
    rows = rows[:1] if rows[0][5] else [r for r in rows if not r[5]]
    taken, items, split = [], 0, None
    for r in rows:  # whole rows up to max_inputs inputs; a chunk that would pass it is cut there
        if items + r[7] > max_inputs:
            split = r if items < max_inputs else None
            break
        taken.append(r)
        items += r[7]
    leased = [LeasedInput(r[1], r[2], r[4] + 1, r[3], r[7]) for r in taken]
    for part in slices([r[0] for r in taken]):
        db.execute(
            "UPDATE inputs SET state='LEASED', container_id=?, leases=leases+1, leased_at=? "
            f"WHERE rowid IN ({marks(len(part))})",
            (container_id, now, *part),
        )
    if split is not None:
        leased.append(cut(db, function_id, split, max_inputs - items, container_id, now))
        taken.append(split)
    db.queued_delta[function_id] -= sum(x.count for x in leased)
    return leased, [r[6] for r in taken]


def cut(db: Database, function_id: str, row: Any, k: int, container_id: str, now: float) -> LeasedInput:
    """Lease the first ``k`` inputs of a queued chunk.

    The chunk is cut into pieces of ``k`` inputs, in its place in the queue (row ids after its own), and the first is
    leased: a container that keeps asking for ``k`` (one at a time, for slow inputs) then takes a piece whole, one
    small write per lease as for a row of one input, instead of rewriting the rest of the chunk each time. Where its
    row ids are taken, the first ``k`` become a row of their own and the rest stays."""
    rowid, call_id, idx, payload, leases, _, queued_at, count = row
    if not room_after(db, rowid, -(-count // k)):
        return _lease_head(db, row, k, container_id, now)
    items = chunks.unpack(payload)
    db.execute("DELETE FROM inputs WHERE rowid=?", (rowid,))
    parts = [(chunks.frame_or_item(items[start : start + k]), min(k, count - start)) for start in range(0, count, k)]
    db.executemany(
        "INSERT INTO inputs (rowid, call_id, idx, function_id, state, payload, count, leases, container_id, "
        "leased_at, queued_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [(rowid + p, call_id, idx + p * k, function_id, "PENDING", part, n, leases, None, None, queued_at) if p else
         (rowid, call_id, idx, function_id, "LEASED", part, n, leases + 1, container_id, now, queued_at)
         for p, (part, n) in enumerate(parts)],
    )  # fmt: skip
    return LeasedInput(call_id, idx, leases + 1, *parts[0])


def _lease_head(db: Database, row: Any, k: int, container_id: str, now: float) -> LeasedInput:
    """Lease the first ``k`` inputs of a queued chunk: they become a row of their own, the rest stays queued in the
    chunk's place."""
    rowid, call_id, idx, payload, leases, _, queued_at, count = row
    head, tail = chunks.split(payload, k)
    db.execute("UPDATE inputs SET idx=?, count=?, payload=? WHERE rowid=?", (idx + k, count - k, tail, rowid))
    db.execute(
        "INSERT INTO inputs (rowid, call_id, idx, function_id, state, payload, count, leases, container_id, leased_at, "
        "queued_at) SELECT ?, call_id, ?, function_id, 'LEASED', ?, ?, ?, ?, ?, queued_at FROM inputs WHERE rowid=?",
        (next_rowid(db), idx, head, k, leases + 1, container_id, now, rowid),
    )
    return LeasedInput(call_id, idx, leases + 1, head, k)


def explode(db: Database, where: str, params: Sequence[Any]) -> None:
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
        # the singles keep the chunk's place in the queue if they can
        first = rowid if room_after(db, rowid, count) else max(next_rowid(db) - 1, rowid)
        singles = [(rowid if i == 0 else first + i, call_id, idx + i, function_id, state, item, *kept)
                   for i, item in enumerate(chunks.unpack(payload))]  # fmt: skip
        db.executemany(
            "INSERT INTO inputs (rowid, call_id, idx, function_id, state, payload, leases, failures, isolate, "
            "container_id, leased_at, not_before, queued_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            singles,
        )


def held(db: Database, container_id: str) -> Held:
    """A container's leased rows: (call, idx, lease) -> (rowid, failures, function, count, isolate)."""
    return {
        (call_id, idx, leases): (rowid, failures, function_id, count, isolate)
        for rowid, call_id, idx, leases, failures, function_id, count, isolate in db.execute(
            "SELECT rowid, call_id, idx, leases, failures, function_id, count, isolate FROM inputs "
            "WHERE container_id=? AND state='LEASED'",
            (container_id,),
        )
    }


def matched(
    db: Database, container_id: str, reports: Sequence[ReportedOutput]
) -> tuple[Sequence[ReportedOutput], Held]:
    """A container's reports (or releases, as reports) and its leased rows, made to match one to one: the usual case
    as they are; else through :func:`_per_input`, then the rows again."""
    rows = held(db, container_id)
    if all(rows.get((r.call_id, r.index, r.lease), NO_ROW)[3] == r.count for r in reports):
        return reports, rows
    return _per_input(db, reports, rows), held(db, container_id)


def _per_input(db: Database, reports: Sequence[ReportedOutput], rows: Held) -> list[ReportedOutput]:
    """Reports that do not match a leased row one to one, made to: the chunks they report inputs of become rows of
    one input each, and a report of a whole chunk that is no longer one becomes a report per input (a release, which
    has no data, becomes a release per input)."""
    spans: dict[tuple[str, int], list[tuple[int, int, int]]] = {}
    for (call_id, idx, lease), (rowid, _, _, count, _) in rows.items():
        if count > 1:
            spans.setdefault((call_id, lease), []).append((idx, count, rowid))
    split: set[int] = set()
    out: list[ReportedOutput] = []
    for r in reports:
        row = rows.get((r.call_id, r.index, r.lease))
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
        explode(db, f"rowid IN ({marks(len(rowids))})", rowids)
    return out


def finish(db: Database, rows: Sequence[Ending], now: float, leased: bool = False) -> set[str]:
    """End inputs: they become outputs (the first result of an input wins), counted on their calls, and leave the
    queue. One statement per step, whatever the batch size. Returns the calls that got outputs. ``leased``: the
    caller knows every row is leased (reports), so none leaves the queued count and nothing need be read back."""
    sql = (
        "INSERT OR IGNORE INTO outputs (call_id, idx, status, data, lease, created_at, container_id, duration, "
        "error_type, error_message, traceback, count) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    )
    values = []
    for r in rows:
        e = r.error
        values.append((r.call_id, r.idx, r.status, r.data, r.lease, now, r.container_id, r.duration,
                       e and e.type, e and e.message, e and e.traceback, r.span))  # fmt: skip
    counts: dict[str, list[int]] = {}
    for call_id, _, status, data, *_, count in db.insert_new(sql, values, (0, 1)):
        if len(data) == BLOB_PAYLOAD_LEN and count == 1 and status in PAYLOAD_STATUSES:  # it may name a blob
            BlobRefs.record(db, call_id, "out", (data,))
        c = counts.setdefault(call_id, [0, 0])
        c[0] += count
        c[1] += count if status != OutputStatus.SUCCESS.value else 0
    for call_id, (done, failed) in counts.items():  # counted, and finished when that was its last input
        db.execute(
            "UPDATE calls SET done=done+?, failed=failed+?, finished_at=CASE WHEN num_inputs IS NOT NULL AND "
            "done+?>=num_inputs AND finished_at IS NULL THEN ? ELSE finished_at END WHERE id=?",
            (done, failed, done, now, call_id),
        )
    keep([r.rowid for r in rows if r.status != OutputStatus.SUCCESS.value], db)
    for part in slices([r.rowid for r in rows]):
        if leased:
            db.execute(f"DELETE FROM inputs WHERE rowid IN ({marks(len(part))})", part)
            continue
        deleted = db.execute(
            f"DELETE FROM inputs WHERE rowid IN ({marks(len(part))}) RETURNING function_id, state, count", part
        ).fetchall()
        for function_id, state, count in deleted:  # the queued count follows every row that leaves the queue
            if state == "PENDING":
                db.queued_delta[function_id] -= count
    return {r.call_id for r in rows}


def keep(rowids: Sequence[int], db: Database) -> None:
    """Keep the payloads of inputs that end without success (``FunctionCall.retry_failed`` queues them again), and
    the blobs they name."""
    for part in slices(rowids):
        kept = db.execute(
            "INSERT OR IGNORE INTO kept_inputs (call_id, idx, count, payload) SELECT call_id, idx, count, payload "
            f"FROM inputs WHERE rowid IN ({marks(len(part))}) RETURNING call_id, count, payload",
            part,
        ).fetchall()
        for call_id, count, payload in kept:
            BlobRefs.record(db, call_id, "keep", chunks.unpack(payload) if count > 1 else [payload])


def retry(db: Database, call_id: str, function_id: str, statuses: Sequence[str], now: float) -> tuple[int, int]:
    """Queue again the inputs of a call that ended with one of ``statuses``, under the same call and indexes, from
    their kept payloads: their outputs become earlier attempts, their counts come off the call, which runs again.
    Returns (inputs queued again, inputs that ended so but have no kept payload)."""
    ended = db.execute(
        "SELECT idx, count, status, lease, container_id, duration, error_type, error_message, created_at FROM outputs "
        f"WHERE call_id=? AND status IN ({marks(len(statuses))})",
        (call_id, *statuses),
    ).fetchall()
    kept = {idx: (count, payload) for idx, count, payload in db.execute(
        "SELECT idx, count, payload FROM kept_inputs WHERE call_id=?", (call_id,))}  # fmt: skip
    again = [e for e in ended if e[0] in kept and kept[e[0]][0] == e[1]]
    missing = sum(e[1] for e in ended) - sum(e[1] for e in again)
    if not again:
        return 0, missing
    db.executemany(
        "INSERT INTO attempts VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [(call_id, idx + i, lease, container, status, duration, etype, emessage, ended_at)
         for idx, count, status, lease, container, duration, etype, emessage, ended_at in again
         for i in range(count)],
    )  # fmt: skip
    for part in slices([e[0] for e in again]):
        db.execute(f"DELETE FROM outputs WHERE call_id=? AND idx IN ({marks(len(part))})", (call_id, *part))
        db.execute(f"DELETE FROM kept_inputs WHERE call_id=? AND idx IN ({marks(len(part))})", (call_id, *part))
    insert(db, [(call_id, e[0], function_id, kept[e[0]][1], e[1], now) for e in again])
    db.executemany("UPDATE inputs SET leases=? WHERE call_id=? AND idx=?", [(e[3], call_id, e[0]) for e in again])
    n = sum(e[1] for e in again)
    db.queued_delta[function_id] += n
    db.execute("UPDATE calls SET done=done-?, failed=failed-?, finished_at=NULL, cancelled=0 WHERE id=?",
               (n, n, call_id))  # fmt: skip
    return n, missing


def maybe_finish(db: Database, call_id: str, now: float) -> None:
    db.execute(
        "UPDATE calls SET finished_at=? WHERE id=? AND num_inputs IS NOT NULL AND done>=num_inputs "
        "AND finished_at IS NULL",
        (now, call_id),
    )


def record_attempts(db: Database, attempts: Sequence[Ending], now: float) -> None:
    """Keep, for people, attempts of inputs that go on (retried or queued again)."""
    rows = []
    for a in attempts:
        e = a.error
        rows.append((a.call_id, a.idx, a.lease, a.container_id, a.status, a.duration,
                     e.type if e else None, e.message if e else None, now))  # fmt: skip
    db.executemany("INSERT INTO attempts VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
