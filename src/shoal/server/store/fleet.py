"""What the store keeps in memory of its live containers: each one's (function, state), and the scheduler's view.

Every exchange and beat reads its container's (function, state): :meth:`Fleet.state` answers it from memory, kept
as each write of a state commits (:meth:`Fleet.committed`; this process is the store's only writer while it
serves). Stopped containers are not kept: the store reads them from its tables.

Every scheduler tick needs every live container with what it holds (its leased inputs and the oldest lease's
time). Reading all of them from the tables each tick cost ~35 ms of the event loop at 10,000 containers (issue 27).
The store's writes say which containers they touched (:meth:`Fleet.touched`: a lease, a report, a release, a
container's failure, a cancel, a state change, a beat), and the next :meth:`Fleet.view` reads only those again:
at 10,000 containers exchanging every 10 s, a tick reads a few hundred rows, not 10,000.

Like an informer's resync, every live container is read again every ``RESYNC_EVERY`` seconds, so that a write that
did not say what it touched (a bug, or another writer of the same database) is seen late (within two periods),
never forgotten. The resync is spread: each period starts by listing the live containers' ids, and each view reads
the slice of them that is due by then. (Reading all 10,000 at once every 10 s held the server's event loop ~45 ms
at a time, and the requests that piled up behind it were the lease latency's tail.) The store's writers call
:meth:`touched` inside the transaction: the store is used from one thread, so no view is read between a write and
its commit, and a rolled-back write only costs a read.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable

from ..core.records import ContainerRow, ContainerState
from .database import Database
from .queue import marks, slices

RESYNC_EVERY = 10.0  # seconds in which every live container is read again, a slice at each view
_STATES = {s.value: s for s in ContainerState}  # a dict lookup instead of an Enum call per row
_COLUMNS = "id, function_id, state, created_at, last_seen, last_active"


class Fleet:
    """The live (not STOPPED) containers: their states, and their rows as :class:`ContainerRow`."""

    def __init__(self, db: Database, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.db = db
        self.monotonic = monotonic
        self._states: dict[str, tuple[str, ContainerState]] = {}
        self._rows: dict[str, ContainerRow] = {}
        self._dirty: set[str] = set()
        self._synced: float | None = None  # when this resync period began (None: nothing read yet)
        self._resync: list[str] = []  # the period's containers, read a slice at a time
        self._resynced = 0  # how many of them were read again

    def touched(self, container_ids: Iterable[str | None]) -> None:
        """These containers' rows or leases changed: the next view reads them again."""
        self._dirty.update(cid for cid in container_ids if cid)

    def state(self, container_id: str) -> tuple[str, ContainerState] | None:
        """(function, state) of a live container this process knows of, else None (stopped, or not read yet)."""
        return self._states.get(container_id)

    def committed(self, container_ids: Iterable[str], function_id: str, state: ContainerState) -> None:
        """These containers of ``function_id`` are in ``state`` as committed (STOPPED: forgotten)."""
        for cid in container_ids:
            self._dirty.add(cid)
            self.remember(cid, function_id, state)

    def remember(self, container_id: str, function_id: str, state: ContainerState) -> None:
        """A container's (function, state) as read from the store (STOPPED: not kept)."""
        if state == ContainerState.STOPPED:
            self._states.pop(container_id, None)
        else:
            self._states[container_id] = (function_id, state)

    def view(self) -> list[ContainerRow]:
        """Every live container as committed: those touched since the last view read again, or all of them when
        the last full read is ``RESYNC_EVERY`` seconds old."""
        now = self.monotonic()
        if self._synced is None:
            self._read_all()
            self._synced = now
        else:
            self._dirty.update(self._due(now))
        if self._dirty:
            self._read(self._dirty)
        self._dirty = set()
        return list(self._rows.values())

    def _due(self, now: float) -> list[str]:
        """The containers the spread resync reads again now: the rest of a period that ended, then the slice of
        the next period due by ``now`` (that period's list: every live container in the tables, and those kept
        here that the tables no longer have as live)."""
        assert self._synced is not None
        due: list[str] = []
        if now - self._synced >= RESYNC_EVERY:
            due = self._resync[self._resynced :]
            behind = now - self._synced - RESYNC_EVERY
            self._synced = now if behind >= RESYNC_EVERY else self._synced + RESYNC_EVERY
            live = [r[0] for r in self.db.execute("SELECT id FROM containers WHERE state!='STOPPED'").fetchall()]
            self._resync, self._resynced = sorted(set(live) | set(self._rows)), 0
        upto = math.ceil(len(self._resync) * min(1.0, (now - self._synced) / RESYNC_EVERY))
        due += self._resync[self._resynced : upto]
        self._resynced = max(self._resynced, upto)
        return due

    def _read_all(self) -> None:
        held = dict(self._held("container_id IS NOT NULL", ()))  # one pass over the leased rows
        rows = self.db.execute(f"SELECT {_COLUMNS} FROM containers WHERE state!='STOPPED'").fetchall()
        self._rows = {r[0]: _row(r, held.get(r[0], (0, None))) for r in rows}

    def _read(self, container_ids: set[str]) -> None:
        for part in slices(sorted(container_ids)):
            held = dict(self._held(f"container_id IN ({marks(len(part))})", part))
            rows = self.db.execute(f"SELECT {_COLUMNS} FROM containers WHERE id IN ({marks(len(part))})", part)
            gone = set(part)
            for r in rows.fetchall():
                if r[2] != ContainerState.STOPPED.value:
                    self._rows[r[0]] = _row(r, held.get(r[0], (0, None)))
                    gone.discard(r[0])
            for cid in gone:  # stopped, or never committed (a rolled-back launch)
                self._rows.pop(cid, None)

    def _held(self, where: str, params: Iterable[str]) -> Iterable[tuple[str, tuple[int, float | None]]]:
        """(container, (inputs it holds, when its oldest lease began)) of the containers holding inputs."""
        rows = self.db.execute(
            f"SELECT container_id, SUM(count), MIN(leased_at) FROM inputs WHERE {where} AND state='LEASED' "
            "GROUP BY container_id",
            tuple(params),
        )
        return ((cid, (int(n), oldest)) for cid, n, oldest in rows.fetchall())


def _row(r: tuple[str, str, str, float, float, float], held: tuple[int, float | None]) -> ContainerRow:
    return ContainerRow(r[0], r[1], _STATES[r[2]], r[3], r[4], r[5], held[0], held[1])
