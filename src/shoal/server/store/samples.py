"""Resources and progress over time, as the sampler (``server/sampler.py``) records them: what the dashboard's
charts read. Kept as long as results are (:meth:`Samples.expire`)."""

from __future__ import annotations

from collections.abc import Sequence

from ..core.records import CallSample, ContainerSample
from .database import Database

SHOWN = 2_000  # samples a chart reads at most (the newest)


class Samples:
    """The ``container_samples`` and ``call_samples`` tables."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def add(self, containers: Sequence[ContainerSample], calls: Sequence[CallSample]) -> None:
        with self.db.tx() as db:
            db.executemany(
                "INSERT INTO container_samples (container_id, function_id, at, cpu, memory_mib, gpu, gpu_memory_mib) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(s.container_id, s.function_id, s.at, s.cpu, s.memory_mib, s.gpu, s.gpu_memory_mib)
                 for s in containers],
            )  # fmt: skip
            db.executemany(
                "INSERT INTO call_samples (call_id, at, done, containers) VALUES (?, ?, ?, ?)",
                [(s.call_id, s.at, s.done, s.containers) for s in calls],
            )

    def unfinished_calls(self, limit: int = 1_000) -> list[tuple[str, str, int]]:
        """(call id, function id, inputs done) of the newest unfinished calls: whose progress is sampled."""
        rows = self.db.execute(
            "SELECT id, function_id, done FROM calls WHERE finished_at IS NULL ORDER BY created_at DESC LIMIT ?",
            (limit,),
        ).fetchall()
        return [(r[0], r[1], int(r[2])) for r in rows]

    def of_container(self, container_id: str) -> list[ContainerSample]:
        rows = self.db.execute(
            "SELECT container_id, function_id, at, cpu, memory_mib, gpu, gpu_memory_mib FROM container_samples "
            "WHERE container_id=? ORDER BY at DESC LIMIT ?",
            (container_id, SHOWN),
        ).fetchall()
        return [ContainerSample(*r) for r in reversed(rows)]

    def of_function(self, function_id: str) -> list[ContainerSample]:
        """A function's containers summed per moment (CPU, memory, GPU memory; GPU utilization averaged)."""
        rows = self.db.execute(
            "SELECT at, SUM(cpu), SUM(memory_mib), AVG(gpu), SUM(gpu_memory_mib) FROM container_samples "
            "WHERE function_id=? GROUP BY at ORDER BY at DESC LIMIT ?",
            (function_id, SHOWN),
        ).fetchall()
        return [ContainerSample("", function_id, *r) for r in reversed(rows)]

    def of_call(self, call_id: str) -> list[CallSample]:
        rows = self.db.execute(
            "SELECT call_id, at, done, containers FROM call_samples WHERE call_id=? ORDER BY at DESC LIMIT ?",
            (call_id, SHOWN),
        ).fetchall()
        return [CallSample(*r) for r in reversed(rows)]

    def expire(self, before: float) -> None:
        with self.db.tx() as db:
            db.execute("DELETE FROM container_samples WHERE at<?", (before,))
            db.execute("DELETE FROM call_samples WHERE at<?", (before,))
