"""One connection to the store's database, its transactions, and the queued-input counters kept with them.

The store's statements are written once, in the SQL SQLite and PostgreSQL share; :class:`Database` runs them on
either. :class:`SQLiteDatabase` runs them as written. :class:`PostgresDatabase` rewrites the few SQLite spellings
left (``?`` parameters, ``INSERT OR IGNORE``, two-argument ``max``, ``INDEXED BY`` hints, ``IS ?``, ``instr``)
once per statement, and creates the same tables with PostgreSQL's types (``store/schema.py``). What differs
beyond spelling is a method here: how a transaction begins, how a lease skips rows another server is leasing,
how a JSON field is read.

Every part of the store takes the :class:`Database` (never the store), so no store module imports another's.
"""

from __future__ import annotations

import contextlib
import logging
import re
import sqlite3
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol

from . import checkpoints, schema

log = logging.getLogger("shoal.store")


class Cursor(Protocol):
    """What a statement returns, on either database."""

    @property
    def rowcount(self) -> int: ...
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...
    def __iter__(self) -> Iterator[Any]: ...


class Database:
    """A connection (one per store) and its transactions."""

    dialect = ""
    skip_locked = ""  # appended to the lease's SELECT: rows another server's transaction is leasing are passed over

    def __init__(self) -> None:
        # PENDING inputs per function, kept with each commit so that a scheduler tick does not count the queue
        # (a full scan: 20 ms at 100,000 inputs, 10 times a second); the store recounts them at open and now and then
        self.queued: Counter[str] = Counter()
        self.queued_delta: Counter[str] = Counter()  # this transaction's changes, applied when it commits
        self.recounted = 0.0
        self._lock = threading.RLock()  # one transaction at a time on the one connection

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        raise NotImplementedError

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """Run ``sql`` once per row."""
        raise NotImplementedError

    def insert_new(self, sql: str, rows: Sequence[Sequence[Any]], key: tuple[int, int]) -> Sequence[Sequence[Any]]:
        """Run an ``INSERT OR IGNORE`` of ``rows`` (its key: ``call_id, idx``, at positions ``key`` of a row);
        returns the rows that were new."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def _begin(self) -> None:
        raise NotImplementedError

    def _commit(self) -> None:
        raise NotImplementedError

    def _rollback(self) -> None:
        raise NotImplementedError

    @contextmanager
    def tx(self) -> Iterator[Database]:
        """One transaction: committed when the block ends, rolled back (counters too) when it raises."""
        with self._lock:
            self._begin()
            try:
                yield self
            except BaseException:
                self.queued_delta.clear()
                self._rollback()
                raise
            try:
                self._commit()
            except BaseException:
                self.queued_delta.clear()
                raise
            if self.queued_delta:
                self.queued.update(self.queued_delta)
                self.queued_delta.clear()

    def has_pending(self, function_id: str) -> bool:
        """Whether the function has PENDING inputs, by the counters (this transaction's changes included)."""
        return self.queued[function_id] + self.queued_delta[function_id] > 0

    def recount(self) -> None:
        """Count the PENDING inputs of every function from the table (at open, and as a periodic check)."""
        counted = Counter({fid: int(n) for fid, n in self.execute(
            "SELECT function_id, SUM(count) FROM inputs WHERE state='PENDING' GROUP BY function_id"
        )})  # fmt: skip
        kept = +self.queued
        if self.recounted and kept != counted:
            log.warning("queued-input counters drifted (kept %s, counted %s); corrected", dict(kept), dict(counted))
        self.queued = counted
        self.recounted = time.monotonic()

    def describe(self) -> str:
        raise NotImplementedError

    def serialize(self, name: str) -> None:
        """Hold a lock named ``name`` until this transaction ends (one writer of the queue's row ids at a time)."""

    def json_number(self, column: str, key: str) -> str:
        """An expression: the number at ``key`` of the JSON object in ``column``."""
        return f"json_extract({column}, '$.{key}')"


class SQLiteDatabase(Database):
    """A SQLite file in WAL mode; transactions take the write lock at once (``BEGIN IMMEDIATE``)."""

    dialect = "sqlite"

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.conn.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode: a commit survives a crash of the process, not necessarily a power loss.
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.execute("PRAGMA busy_timeout=5000")
        self.conn.execute("PRAGMA wal_autocheckpoint=0")  # checkpoints run on their own thread (checkpoints.py)
        self.conn.execute(f"PRAGMA journal_size_limit={checkpoints.WAL_KEEP}")  # a burst's WAL is cut back to this
        schema.create_sqlite(self.conn)

    @property
    def gate(self) -> threading.RLock:
        """Held by each statement and transaction. The checkpoint thread holds it while it restarts the WAL (which
        takes SQLite's write lock): a statement then waits on this lock, woken the moment it is free, instead of
        finding SQLite's lock taken and sleeping in its busy handler (1, 2, 5, 10, ... ms)."""
        return self._lock

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        with self._lock:
            return self.conn.execute(sql, params)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        with self._lock:
            self.conn.executemany(sql, rows)

    def insert_new(self, sql: str, rows: Sequence[Sequence[Any]], key: tuple[int, int]) -> Sequence[Sequence[Any]]:
        with self._lock:
            return self._insert_new(sql, rows)

    def _insert_new(self, sql: str, rows: Sequence[Sequence[Any]]) -> Sequence[Sequence[Any]]:
        self.conn.execute("SAVEPOINT insert_new")
        before = self.conn.total_changes
        self.conn.executemany(sql, rows)
        if self.conn.total_changes - before == len(rows):  # the usual case: every row is new, in one statement
            new = rows
        else:  # some were there: find which rows are new, one by one
            self.conn.execute("ROLLBACK TO SAVEPOINT insert_new")
            new = [r for r in rows if self.conn.execute(sql, r).rowcount > 0]
        self.conn.execute("RELEASE SAVEPOINT insert_new")
        return new

    def close(self) -> None:
        self.conn.close()

    def describe(self) -> str:
        return f"sqlite ({self.path})"

    def _begin(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")

    def _commit(self) -> None:
        self.conn.execute("COMMIT")

    def _rollback(self) -> None:
        if self.conn.in_transaction:  # SQLite already rolled back on some errors (e.g. a full disk)
            self.conn.execute("ROLLBACK")


class PostgresDatabase(Database):
    """A PostgreSQL database (psycopg 3), shared by every server over it; statements rewritten once each."""

    dialect = "postgresql"
    skip_locked = " FOR UPDATE SKIP LOCKED"

    def __init__(self, dsn: str) -> None:
        super().__init__()
        import psycopg  # the postgres extra: imported only by a server that uses PostgreSQL

        self.dsn = dsn
        self.conn = psycopg.connect(dsn, autocommit=True)
        self.conn.adapters.register_loader("numeric", _numeric_loader())  # SUM() of integers: an int, not a Decimal
        self._sql: dict[str, str] = {}
        self._pipeline: Any = None  # a transaction's pipeline (its context manager)
        self._sync: Any = None
        try:
            with self.conn.transaction():
                self.serialize("shoal.schema")  # two servers opening a fresh database create its tables once
                schema.create_postgres(self.conn)
        except BaseException:
            self.conn.close()
            raise

    def _translate(self, sql: str) -> str:
        found = self._sql.get(sql)
        if found is None:
            found = self._sql[sql] = to_postgres(sql)
        return found

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        return self.conn.execute(self._translate(sql), params)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            with self.conn.cursor() as cur:
                cur.executemany(self._translate(sql), rows)

    def insert_new(self, sql: str, rows: Sequence[Sequence[Any]], key: tuple[int, int]) -> Sequence[Sequence[Any]]:
        """One statement per 500 rows (``VALUES (...), (...) ... RETURNING call_id, idx``): one round trip."""
        head, _, values = self._translate(sql).partition(" VALUES ")
        tail = " ON CONFLICT DO NOTHING"
        values = values.removesuffix(tail)
        new: list[Sequence[Any]] = []
        for start in range(0, len(rows), 500):
            part = rows[start : start + 500]
            statement = f"{head} VALUES {', '.join([values] * len(part))}{tail} RETURNING call_id, idx"
            found = set(self.conn.execute(statement, [v for r in part for v in r]).fetchall())
            new += [r for r in part if (r[key[0]], r[key[1]]) in found]
        return new

    def close(self) -> None:
        self.conn.close()

    def _begin(self) -> None:
        # pipeline mode: statements go out without waiting for each answer; a transaction waits on the network only
        # where it reads a result (a lease's SELECT, a RETURNING) and at its commit
        self._pipeline = self.conn.pipeline()
        pipeline = self._pipeline.__enter__()
        self._sync = pipeline.sync
        self.conn.execute("BEGIN")

    def _commit(self) -> None:
        pipeline, self._pipeline = self._pipeline, None
        try:
            self.conn.execute("COMMIT")
            self._sync()  # an error of any statement of the transaction is raised here, before it counts as done
        except BaseException as exc:
            self._end_pipeline(pipeline, exc)
            if not self.conn.closed and self.conn.info.transaction_status != 0:  # not IDLE: still in it
                self.conn.execute("ROLLBACK")
            raise
        pipeline.__exit__(None, None, None)

    def _rollback(self) -> None:
        pipeline, self._pipeline = self._pipeline, None
        if pipeline is not None:
            self._end_pipeline(pipeline, RuntimeError("rolled back"))
        if not self.conn.closed and self.conn.info.transaction_status != 0:
            self.conn.execute("ROLLBACK")

    @staticmethod
    def _end_pipeline(pipeline: Any, exc: BaseException) -> None:
        with contextlib.suppress(Exception):  # the pipeline may be aborted already: the transaction is over anyway
            pipeline.__exit__(type(exc), exc, exc.__traceback__)

    def describe(self) -> str:
        info = self.conn.info
        return f"postgresql ({info.user}@{info.host}:{info.port}/{info.dbname})"  # never the password

    def serialize(self, name: str) -> None:
        self.conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (name,))

    def json_number(self, column: str, key: str) -> str:
        return f"({column}::jsonb->>'{key}')::float8"


def _numeric_loader() -> type:
    """A loader of PostgreSQL's ``numeric`` (what ``SUM`` of integers returns) as an int, or a float if it has a
    fraction, as SQLite returns them."""
    from psycopg.adapt import Loader

    class NumericLoader(Loader):
        def load(self, data: Any) -> int | float:
            text = bytes(data).decode()
            return float(text) if any(c in text for c in ".eEN") else int(text)

    return NumericLoader


# ---- SQLite's spellings in PostgreSQL's ---------------------------------------------------------------

_REWRITES = [
    (re.compile(r"\s+INDEXED BY \w+"), ""),  # SQLite's index hints: PostgreSQL's planner chooses for itself
    (re.compile(r"\bmax\(([^(),]+),\s*([^(),]+)\)", re.IGNORECASE), r"GREATEST(\1, \2)"),  # the scalar max
    (re.compile(r"\binstr\("), "strpos("),
    (re.compile(r" IS \?"), " IS NOT DISTINCT FROM ?"),
]


def to_postgres(sql: str) -> str:
    """A statement in SQLite's spelling, in PostgreSQL's."""
    ignore = sql.lstrip().upper().startswith("INSERT OR IGNORE")
    if ignore:
        sql = re.sub(r"INSERT OR IGNORE", "INSERT", sql, count=1, flags=re.IGNORECASE)
    for pattern, replacement in _REWRITES:
        sql = pattern.sub(replacement, sql)
    if ignore:
        head, sep, tail = sql.partition(" RETURNING ")
        sql = f"{head} ON CONFLICT DO NOTHING{sep}{tail}"
    return sql.replace("%", "%%").replace("?", "%s")


def store_errors() -> tuple[type[BaseException], ...]:
    """The exceptions a store raises when its database fails (nothing of the transaction was applied): SQLite's,
    and PostgreSQL's once a PostgreSQL store has imported its driver (never imported for that alone: importing
    psycopg costs an embedded server's start ~0.1 s)."""
    psycopg = sys.modules.get("psycopg")
    return (sqlite3.Error,) if psycopg is None else (sqlite3.Error, psycopg.Error)
