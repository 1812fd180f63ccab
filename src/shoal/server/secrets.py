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
from .errors import Invalid
from .store.base import SecretsPart

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
            raise RuntimeError("a stored secret failed its integrity check (was the key file replaced?)")
        return bytes(a ^ b for a, b in zip(body, _keystream(self.key, nonce, len(body))))


class SecretStore:
    """Secrets as the control plane uses them: validated, sealed into the store, opened for containers only."""

    def __init__(self, rows: SecretsPart, key_file: Path) -> None:
        self.rows = rows
        self.box = SecretBox(key_file)

    def put(self, name: str | None, values: dict[str, str], overwrite: bool = False) -> str:
        """Store values (named, or anonymous for inline secrets); returns the secret's id."""
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in values.items()):
            raise Invalid("secret values must map strings to strings")
        if name is not None and not 0 < len(name) <= NAME_LIMIT:
            raise Invalid(f"a secret name is 1 to {NAME_LIMIT} characters")
        plain = json.dumps(values).encode()
        if len(plain) > TOTAL_LIMIT:
            raise Invalid(f"a secret holds at most {TOTAL_LIMIT} bytes of values")
        return self.rows.put(new_id("secret"), name, self.box.seal(plain), list(values), overwrite)

    def resolve(self, ref: str) -> str:
        """A secret's id from its id or name."""
        return self.rows.resolve(ref)

    def env(self, secret_ids: list[str]) -> dict[str, str]:
        """The environment variables of these secrets (later ones win), for a container only."""
        out: dict[str, str] = {}
        for secret_id in secret_ids:
            out.update(json.loads(self.box.open(self.rows.sealed(secret_id))))
        return out

    def list(self) -> list[dict[str, object]]:
        return self.rows.list()

    def delete(self, name: str) -> None:
        self.rows.delete(name)
