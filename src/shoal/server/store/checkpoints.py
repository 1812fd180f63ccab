"""WAL checkpoints off the request path.

SQLite's automatic checkpoint runs inside whichever commit crosses 1,000 WAL pages: that commit copies the WAL
into the database and syncs the file, which stalls the control plane's event loop (and every request waiting on
it) for tens of milliseconds, more on a slow disk. The store turns it off and this thread checkpoints instead, on
its own connection, in PASSIVE mode: it never blocks the writer, and it releases the GIL while it does I/O.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading

log = logging.getLogger("shoal.store")

INTERVAL = 0.5  # seconds between checkpoints
WAL_PAGES = 1000  # after a checkpoint that leaves this many pages behind (a reader held them), try again sooner
WAL_KEEP = 64 << 20  # bytes of WAL file kept after a burst: past it a complete checkpoint truncates the file, so a
# burst's WAL does not keep its disk space (on a full disk, space freed by hand is not eaten again at once)


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
                    busy, frames, done = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                    if not busy and frames == done and self._wal_size() > WAL_KEEP:
                        db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()  # all copied: give the space back
                except sqlite3.Error as exc:  # a busy or failing disk: the next round tries again
                    log.debug("checkpoint skipped: %s", exc)
        finally:
            db.close()

    def _wal_size(self) -> int:
        try:
            return os.path.getsize(self.path + "-wal")
        except OSError:
            return 0

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
