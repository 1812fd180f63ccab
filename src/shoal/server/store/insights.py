"""What the dashboard reads: per-function counters and latencies, a call's progress and grouped failures, one
input's attempts, and logs filtered every way.

No query here grows with the number of a call's inputs where a counter can answer: progress comes from the
calls' counters, running inputs from the leased rows only (bounded by containers), failures from a partial
index that holds failed outputs only, latencies from histograms (``server/metrics.py``).
"""

from __future__ import annotations

import re
from typing import Any

from .. import metrics
from ..core.records import Attempt, FailureGroup, FunctionInsight, InputDetail, LogFilter, LogLine, shown_tag
from .catalog import Catalog
from .database import Database

FAILURE_INDEXES = 50  # input indexes listed per failure group
EXACT_GROUPS = 5_000  # distinct messages read to group by pattern (past that, a group's count may be short)
_NUMBERS = re.compile(r"(?<![A-Za-z_])-?\d+(?:\.\d+)?")
_IDS = re.compile(r"\b(?:[a-z]{2}-[0-9A-Za-z]{6,}|0x[0-9a-fA-F]+|[0-9a-f]{8,}(?:-[0-9a-f]{4,}){0,4})\b")


def message_pattern(message: str) -> str:
    """A failure message with its ids and numbers replaced (``<id>``, ``<n>``): what groups failures that differ
    only in the record they name."""
    return _NUMBERS.sub("<n>", _IDS.sub("<id>", message))


LOG_COLUMNS = "seq, ts, stream, data, app_id, call_id, input_idx, container_id"


class Insights:
    def __init__(self, db: Database, catalog: Catalog) -> None:
        self.db = db
        self.catalog = catalog

    # ---- functions ------------------------------------------------------------------------------

    def functions(self, app_id: str) -> list[FunctionInsight]:
        """Every function of an app (newest version per tag), with live counters and latency percentiles."""
        return [self.function(fid, tag) for tag, fid in sorted(self.catalog.functions_of(app_id).items())]

    def function(self, function_id: str, tag: str) -> FunctionInsight:
        unfinished, succeeded, failed = self.db.execute(
            "SELECT COALESCE(SUM(CASE WHEN finished_at IS NULL THEN submitted-done END), 0), "
            "COALESCE(SUM(done-failed), 0), COALESCE(SUM(failed), 0) FROM calls WHERE function_id=?",
            (function_id,),
        ).fetchone()
        running = self.db.execute(
            "SELECT COALESCE(SUM(count), 0) FROM inputs WHERE function_id=? AND state='LEASED'", (function_id,)
        ).fetchone()[0]
        containers = self.db.execute(
            "SELECT COUNT(*) FROM containers WHERE function_id=? AND state!='STOPPED'", (function_id,)
        ).fetchone()[0]
        latency = {m: self.percentiles(function_id, m) for m in metrics.METRICS}
        return FunctionInsight(
            function_id, tag, max(0, unfinished - running), running, containers, succeeded, failed, latency
        )

    def histogram(self, function_id: str, metric: str) -> dict[int, int]:
        rows = self.db.execute(
            "SELECT bucket, n FROM function_metrics WHERE function_id=? AND metric=?", (function_id, metric)
        ).fetchall()
        return dict(rows)

    def percentiles(self, function_id: str, metric: str) -> dict[str, float | None]:
        h = self.histogram(function_id, metric)
        return {"p50": metrics.percentile(h, 50), "p95": metrics.percentile(h, 95), "n": float(sum(h.values()))}

    # ---- calls ----------------------------------------------------------------------------------

    def calls_of_app(self, app_id: str, limit: int = 50) -> list[str]:
        rows = self.db.execute(
            "SELECT id FROM calls WHERE app_id=? ORDER BY created_at DESC LIMIT ?", (app_id, limit)
        ).fetchall()
        return [r[0] for r in rows]

    def running_inputs(self, call_id: str, function_id: str) -> int:
        """Inputs of a call being run now (the function's leased rows only, however large the call)."""
        row = self.db.execute(
            "SELECT COALESCE(SUM(count), 0) FROM inputs WHERE function_id=? AND state='LEASED' AND call_id=?",
            (function_id, call_id),
        ).fetchone()
        return int(row[0])

    def failure_groups(self, call_id: str, limit: int = 20) -> list[FailureGroup]:
        """A call's failed inputs grouped by exception type and message pattern (messages that differ only in
        numbers or ids are one group: "record <n> has a negative amount"), the largest group first."""
        exact = self.db.execute(
            "SELECT error_type, error_message, SUM(count), MIN(idx) FROM outputs WHERE call_id=? AND status!='SUCCESS' "
            "GROUP BY error_type, error_message LIMIT ?",
            (call_id, EXACT_GROUPS),
        ).fetchall()
        merged: dict[tuple[str | None, str], list[tuple[str, int, int]]] = {}
        for error_type, message, count, first in exact:
            key = (error_type, message_pattern(message or ""))
            merged.setdefault(key, []).append((message or "", int(count), int(first)))
        ranked = sorted(merged.items(), key=lambda kv: (-sum(c for _, c, _ in kv[1]), min(f for _, _, f in kv[1])))
        out = []
        for (error_type, pattern), members in ranked[:limit]:
            members.sort(key=lambda m: m[2])
            message = members[0][0] if len(members) == 1 else pattern
            indexes = self._failed_indexes(call_id, error_type, [m[0] for m in members[:FAILURE_INDEXES]])
            traceback = self._traceback_of(call_id, indexes[0]) if indexes else ""
            count = sum(c for _, c, _ in members)
            out.append(FailureGroup(error_type or "?", message, count, traceback, indexes))
        return out

    def failed_statuses(self, call_id: str) -> dict[str, int]:
        """How many of a call's inputs ended in each status but success (the failed rows' partial index only)."""
        rows = self.db.execute(
            "SELECT status, SUM(count) FROM outputs WHERE call_id=? AND status!='SUCCESS' GROUP BY status", (call_id,)
        ).fetchall()
        return {str(status): int(n) for status, n in rows}

    def _failed_indexes(self, call_id: str, error_type: str | None, messages: list[str]) -> list[int]:
        """The first failed indexes of a group (the inputs whose type and message are among ``messages``)."""
        rows = self.db.execute(
            f"SELECT idx FROM outputs WHERE call_id=? AND status!='SUCCESS' AND error_type IS ? "
            f"AND COALESCE(error_message, '') IN ({', '.join('?' * len(messages))}) ORDER BY idx LIMIT ?",
            (call_id, error_type, *messages, FAILURE_INDEXES),
        ).fetchall()
        return [int(r[0]) for r in rows]

    def _traceback_of(self, call_id: str, index: int) -> str:
        row = self.db.execute(
            "SELECT traceback FROM outputs WHERE call_id=? AND idx=? AND status!='SUCCESS'", (call_id, index)
        ).fetchone()
        return str(row[0]) if row and row[0] else ""

    def input_detail(self, call_id: str, index: int) -> InputDetail | None:
        attempts = [
            Attempt(*r)
            for r in self.db.execute(
                "SELECT lease, container_id, status, duration, error_type, error_message, ended_at FROM attempts "
                "WHERE call_id=? AND idx=? ORDER BY ended_at, lease",
                (call_id, index),
            )
        ]
        traceback: str | None = None
        output = self.db.execute(  # its own row, or the chunk that holds it
            "SELECT lease, container_id, status, duration, error_type, error_message, created_at, traceback, idx, "
            "count FROM outputs WHERE call_id=? AND idx<=? ORDER BY idx DESC LIMIT 1",
            (call_id, index),
        ).fetchone()
        if output is not None and output[8] + output[9] <= index:
            output = None
        elif output is not None and output[9] > 1:  # a chunk reports its inputs' total time
            output = (*output[:3], output[3] and output[3] / output[9], *output[4:])
        if output is not None:
            attempts.append(Attempt(*output[:7]))
            state, traceback = output[2], output[7]
        else:
            row = self.db.execute(
                "SELECT state, leases, container_id, leased_at, idx, count FROM inputs WHERE call_id=? AND idx<=? "
                "ORDER BY idx DESC LIMIT 1",
                (call_id, index),
            ).fetchone()
            if row is None or row[4] + row[5] <= index:
                return None
            state = row[0]
            if state == "LEASED":
                attempts.append(Attempt(row[1], row[2], "RUNNING", None, None, None, None))
        logs = self.logs(LogFilter(call_id=call_id, input_idx=index), limit=500)
        return InputDetail(call_id, index, state, attempts, traceback, logs)

    # ---- logs -----------------------------------------------------------------------------------

    def logs(self, where: LogFilter, limit: int = 300, before: int | None = None,
             after: int | None = None) -> list[LogLine]:  # fmt: skip
        """The last ``limit`` lines that pass the filter (before seq ``before``), oldest first; with ``after``, the
        first ``limit`` after that seq instead (reading on, page by page)."""
        clauses: list[str] = []
        params: list[Any] = []
        for column, value in (("app_id", where.app_id), ("call_id", where.call_id), ("stream", where.stream),
                              ("container_id", where.container_id), ("input_idx", where.input_idx)):  # fmt: skip
            if value is not None:
                clauses.append(f"{column}=?")
                params.append(value)
        if where.function_id is not None:
            clauses.append("container_id IN (SELECT id FROM containers WHERE function_id=?)")
            params.append(where.function_id)
        if where.function_tag is not None:
            clauses.append("container_id IN (SELECT c.id FROM containers c JOIN functions f ON f.id=c.function_id "
                           "WHERE f.app_id=? AND f.tag=?)")  # fmt: skip
            params += [where.app_id, where.function_tag]
        if where.text:
            clauses.append("instr(lower(data), lower(?)) > 0")
            params.append(where.text)
        bounds: tuple[tuple[str, float | None], ...] = (("ts>=?", where.since_ts), ("ts<?", where.until_ts),
                                                        ("seq<?", before), ("seq>?", after))  # fmt: skip
        for clause, bound in bounds:
            if bound is not None:
                clauses.append(clause)
                params.append(bound)
        sql = f"SELECT {LOG_COLUMNS} FROM logs {'WHERE ' + ' AND '.join(clauses) if clauses else ''} "
        if after is not None:
            return [LogLine(*r) for r in self.db.execute(sql + "ORDER BY seq LIMIT ?", (*params, limit))]
        rows = self.db.execute(sql + "ORDER BY seq DESC LIMIT ?", (*params, limit)).fetchall()
        return [LogLine(*r) for r in reversed(rows)]

    # ---- containers -----------------------------------------------------------------------------

    def functions_of_containers(self, container_ids: set[str | None]) -> dict[str, str]:
        """Container id -> its function's tag, as people see it (the logs page's function column)."""
        ids = sorted(i for i in container_ids if i)
        found: dict[str, str] = {}
        for start in range(0, len(ids), 500):
            part = ids[start : start + 500]
            rows = self.db.execute(
                "SELECT c.id, f.tag FROM containers c JOIN functions f ON f.id=c.function_id "
                f"WHERE c.id IN ({','.join('?' * len(part))})",
                part,
            )
            found.update((cid, shown_tag(tag)) for cid, tag in rows)
        return found

    def container(self, container_id: str) -> dict[str, Any] | None:
        row = self.db.execute(
            "SELECT c.id, c.app_id, a.name, f.tag, c.function_id, c.state, c.pid, c.created_at, c.started_at, "
            "c.last_seen, c.stop_reason, c.node, c.served, "
            "(SELECT COALESCE(SUM(count), 0) FROM inputs i WHERE i.container_id=c.id AND i.state='LEASED') "
            "FROM containers c JOIN functions f ON f.id=c.function_id JOIN apps a ON a.id=c.app_id WHERE c.id=?",
            (container_id,),
        ).fetchone()
        if row is None:
            return None
        keys = ["container_id", "app_id", "app_name", "function", "function_id", "state", "pid", "created_at",
                "started_at", "last_seen", "stop_reason", "node", "served", "running_inputs"]  # fmt: skip
        return dict(zip(keys, (*row[:3], shown_tag(row[3]), *row[4:])))
