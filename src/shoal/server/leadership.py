"""Which server over a shared PostgreSQL store is the active one: the holder of a session advisory lock.

Every server started over the same database asks for the lock before it listens. The first gets it and serves;
the others wait as standbys, asking again every ``POLL`` seconds. The lock belongs to the holder's connection, so
when the active server dies (SIGKILL, a lost machine) PostgreSQL drops the connection and the lock with it, and a
standby takes over within about a second on one network (on another machine, once PostgreSQL notices the dead
connection: TCP keepalives, ``tcp_keepalives_idle``). A standby that takes over is a server restarting over the same
state: containers of the old one are replaced, the inputs they held run again uncharged, every result is kept once.

The active server checks its lock connection every ``POLL`` seconds; if the connection is gone, a standby may
already be active, so it stops at once (exit code 75) rather than serve beside it.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

log = logging.getLogger("shoal.server")

LOCK = "shoal.active-server"
POLL = 0.5  # seconds between a standby's tries, and between the active server's checks of its lock
LOST = 75  # the exit code of an active server that lost its lock (EX_TEMPFAIL: a standby carries on)


class Leadership:
    """The advisory lock that makes a server the active one, on a connection of its own."""

    def __init__(self, dsn: str) -> None:
        import psycopg

        # keepalives both ways, so that a dead peer is noticed in about 11 s, not hours: this side's (the database
        # is gone: the active server stops) and PostgreSQL's for this session (the active server's machine is gone:
        # its lock is dropped and a standby takes over)
        self.conn: Any = psycopg.connect(
            dsn, autocommit=True, keepalives=1, keepalives_idle=5, keepalives_interval=2, keepalives_count=3
        )
        for setting, value in (("tcp_keepalives_idle", 5), ("tcp_keepalives_interval", 2), ("tcp_keepalives_count", 3)):
            self.conn.execute(f"SET {setting} = {value}")
        self.held = False
        self._watch: threading.Thread | None = None

    def try_acquire(self) -> bool:
        """Take the lock if no other server holds it."""
        self.held = bool(self.conn.execute("SELECT pg_try_advisory_lock(hashtext(%s))", (LOCK,)).fetchone()[0])
        return self.held

    def wait(self, stopped: threading.Event, on_standby: Any = None) -> bool:
        """Block until this server holds the lock (True), or ``stopped`` is set (False); ``on_standby`` is called
        once when another server holds it."""
        if self.try_acquire():
            return True
        if on_standby is not None:
            on_standby()
        while not stopped.wait(POLL):
            if self.try_acquire():
                return True
        return False

    def watch(self) -> None:
        """While this server is active, check every ``POLL`` s that it still holds the lock; exit at once if not."""
        self._watch = threading.Thread(target=self._check, name="shoal-leadership", daemon=True)
        self._watch.start()

    def _check(self) -> None:
        while True:
            time.sleep(POLL)
            try:
                self.conn.execute("SELECT 1")
            except Exception as exc:  # the connection, and with it the lock, is gone: a standby may be active now
                log.critical("lost the active server's lock (%s): stopping so that a standby serves alone", exc)
                os._exit(LOST)

    def close(self) -> None:
        self.conn.close()
