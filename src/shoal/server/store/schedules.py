"""Durable schedules: which functions fire when, kept in the store so that they survive restarts.

Each scheduled function has one row: its schedule spec, the anchor (when it was registered: the deploy, or the
start of an ephemeral app), the next fire time and the last one. The control plane's loop asks :meth:`due` and
fires each due row as an ordinary call whose id is derived from (function, intended fire time), so a crash
between creating the call and moving the row on cannot fire one tick twice (arq's idea). A tick missed while
the server was down is fired once when it is back, and the next one is computed from then: missed ticks are
not replayed in a burst. Each tick fires even if the previous run is still going (Modal's behaviour).
"""

from __future__ import annotations

import hashlib
import json
import pickle
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from ...protocol.payloads import inline_payload
from ...schedule import describe, next_fire
from ..core.records import DueSchedule
from .database import Database


class CreateCall(Protocol):
    def __call__(
        self, call_id: str, function_id: str, app_id: str, kind: str, parent_input: str | None,
        inputs: Sequence[bytes] = (), close: bool = False, key: str | None = None,
    ) -> str: ...  # fmt: skip


NO_ARGUMENTS = inline_payload(pickle.dumps(((), {}), protocol=4))  # what a scheduled call passes: nothing


class ScheduleBook:
    """The ``schedules`` table."""

    def __init__(
        self, db: Database, clock: Callable[[], float], call: Callable[[str], object | None], create_call: CreateCall
    ) -> None:
        self.db = db
        self.clock = clock
        self._call, self._create_call = call, create_call  # the store's: a fired schedule is an ordinary call

    def register(self, function_id: str, app_id: str, tag: str, spec: dict[str, Any] | None) -> None:
        """The function ``tag`` of an app now has this schedule (or none): it replaces an earlier version's."""
        now = self.clock()
        with self.db.tx() as db:
            db.execute("DELETE FROM schedules WHERE app_id=? AND tag=?", (app_id, tag))
            if spec is not None:
                db.execute(
                    "INSERT INTO schedules (function_id, app_id, tag, spec, anchor, next_fire) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (function_id, app_id, tag, json.dumps(spec), now, next_fire(spec, now, now)),
                )

    def keep_only(self, app_id: str, function_ids: set[str]) -> None:
        """After a deploy: schedules of functions the new version dropped stop."""
        rows = self.db.execute("SELECT function_id FROM schedules WHERE app_id=?", (app_id,)).fetchall()
        stale = [r[0] for r in rows if r[0] not in function_ids]
        with self.db.tx() as db:
            db.executemany("DELETE FROM schedules WHERE function_id=?", [(f,) for f in stale])

    def due(self, now: float) -> list[DueSchedule]:
        """Schedules of running apps whose next fire time has come."""
        rows = self.db.execute(
            "SELECT s.function_id, s.app_id, s.spec, s.anchor, s.next_fire FROM schedules s JOIN apps a "
            "ON a.id=s.app_id WHERE a.state='RUNNING' AND s.next_fire<=?",
            (now,),
        ).fetchall()
        return [DueSchedule(f, a, json.loads(spec), anchor, at) for f, a, spec, anchor, at in rows]

    def fire(self, due: DueSchedule, now: float) -> str | None:
        """Create the tick's call and move the schedule on; returns its id (the same one for a tick that already
        fired, whose call is not created again)."""
        call_id = "fc-" + hashlib.sha256(f"{due.function_id}:{due.fire_at:.6f}".encode()).hexdigest()[:20]
        if self._call(call_id) is None:
            self._create_call(call_id, due.function_id, due.app_id, "schedule", None, [NO_ARGUMENTS], True)
        with self.db.tx() as db:
            db.execute(
                "UPDATE schedules SET last_fire=?, last_call=?, next_fire=? WHERE function_id=? AND next_fire=?",
                (due.fire_at, call_id, next_fire(due.spec, due.anchor, now), due.function_id, due.fire_at),
            )
        return call_id

    def of_app(self, app_id: str) -> list[dict[str, Any]]:
        """Each schedule of an app, for listings: function, schedule, last and next fire, last call."""
        rows = self.db.execute(
            "SELECT tag, spec, last_fire, next_fire, last_call FROM schedules WHERE app_id=? ORDER BY tag", (app_id,)
        ).fetchall()
        return [
            {"function": tag, "schedule": describe(json.loads(spec)), "last_fire": last, "next_fire": nxt,
             "last_call": call}
            for tag, spec, last, nxt, call in rows
        ]  # fmt: skip
