"""Rows of the ``secrets`` table: sealed values (opaque here: ``server/secrets.py`` seals and opens them)."""

from __future__ import annotations

import json
from collections.abc import Callable

from ..errors import Conflict, NotFound
from .database import Database


class SecretRows:
    def __init__(self, db: Database, clock: Callable[[], float]) -> None:
        self.db = db
        self.clock = clock

    def put(self, secret_id: str | None, name: str | None, sealed: bytes, keys: list[str], overwrite: bool) -> str:
        """Store a sealed secret under a new id (``secret_id``) or, named and ``overwrite``, in place of the old."""
        with self.db.tx() as db:
            existing = db.execute("SELECT id FROM secrets WHERE name=?", (name,)).fetchone() if name else None
            if existing and not overwrite:
                raise Conflict(f"a secret named {name!r} exists; pass --force to replace it")
            stored_id = existing[0] if existing else secret_id
            db.execute(
                "INSERT INTO secrets VALUES (?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET name=excluded.name, "
                "sealed=excluded.sealed, keys=excluded.keys, created_at=excluded.created_at",
                (stored_id, name, sealed, json.dumps(sorted(keys)), self.clock()),
            )
        return str(stored_id)

    def resolve(self, ref: str) -> str:
        """A secret's id from its id or name (KeyError: none)."""
        row = self.db.execute("SELECT id FROM secrets WHERE id=? OR name=?", (ref, ref)).fetchone()
        if row is None:
            raise NotFound(ref)
        return str(row[0])

    def sealed(self, secret_id: str) -> bytes:
        row = self.db.execute("SELECT sealed FROM secrets WHERE id=?", (secret_id,)).fetchone()
        if row is None:
            raise NotFound(secret_id)
        return bytes(row[0])

    def list(self) -> list[dict[str, object]]:
        """Named secrets: name, keys and creation time (never values)."""
        rows = self.db.execute(
            "SELECT name, keys, created_at FROM secrets WHERE name IS NOT NULL ORDER BY name"
        ).fetchall()
        return [{"name": n, "keys": json.loads(k), "created_at": c} for n, k, c in rows]

    def delete(self, name: str) -> None:
        with self.db.tx() as db:
            if db.execute("DELETE FROM secrets WHERE name=?", (name,)).rowcount == 0:
                raise NotFound(name)
