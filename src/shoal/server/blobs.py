"""Content-addressed blob store on disk: large payloads and source bundles."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
import time
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
        """Store ``data`` under its sha256 (again: the same bytes, written now); raises :class:`Invalid` when the id
        does not match the content."""
        self.writer(blob_id).finish([data])

    def get(self, blob_id: str) -> bytes:
        return self.path(blob_id).read_bytes()

    def touch(self, blob_id: str) -> None:
        """Mark a blob as wanted now (a client asked whether it is here: it is about to use it)."""
        with contextlib.suppress(FileNotFoundError):
            os.utime(self.path(blob_id))

    def remove_unused(self, blob_ids: list[str], grace: float) -> tuple[int, list[str]]:
        """Delete those of ``blob_ids`` not written or asked for in the last ``grace`` seconds; returns how many
        were removed, and the ids of those kept for being written or asked for meanwhile."""
        removed, kept = 0, []
        cutoff = time.time() - grace
        for blob_id in blob_ids:
            path = self.path(blob_id)
            with contextlib.suppress(FileNotFoundError):
                if path.stat().st_mtime <= cutoff:
                    path.unlink()
                    removed += 1
                else:
                    kept.append(blob_id)
        return removed, kept

    def size(self, blob_id: str) -> int:
        return self.path(blob_id).stat().st_size

    def writer(self, blob_id: str) -> BlobWriter:
        """A blob written piece by piece (a request body as it arrives), checked against its id at the end."""
        return BlobWriter(self.path(blob_id))


class BlobWriter:
    """Writes a blob's pieces to a temporary file while hashing them; ``finish`` checks the hash and publishes it
    atomically. Pieces are plain writes: callers run them on a thread (hashing and writing release the GIL)."""

    def __init__(self, target: Path) -> None:
        self.target = target
        fd, self._tmp = tempfile.mkstemp(dir=target.parent)
        self._file = os.fdopen(fd, "wb")
        self._hash = hashlib.sha256()

    def write(self, pieces: list[bytes]) -> None:
        for piece in pieces:
            self._hash.update(piece)
            self._file.write(piece)

    def finish(self, pieces: list[bytes]) -> None:
        """Write the last pieces, then publish the blob; raises :class:`Invalid` when the content is not its id."""
        try:
            self.write(pieces)
            self._file.close()
            if self._hash.hexdigest() != self.target.name:
                raise Invalid("blob content does not match its sha256 id")
            os.replace(self._tmp, self.target)
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        self._file.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._tmp)
