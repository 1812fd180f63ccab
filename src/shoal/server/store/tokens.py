"""Rows of the ``tokens`` table: issued client tokens, by hash, bound to the admin token that issued them."""

from __future__ import annotations

from collections.abc import Callable

from ..errors import Conflict, NotFound
from .database import Database


class TokenRows:
    def __init__(self, db: Database, clock: Callable[[], float]) -> None:
        self.db = db
        self.clock = clock

    def add(self, name: str, token_hash: str, issuer: str) -> None:
        with self.db.tx() as db:
            if db.execute("SELECT 1 FROM tokens WHERE name=?", (name,)).fetchone():
                raise Conflict(f"a token named {name!r} exists; pick another name")
            db.execute("INSERT INTO tokens VALUES (?, ?, ?, NULL, ?)", (name, token_hash, self.clock(), issuer))

    def revoke(self, name: str) -> None:
        with self.db.tx() as db:
            cur = db.execute("UPDATE tokens SET revoked_at=? WHERE name=? AND revoked_at IS NULL", (self.clock(), name))
            if cur.rowcount == 0:
                raise NotFound(name)

    def list(self) -> list[dict[str, object]]:
        rows = self.db.execute("SELECT name, created_at, revoked_at FROM tokens ORDER BY created_at").fetchall()
        return [{"name": n, "created_at": c, "revoked_at": r} for n, c, r in rows]

    def valid(self, token_hash: str, issuer: str) -> str | None:
        """The name of the unrevoked token with this hash issued under ``issuer``."""
        row = self.db.execute(
            "SELECT name FROM tokens WHERE hash=? AND revoked_at IS NULL AND issuer=?", (token_hash, issuer)
        ).fetchone()
        return str(row[0]) if row else None
