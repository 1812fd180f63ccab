"""Content-addressed blob store on disk: large payloads and source bundles."""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path

from .errors import Invalid

_BLOB_ID = re.compile(r"^[0-9a-f]{64}$")


class BlobStore:
    """Blobs live at ``<root>/<sha256>``; writes are atomic (temp file + rename)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def valid_id(blob_id: str) -> bool:
        return bool(_BLOB_ID.match(blob_id))

    def path(self, blob_id: str) -> Path:
        if not self.valid_id(blob_id):
            raise Invalid(f"not a blob id: {blob_id!r}")
        return self.root / blob_id

    def exists(self, blob_id: str) -> bool:
        return self.path(blob_id).exists()

    def put(self, blob_id: str, data: bytes) -> None:
        """Store ``data`` under its sha256; raises ValueError when the id does not match the content."""
        if hashlib.sha256(data).hexdigest() != blob_id:
            raise Invalid("blob content does not match its sha256 id")
        target = self.path(blob_id)
        if target.exists():
            return
        fd, tmp = tempfile.mkstemp(dir=self.root)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, target)

    def get(self, blob_id: str) -> bytes:
        return self.path(blob_id).read_bytes()
