"""Items of generator functions: what ``remote_gen`` streams to its caller while the generator runs.

A container posts each yielded item under the input's current lease; the caller long-polls the items after
the last one it has, and learns that the stream ended from the input's ordinary output (a failure raised
mid-stream comes after the items before it). Items are kept with the call and expire with its results.
"""

from __future__ import annotations

from typing import Any

from .blob_refs import BlobRefs
from .database import Database

PAGE = 1_000


class ItemStreams:
    """Reads and writes of the ``gen_items`` table."""

    def __init__(self, db: Database) -> None:
        self.db = db  # the table is part of the store's schema (expired with the call's results)

    def add(self, container_id: str, call_id: str, index: int, lease: int, seq: int, data: bytes) -> bool:
        """Store one item of a running input; False when the lease is no longer current (the item is dropped)."""
        with self.db.tx() as db:
            current = db.execute(
                "SELECT 1 FROM inputs WHERE call_id=? AND idx=? AND state='LEASED' AND container_id=? AND leases=?",
                (call_id, index, container_id, lease),
            ).fetchone()
            if current is None:
                return False
            db.execute("INSERT OR IGNORE INTO gen_items VALUES (?, ?, ?, ?)", (call_id, index, seq, data))
            BlobRefs.record(db, call_id, "out", (data,))
        return True

    def after(self, call_id: str, index: int, since: int) -> list[list[Any]]:
        """[seq, data] of the items after ``since``, in order (a page at most)."""
        rows = self.db.execute(
            "SELECT seq, data FROM gen_items WHERE call_id=? AND idx=? AND seq>? ORDER BY seq LIMIT ?",
            (call_id, index, since, PAGE),
        ).fetchall()
        return [[seq, data] for seq, data in rows]
