"""Rows of the ``secrets`` table: sealed values (opaque here: ``server/secrets.py`` seals and opens them)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from ..errors import Conflict, NotFound

if TYPE_CHECKING:
    from .sqlite import SQLiteStore


class SecretRows:
    def __init__(self, store: SQLiteStore) -> None:
        self.store = store

    def put(self, secret_id: str | None, name: str | None, sealed: bytes, keys: list[str], overwrite: bool) -> str:
        """Store a sealed secret under a new id (``secret_id``) or, named and ``overwrite``, in place of the old."""
        with self.store._tx() as db:
            existing = db.execute("SELECT id FROM secrets WHERE name=?", (name,)).fetchone() if name else None
            if existing and not overwrite:
                raise Conflict(f"a secret named {name!r} exists; pass --force to replace it")
            stored_id = existing[0] if existing else secret_id
            db.execute(
                "INSERT OR REPLACE INTO secrets VALUES (?, ?, ?, ?, ?)",
                (stored_id, name, sealed, json.dumps(sorted(keys)), self.store.clock()),
            )
        return str(stored_id)

    def resolve(self, ref: str) -> str:
        """A secret's id from its id or name (KeyError: none)."""
        row = self.store.db.execute("SELECT id FROM secrets WHERE id=? OR name=?", (ref, ref)).fetchone()
        if row is None:
            raise NotFound(ref)
        return str(row[0])

    def sealed(self, secret_id: str) -> bytes:
        row = self.store.db.execute("SELECT sealed FROM secrets WHERE id=?", (secret_id,)).fetchone()
        if row is None:
            raise NotFound(secret_id)
        return bytes(row[0])

    def list(self) -> list[dict[str, object]]:
        """Named secrets: name, keys and creation time (never values)."""
        rows = self.store.db.execute(
            "SELECT name, keys, created_at FROM secrets WHERE name IS NOT NULL ORDER BY name"
        ).fetchall()
        return [{"name": n, "keys": json.loads(k), "created_at": c} for n, k, c in rows]

    def delete(self, name: str) -> None:
        with self.store._tx() as db:
            if db.execute("DELETE FROM secrets WHERE name=?", (name,)).rowcount == 0:
                raise NotFound(name)
