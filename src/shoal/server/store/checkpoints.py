"""WAL checkpoints off the request path.

SQLite's automatic checkpoint runs inside whichever commit crosses 1,000 WAL pages: that commit copies the WAL
into the database and syncs the file, which stalls the control plane's event loop (and every request waiting on
it) for tens of milliseconds, more on a slow disk. The store turns it off and this thread checkpoints instead, on
its own connection, in PASSIVE mode: it never blocks the writer, and it releases the GIL while it does I/O.

After a burst the WAL file keeps its size (SQLite reuses it). The store's connection sets ``journal_size_limit``
to ``WAL_KEEP``: the first commit after a checkpoint that copied everything truncates the file to that, so a
burst's WAL does not keep its disk space (on a full disk, space freed by hand is not eaten again at once). This
thread once truncated it itself (``wal_checkpoint(TRUNCATE)``), but that takes the write lock, and the writer that
found it taken slept in SQLite's busy handler for 1+2+5+10+15+20 ms: 54 ms stalls of the event loop, every few
seconds at 1,000 containers (issue 27).
"""

from __future__ import annotations

import logging
import sqlite3
import threading

log = logging.getLogger("shoal.store")

INTERVAL = 0.5  # seconds between checkpoints
WAL_KEEP = 64 << 20  # bytes of WAL file kept after a burst (the store's connection's journal_size_limit)


class Checkpointer:
    def __init__(self, path: str) -> None:
        self.path = path
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="shoal-wal-checkpoint", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            db.execute("PRAGMA busy_timeout=1000")
            while not self._stop.wait(INTERVAL):
                try:
                    db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                except sqlite3.Error as exc:  # a busy or failing disk: the next round tries again
                    log.debug("checkpoint skipped: %s", exc)
        finally:
            db.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
