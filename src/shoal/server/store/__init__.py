"""The store: every table and every SQL statement of the control plane, behind one object.

:class:`~.base.Store` is the interface the control plane, routes and auth use; :class:`~.sqlite.SQLiteStore` is
the implementation (one SQLite database in WAL mode). Its parts share one connection and each transaction:
``catalog`` (apps, deployments, listings), ``kv`` (Dicts, Queues), ``items`` (generator items), ``schedules``,
``secrets`` (sealed rows) and ``tokens`` (hashed rows). ``tests/contract`` is the suite any store must pass.
"""

from .base import Store
from .sqlite import SQLiteStore

__all__ = ["SQLiteStore", "Store", "open_store"]


def open_store(path: str) -> Store:
    """The store at ``path`` (created on first use)."""
    return SQLiteStore(path)
