"""The store: every table and every SQL statement of the control plane, behind one object.

:class:`~.base.Store` is the interface the control plane, routes and auth use; :class:`~.sql.SQLStore` is
the implementation, over SQLite (:class:`~.sqlite.SQLiteStore`, one file in WAL mode: the default) or PostgreSQL
(:class:`~.postgres.PostgresStore`, which several servers can share). Its parts share one connection and each
transaction: ``catalog`` (apps, deployments, listings), ``kv`` (Dicts, Queues), ``items`` (generator items),
``schedules``, ``secrets`` (sealed rows) and ``tokens`` (hashed rows). ``tests/contract`` is the suite any store
must pass.
"""

from urllib.parse import urlsplit, urlunsplit

from ...config import is_shared_store
from .base import Store
from .sql import SQLStore
from .sqlite import SQLiteStore

__all__ = ["SQLStore", "SQLiteStore", "Store", "is_shared", "open_store", "redact_dsn"]


is_shared = is_shared_store  # (defined with the setting: the server decides on it before importing the store)


def redact_dsn(location: str) -> str:
    """A store's location as people may see it (logs, messages): without a password."""
    parts = urlsplit(location)
    if parts.password is None:
        return location
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def open_store(location: str) -> Store:
    """The store at ``location``: a ``postgresql://`` URL, or the path of a SQLite file (created on first use)."""
    if is_shared(location):
        from .postgres import PostgresStore

        return PostgresStore(location)
    return SQLiteStore(location)
