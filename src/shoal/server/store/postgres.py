"""The store in a PostgreSQL database, which several servers (an active one and standbys) can share.

The same tables and statements as the SQLite store (``sql.py``), on a psycopg 3 connection; what a second server
needs beyond them is in ``docs/postgres.md``.
"""

from __future__ import annotations

from typing import Any

from ..clock import now as clock_now
from .database import PostgresDatabase
from .sql import SQLStore


class PostgresStore(SQLStore):
    """The control plane's state in the PostgreSQL database at ``dsn`` (``postgresql://user@host:port/db``)."""

    def __init__(self, dsn: str, clock: Any = clock_now) -> None:
        self.dsn = dsn
        super().__init__(PostgresDatabase(dsn), clock)
