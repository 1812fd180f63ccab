"""Read models and app lifecycle on top of the store: listing, deployments, reaping apps whose client left.

Kept apart from ``sqlite.py`` (the input lifecycle) so each stays small; both share one SQLite connection.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from ...protocol.specs import AUTOSCALER_FIELDS, FunctionSpec
from ..core.records import shown_tag
from ..errors import Invalid
from .database import Database

SpecChange = Callable[[FunctionSpec], FunctionSpec]


APP_COLUMNS = "id, name, state, mode, created_at, stopped_at, version, stop_reason"


class Catalog:
    def __init__(
        self, db: Database, clock: Callable[[], float], update_spec: Callable[[str, SpecChange], FunctionSpec]
    ) -> None:
        self.db = db
        self.clock = clock
        self._update_spec = update_spec  # the store's: it keeps the decoded specs

    # ---- apps -----------------------------------------------------------------------------------

    def _app_dict(self, row: tuple[Any, ...]) -> dict[str, Any]:
        app = dict(zip(["app_id", "name", "state", "mode", "created_at", "stopped_at", "version", "stop_reason"], row))
        if app["mode"] == "deployed":  # what people see is the last deployment that finished, never one under way
            done = self.db.execute("SELECT MAX(version) FROM deployments WHERE app_id=?", (row[0],)).fetchone()[0]
            app["version"] = done or 0
            if not done and app["state"] == "RUNNING":
                app["state"] = "DEPLOYING"  # its first deploy is under way, or was cut off: deploy it again
        app["containers"] = self.db.execute(
            "SELECT COUNT(*) FROM containers WHERE app_id=? AND state!='STOPPED'", (row[0],)
        ).fetchone()[0]
        app["functions"] = [
            r[0] for r in self.db.execute("SELECT DISTINCT tag FROM functions WHERE app_id=? ORDER BY tag", (row[0],))
        ]
        return app

    def list_apps(self, include_stopped: bool = True, limit: int = 200) -> list[dict[str, Any]]:
        where = "" if include_stopped else "WHERE state='RUNNING'"
        rows = self.db.execute(f"SELECT {APP_COLUMNS} FROM apps {where} ORDER BY created_at DESC LIMIT ?", (limit,))
        return [self._app_dict(r) for r in rows.fetchall()]

    def find_app(self, name_or_id: str) -> dict[str, Any] | None:
        """An app by id, else the newest app (running first) with that name."""
        row = self.db.execute(f"SELECT {APP_COLUMNS} FROM apps WHERE id=?", (name_or_id,)).fetchone()
        if row is None:
            row = self.db.execute(
                f"SELECT {APP_COLUMNS} FROM apps WHERE name=? ORDER BY state='RUNNING' DESC, created_at DESC LIMIT 1",
                (name_or_id,),
            ).fetchone()
        return self._app_dict(row) if row else None

    def deployed_app(self, name: str) -> str | None:
        row = self.db.execute(
            "SELECT id FROM apps WHERE name=? AND mode='deployed' AND state='RUNNING' ORDER BY created_at DESC LIMIT 1",
            (name,),
        ).fetchone()
        return row[0] if row else None

    def begin_deployment(self, app_id: str) -> int:
        with self.db.tx() as db:
            db.execute("UPDATE apps SET version=version+1 WHERE id=?", (app_id,))
            return int(db.execute("SELECT version FROM apps WHERE id=?", (app_id,)).fetchone()[0])

    def finish_deployment(self, app_id: str, version: int, functions: dict[str, str]) -> None:
        with self.db.tx() as db:
            db.execute(
                "INSERT INTO deployments VALUES (?, ?, ?, ?) ON CONFLICT (app_id, version) "
                "DO UPDATE SET created_at=excluded.created_at, functions=excluded.functions",
                (app_id, version, self.clock(), json.dumps(functions)),
            )

    def history(self, app_id: str) -> list[dict[str, Any]]:
        rows = self.db.execute(
            "SELECT version, created_at, functions FROM deployments WHERE app_id=? ORDER BY version DESC", (app_id,)
        ).fetchall()
        return [{"version": v, "created_at": t, "functions": json.loads(f)} for v, t, f in rows]

    def function_stats(self, function_id: str) -> dict[str, int]:
        """Modal's ``FunctionStats``: inputs waiting, inputs running, and live containers of a function."""
        counts = dict(self.db.execute(
            "SELECT state, SUM(count) FROM inputs WHERE function_id=? GROUP BY state", (function_id,)
        ).fetchall())  # fmt: skip
        runners = self.db.execute(
            "SELECT COUNT(*) FROM containers WHERE function_id=? AND state!='STOPPED'", (function_id,)
        ).fetchone()[0]
        return {"backlog": counts.get("PENDING", 0), "running_inputs": counts.get("LEASED", 0),
                "num_total_runners": runners}  # fmt: skip

    def update_autoscaler(self, function_id: str, changes: dict[str, float]) -> dict[str, Any]:
        """Change a function's autoscaling settings in place (the scheduler reads them every tick)."""

        def change(spec: FunctionSpec) -> FunctionSpec:
            updated = spec.replace(**changes)
            if updated.min_containers > updated.max_containers:
                raise Invalid(f"min_containers={updated.min_containers} is above "
                                 f"max_containers={updated.max_containers}")  # fmt: skip
            return updated

        spec = self._update_spec(function_id, change)
        return {k: getattr(spec, k) for k in AUTOSCALER_FIELDS}

    def functions_of(self, app_id: str) -> dict[str, str]:
        """tag -> id of the newest version of each function."""
        out: dict[str, str] = {}
        for tag, fid in self.db.execute(
            "SELECT tag, id FROM functions WHERE app_id=? ORDER BY created_at, rowid", (app_id,)
        ):
            out[tag] = fid
        return out

    def touch_client(self, app_id: str) -> None:
        self.db.execute("UPDATE apps SET client_seen=? WHERE id=?", (self.clock(), app_id))

    def forget_client(self, app_id: str) -> None:
        """The app's client left on purpose: reap it by its work alone, not its client's silence."""
        self.db.execute("UPDATE apps SET client_seen=0 WHERE id=?", (app_id,))

    def set_mode(self, app_id: str, mode: str) -> None:
        self.db.execute("UPDATE apps SET mode=? WHERE id=?", (mode, app_id))

    def clients_seen_now(self) -> None:
        """Count every running app's client timeout from now (after a server restart)."""
        self.db.execute("UPDATE apps SET client_seen=? WHERE state='RUNNING' AND mode='ephemeral'", (self.clock(),))

    def apps_to_reap(self, client_timeout: float) -> list[tuple[str, str]]:
        """(app id, reason) of apps to stop: ephemeral ones whose client is gone, detached ones with nothing left."""
        now = self.clock()
        out = []
        for (app_id,) in self.db.execute(
            "SELECT id FROM apps WHERE state='RUNNING' AND mode='ephemeral' AND client_seen<?", (now - client_timeout,)
        ).fetchall():
            out.append((app_id, "its client disconnected"))
        for (app_id,) in self.db.execute(
            "SELECT a.id FROM apps a WHERE a.state='RUNNING' AND a.mode='detached' AND a.client_seen<? "
            "AND NOT EXISTS (SELECT 1 FROM calls c WHERE c.app_id=a.id AND c.finished_at IS NULL)",
            (now - client_timeout,),
        ).fetchall():
            out.append((app_id, "its detached work finished"))
        return out

    # ---- calls, containers, logs ----------------------------------------------------------------

    def calls_of_function(self, app_id: str, tag: str, limit: int = 50) -> list[str]:
        rows = self.db.execute(
            "SELECT c.id FROM calls c JOIN functions f ON f.id=c.function_id WHERE c.app_id=? AND f.tag=? "
            "ORDER BY c.created_at DESC LIMIT ?",
            (app_id, tag, limit),
        ).fetchall()
        return [r[0] for r in rows]

    def list_containers(self, include_stopped: bool = False, limit: int = 200) -> list[dict[str, Any]]:
        where = "" if include_stopped else "WHERE c.state!='STOPPED'"
        rows = self.db.execute(
            "SELECT c.id, c.app_id, a.name, f.tag, c.state, c.pid, c.created_at, c.last_seen, c.stop_reason, c.node, "
            "(SELECT COALESCE(SUM(count), 0) FROM inputs i WHERE i.container_id=c.id AND i.state='LEASED'), "
            "c.started_at, c.served, "
            "CASE WHEN c.web_port IS NULL THEN NULL ELSE COALESCE(c.web_host, '127.0.0.1') || ':' || c.web_port END "
            f"FROM containers c JOIN functions f ON f.id=c.function_id JOIN apps a ON a.id=c.app_id {where} "
            "ORDER BY c.created_at DESC LIMIT ?",
            (limit,),
        ).fetchall()
        keys = ["container_id", "app_id", "app_name", "function", "state", "pid", "created_at", "last_seen",
                "stop_reason", "node", "running_inputs", "started_at", "served", "web_address"]  # fmt: skip
        return [dict(zip(keys, (*r[:3], shown_tag(r[3]), *r[4:]))) for r in rows]

    def count_logs(self, app_id: str, after: int, before: int) -> int:
        """How many entries of an app lie between two sequence numbers (what a tail left out)."""
        row = self.db.execute(
            "SELECT COUNT(*) FROM logs WHERE app_id=? AND seq>? AND seq<?", (app_id, after, before)
        ).fetchone()
        return int(row[0])

    def logs(
        self, app_id: str | None, container_id: str | None, since: int, tail: int | None = None,
        since_ts: float = 0.0, limit: int = 5000,
    ) -> list[tuple[int, str, str, str | None]]:  # fmt: skip
        """(seq, stream, text, container) of an app or a container: after ``since`` (and time ``since_ts``), or
        the last ``tail`` entries."""
        column, value = ("container_id", container_id) if container_id else ("app_id", app_id)
        where = f"{column}=? AND seq>? AND ts>=?"
        if tail is not None:
            rows = self.db.execute(
                f"SELECT seq, stream, data, container_id FROM logs WHERE {where} ORDER BY seq DESC LIMIT ?",
                (value, since, since_ts, tail),
            ).fetchall()
            return rows[::-1]
        return self.db.execute(
            f"SELECT seq, stream, data, container_id FROM logs WHERE {where} ORDER BY seq LIMIT ?",
            (value, since, since_ts, limit),
        ).fetchall()
