"""Secret values at rest: encrypted in the store with a key file only the server reads, handed out only to
containers (as environment variables), never in an API response or a log.

The cipher is stdlib-only: a SHA-256 counter-mode keystream with an HMAC-SHA256 tag (encrypt-then-MAC).
It keeps values out of copies of ``state.db`` (backups, bug reports); it is no defence against someone who
can read the state directory, where the key lives.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from pathlib import Path

from .._ids import new_id
from .store import Store

NAME_LIMIT = 64
TOTAL_LIMIT = 64 * 1024  # bytes of values in one secret


def _keystream(key: bytes, nonce: bytes, length: int) -> bytes:
    blocks = (hashlib.sha256(key + nonce + i.to_bytes(8, "big")).digest() for i in range(length // 32 + 1))
    return b"".join(blocks)[:length]


class SecretBox:
    def __init__(self, key_file: Path) -> None:
        if not key_file.exists():
            key_file.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(secrets.token_bytes(32))
        self.key = key_file.read_bytes()

    def seal(self, plain: bytes) -> bytes:
        nonce = secrets.token_bytes(16)
        body = bytes(a ^ b for a, b in zip(plain, _keystream(self.key, nonce, len(plain))))
        tag = hmac.new(self.key, nonce + body, hashlib.sha256).digest()
        return nonce + tag + body

    def open(self, sealed: bytes) -> bytes:
        nonce, tag, body = sealed[:16], sealed[16:48], sealed[48:]
        if not hmac.compare_digest(tag, hmac.new(self.key, nonce + body, hashlib.sha256).digest()):
            raise ValueError("a stored secret failed its integrity check (was the key file replaced?)")
        return bytes(a ^ b for a, b in zip(body, _keystream(self.key, nonce, len(body))))


class SecretStore:
    def __init__(self, store: Store, key_file: Path) -> None:
        self.store = store
        self.box = SecretBox(key_file)
        store.db.execute(
            "CREATE TABLE IF NOT EXISTS secrets (id TEXT PRIMARY KEY, name TEXT UNIQUE, sealed BLOB NOT NULL, "
            "keys TEXT NOT NULL, created_at REAL NOT NULL)"
        )

    def put(self, name: str | None, values: dict[str, str], overwrite: bool = False) -> str:
        """Store values (named, or anonymous for inline secrets); returns the secret's id."""
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in values.items()):
            raise ValueError("secret values must map strings to strings")
        if name is not None and not 0 < len(name) <= NAME_LIMIT:
            raise ValueError(f"a secret name is 1 to {NAME_LIMIT} characters")
        plain = json.dumps(values).encode()
        if len(plain) > TOTAL_LIMIT:
            raise ValueError(f"a secret holds at most {TOTAL_LIMIT} bytes of values")
        with self.store._tx() as db:
            existing = db.execute("SELECT id FROM secrets WHERE name=?", (name,)).fetchone() if name else None
            if existing and not overwrite:
                raise PermissionError(f"a secret named {name!r} exists; pass --force to replace it")
            secret_id = existing[0] if existing else new_id("secret")
            db.execute(
                "INSERT OR REPLACE INTO secrets VALUES (?, ?, ?, ?, ?)",
                (secret_id, name, self.box.seal(plain), json.dumps(sorted(values)), self.store.clock()),
            )
        return secret_id

    def resolve(self, ref: str) -> str:
        """A secret's id from its id or name."""
        row = self.store.db.execute("SELECT id FROM secrets WHERE id=? OR name=?", (ref, ref)).fetchone()
        if row is None:
            raise KeyError(ref)
        return str(row[0])

    def env(self, secret_ids: list[str]) -> dict[str, str]:
        """The environment variables of these secrets (later ones win), for a container only."""
        out: dict[str, str] = {}
        for secret_id in secret_ids:
            row = self.store.db.execute("SELECT sealed FROM secrets WHERE id=?", (secret_id,)).fetchone()
            if row is None:
                raise KeyError(secret_id)
            out.update(json.loads(self.box.open(row[0])))
        return out

    def list(self) -> list[dict[str, object]]:
        rows = self.store.db.execute(
            "SELECT name, keys, created_at FROM secrets WHERE name IS NOT NULL ORDER BY name"
        ).fetchall()
        return [{"name": n, "keys": json.loads(k), "created_at": c} for n, k, c in rows]

    def delete(self, name: str) -> None:
        with self.store._tx() as db:
            if db.execute("DELETE FROM secrets WHERE name=?", (name,)).rowcount == 0:
                raise KeyError(name)
