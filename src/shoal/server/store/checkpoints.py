"""WAL checkpoints off the request path.

SQLite's automatic checkpoint runs inside whichever commit crosses 1,000 WAL pages: that commit copies the WAL
into the database and syncs the file, which stalls the control plane's event loop (and every request waiting on
it) for tens of milliseconds, more on a slow disk. The store turns it off and this thread checkpoints instead, on
its own connection, in PASSIVE mode: it never blocks the writer, and it releases the GIL while it does I/O.

Under a steady writer (1,000 containers exchanging: a commit a millisecond) a passive checkpoint never finds the
whole WAL copied, as frames are appended while it copies, so SQLite never starts the WAL over and it grows without
end. Past ``RESTART_FRAMES`` this thread therefore follows its passive checkpoint with a RESTART one (it copies
the few frames written meanwhile, and the next commit starts the WAL from its beginning), holding the store's
``gate``: the store's statements wait on that Python lock, woken as soon as it is free. Taking SQLite's write lock
without it made the writer that found it taken sleep in SQLite's busy handler (1+2+5+10+15+20 ms: 54 ms stalls of
the event loop every few seconds at 1,000 containers; issue 27).

After a burst the WAL file keeps its size (SQLite reuses it). The store's connection sets ``journal_size_limit``
to ``WAL_KEEP``: the first commit after the WAL starts over cuts the file back to that, so a burst's WAL does not
keep its disk space (on a full disk, space freed by hand is not eaten again at once).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from contextlib import AbstractContextManager
from typing import Any

log = logging.getLogger("shoal.store")

INTERVAL = 0.5  # seconds between checkpoints
WAL_KEEP = 64 << 20  # bytes of WAL file kept after a burst (the store's connection's journal_size_limit)
RESTART_FRAMES = 4096  # WAL frames (pages: 16 MiB) past which the WAL is started over


class Checkpointer:
    def __init__(self, path: str, gate: AbstractContextManager[Any]) -> None:
        self.path = path
        self.gate = gate
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="shoal-wal-checkpoint", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            # never wait on a lock: a checkpoint that finds one taken (or a reader) does what it can, and the next
            # round does the rest; above all a RESTART holding the gate must not wait for a statement of the store's
            # thread that is still reading (a cursor being iterated), which waits for the gate to go on
            db.execute("PRAGMA busy_timeout=0")
            while not self._stop.wait(INTERVAL):
                try:
                    _, frames, _ = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                    if frames > RESTART_FRAMES:
                        with self.gate:
                            db.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()
                except sqlite3.Error as exc:  # a busy or failing disk: the next round tries again
                    log.debug("checkpoint skipped: %s", exc)
        finally:
            db.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
