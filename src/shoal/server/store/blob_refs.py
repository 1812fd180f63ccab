"""Which calls use which payload blobs, so that blobs nobody needs any more are removed from disk.

An input or a result over the inline limit travels as a blob (``server/blobs.py``) that its payload names
(``B`` + its sha256). The store records the name with the call (``in`` for inputs, ``out`` for results and
generator items) in the transaction that stores the payload. A call's ``in`` references go when its ephemeral app
stops (no input of it can run again), all of them when its results expire. A blob that loses its last reference
becomes an orphan; :meth:`BlobRefs.orphans_due` hands it out for deletion after a grace period, unless something
referenced it again meanwhile (blobs are shared by content: another call may upload the same bytes). An uploaded
payload (``PUT /blobs/{id}?payload=1``) is an orphan from the start, due once the control plane's upload grace is
over, unless an input, result or item names it first (a client that died between uploading and submitting).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from ...protocol.payloads import BLOB_TAG
from .database import Database

BLOB_PAYLOAD_LEN = 65  # a payload naming a blob: the tag and a sha256 in hex (protocol.payloads.blob_payload)


def blob_ids(payloads: Iterable[bytes]) -> list[str]:
    """The blobs some payloads name (inline payloads name none)."""
    return [p[1:].decode() for p in payloads if len(p) == BLOB_PAYLOAD_LEN and p[:1] == BLOB_TAG]


class BlobRefs:
    """The ``blob_refs`` and ``blob_orphans`` tables."""

    def __init__(self, db: Database, clock: Callable[[], float]) -> None:
        self.db = db
        self.clock = clock

    @staticmethod
    def record(db: Database, call_id: str, kind: str, payloads: Iterable[bytes]) -> None:
        """Inside the caller's transaction: ``call_id`` uses the blobs ``payloads`` name."""
        if ids := blob_ids(payloads):
            db.executemany("INSERT OR IGNORE INTO blob_refs VALUES (?, ?, ?)", [(b, call_id, kind) for b in ids])

    def release_inputs_of_app(self, app_id: str) -> int:
        """The inputs of a stopped ephemeral app's calls need their blobs no more; returns how many were released."""
        with self.db.tx() as db:
            return self._release(db, "kind='in' AND call_id IN (SELECT id FROM calls WHERE app_id=?)", (app_id,))

    def release_calls(self, db: Database, call_ids: Sequence[str]) -> int:
        """Inside the caller's transaction: every reference of these calls (their results expired)."""
        released = 0
        for start in range(0, len(call_ids), 500):
            part = call_ids[start : start + 500]
            released += self._release(db, f"call_id IN ({','.join('?' * len(part))})", part)
        return released

    def _release(self, db: Database, where: str, params: Sequence[str]) -> int:
        gone = {r[0] for r in db.execute(f"DELETE FROM blob_refs WHERE {where} RETURNING blob_id", params)}
        now = self.clock()
        orphans = [(b, now) for b in gone if db.execute("SELECT 1 FROM blob_refs WHERE blob_id=?", (b,)).fetchone()
                   is None]  # fmt: skip
        db.executemany(
            "INSERT INTO blob_orphans VALUES (?, ?) ON CONFLICT (blob_id) DO UPDATE SET since=excluded.since", orphans
        )
        return len(gone)

    def unused(self, blob_ids: Sequence[str], after: float) -> None:
        """These blobs are not needed as far as anyone knows: orphans ``after`` seconds from now (an uploaded payload
        not named yet, or one asked for just before its removal), never sooner than they already were. A reference
        meanwhile forgets them again."""
        if blob_ids:
            since = self.clock() + after
            with self.db.tx() as db:
                db.executemany(
                    "INSERT INTO blob_orphans VALUES (?, ?) "
                    "ON CONFLICT(blob_id) DO UPDATE SET since=max(blob_orphans.since, excluded.since)",
                    [(b, since) for b in blob_ids],
                )

    def orphans_due(self, grace: float) -> list[str]:
        """Blobs without a reference for ``grace`` seconds (those referenced again are forgotten here)."""
        cutoff = self.clock() - grace
        with self.db.tx() as db:
            db.execute("DELETE FROM blob_orphans WHERE blob_id IN (SELECT blob_id FROM blob_refs)")
            due = [r[0] for r in db.execute("SELECT blob_id FROM blob_orphans WHERE since<=?", (cutoff,))]
            db.executemany("DELETE FROM blob_orphans WHERE blob_id=?", [(b,) for b in due])
        return due
