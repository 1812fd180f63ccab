"""The embedded default: the store in one SQLite file (WAL), with checkpoints on their own thread."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..clock import now as clock_now
from .checkpoints import Checkpointer
from .database import SQLiteDatabase
from .sql import SQLStore


class SQLiteStore(SQLStore):
    """The control plane's state in a SQLite file at ``path`` (created on first use)."""

    def __init__(self, path: Path | str, clock: Any = clock_now) -> None:
        self.path = str(path)
        db = SQLiteDatabase(self.path)
        super().__init__(db, clock)
        self._checkpointer = Checkpointer(self.path, db.gate)

    def close(self) -> None:
        self._checkpointer.close()
        super().close()
