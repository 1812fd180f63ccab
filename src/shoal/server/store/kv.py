"""Durable ``Dict`` and ``Queue`` objects in the store. Keys and values are opaque bytes (pickled by the SDK);
the server compares keys as bytes and never unpickles them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..._ids import new_id
from ..errors import Invalid, NotFound, TooLarge
from .database import Database

QUEUE_PARTITION_ITEMS = 5_000
QUEUE_ITEM_BYTES = 1024 * 1024
QUEUE_PARTITION_KEY_BYTES = 64
DICT_VALUE_BYTES = 64 * 1024 * 1024


# a Dict's put: an existing key keeps its place in the Dict's order (as in a Python dict), with the new value
PUT = "INSERT INTO dict_items VALUES (?, ?, ?) ON CONFLICT (dict_id, key) DO UPDATE SET value=excluded.value"
PUT_IF_MISSING = "INSERT OR IGNORE INTO dict_items VALUES (?, ?, ?)"


class Full(Exception):
    """A queue partition holds its maximum number of items."""


class KVTables:
    """Dicts and Queues."""

    def __init__(self, db: Database, clock: Callable[[], float]) -> None:
        self.db = db
        self.clock = clock

    # ---- objects --------------------------------------------------------------------------------

    def open(self, kind: str, name: str | None, create_if_missing: bool) -> str:
        """The id of the named object (created when allowed), or of a new anonymous (ephemeral) one."""
        if kind not in ("dict", "queue"):
            raise Invalid(f"unknown kind {kind!r}")
        if name is not None and not 1 <= len(name) <= 64:
            raise Invalid("a name is 1 to 64 characters")
        with self.db.tx() as db:
            if name is not None:
                row = db.execute("SELECT id FROM kv_objects WHERE kind=? AND name=?", (kind, name)).fetchone()
                if row:
                    return str(row[0])
                if not create_if_missing:
                    raise NotFound(f"{kind} {name!r}")
            object_id = new_id("app").replace("ap-", "di-" if kind == "dict" else "qu-")
            db.execute("INSERT INTO kv_objects VALUES (?, ?, ?, ?)", (object_id, kind, name, self.clock()))
            return object_id

    def exists(self, object_id: str, kind: str) -> bool:
        row = self.db.execute("SELECT 1 FROM kv_objects WHERE id=? AND kind=?", (object_id, kind)).fetchone()
        return row is not None

    def delete(self, object_id: str) -> None:
        with self.db.tx() as db:
            db.execute("DELETE FROM dict_items WHERE dict_id=?", (object_id,))
            db.execute("DELETE FROM queue_items WHERE queue_id=?", (object_id,))
            if db.execute("DELETE FROM kv_objects WHERE id=?", (object_id,)).rowcount == 0:
                raise NotFound(object_id)

    def names(self, kind: str) -> list[dict[str, Any]]:
        rows = self.db.execute(
            "SELECT id, name, created_at FROM kv_objects WHERE kind=? AND name IS NOT NULL ORDER BY name", (kind,)
        ).fetchall()
        return [{"id": i, "name": n, "created_at": c} for i, n, c in rows]

    # ---- dicts ----------------------------------------------------------------------------------

    def dict_op(self, dict_id: str, op: str, body: dict[str, Any]) -> Any:
        """One dict operation, atomically."""
        db = self.db
        if op == "get":
            row = db.execute(
                "SELECT value FROM dict_items WHERE dict_id=? AND key=?", (dict_id, body["key"])
            ).fetchone()
            return {"found": row is not None, "value": row[0] if row else None}
        if op == "contains":
            row = db.execute("SELECT 1 FROM dict_items WHERE dict_id=? AND key=?", (dict_id, body["key"])).fetchone()
            return {"found": row is not None}
        if op == "len":
            return {"len": db.execute("SELECT COUNT(*) FROM dict_items WHERE dict_id=?", (dict_id,)).fetchone()[0]}
        if op in ("keys", "values", "items"):
            rows = db.execute("SELECT key, value FROM dict_items WHERE dict_id=? ORDER BY rowid", (dict_id,)).fetchall()
            return {"items": [list(r) for r in rows]}
        with self.db.tx() as tx:
            if op == "put":
                _check_size(body["value"], DICT_VALUE_BYTES, "a Dict value")
                sql = PUT_IF_MISSING if body.get("skip_if_exists") else PUT
                cur = tx.execute(sql, (dict_id, body["key"], body["value"]))
                return {"created": cur.rowcount > 0}
            if op == "update":
                for _, value in body["items"]:
                    _check_size(value, DICT_VALUE_BYTES, "a Dict value")
                tx.executemany(PUT,
                               [(dict_id, k, v) for k, v in body["items"]])  # fmt: skip
                return {}
            if op == "pop":
                row = tx.execute(
                    "SELECT value FROM dict_items WHERE dict_id=? AND key=?", (dict_id, body["key"])
                ).fetchone()
                tx.execute("DELETE FROM dict_items WHERE dict_id=? AND key=?", (dict_id, body["key"]))
                return {"found": row is not None, "value": row[0] if row else None}
            if op == "clear":
                tx.execute("DELETE FROM dict_items WHERE dict_id=?", (dict_id,))
                return {}
        raise Invalid(f"unknown Dict operation {op!r}")

    # ---- queues ---------------------------------------------------------------------------------

    def put(self, queue_id: str, partition: str, values: list[bytes]) -> None:
        """Append values to a partition, all or none; raises Full when they do not fit."""
        _check_partition(partition)
        for v in values:
            _check_size(v, QUEUE_ITEM_BYTES, "a Queue item")
        with self.db.tx() as db:
            count = db.execute(
                "SELECT COUNT(*) FROM queue_items WHERE queue_id=? AND partition=?", (queue_id, partition)
            ).fetchone()[0]
            if count + len(values) > QUEUE_PARTITION_ITEMS:
                raise Full(f"the partition holds {count} of at most {QUEUE_PARTITION_ITEMS} items")
            db.executemany("INSERT INTO queue_items (queue_id, partition, value) VALUES (?, ?, ?)",
                           [(queue_id, partition, v) for v in values])  # fmt: skip

    def take(self, queue_id: str, partition: str, n: int) -> list[bytes]:
        """Remove and return up to ``n`` values, oldest first (each value is given to exactly one taker)."""
        _check_partition(partition)
        with self.db.tx() as db:
            rows = db.execute(
                "SELECT seq, value FROM queue_items WHERE queue_id=? AND partition=? ORDER BY seq LIMIT ?",
                (queue_id, partition, n),
            ).fetchall()
            db.executemany("DELETE FROM queue_items WHERE seq=?", [(r[0],) for r in rows])
        return [r[1] for r in rows]

    def scan(self, queue_id: str, partition: str, after: int, limit: int = 1000) -> list[tuple[int, bytes]]:
        """Items after position ``after``, oldest first, left in place."""
        return self.db.execute(
            "SELECT seq, value FROM queue_items WHERE queue_id=? AND partition=? AND seq>? ORDER BY seq LIMIT ?",
            (queue_id, partition, after, limit),
        ).fetchall()

    def length(self, queue_id: str, partition: str | None) -> int:
        if partition is None:
            return int(self.db.execute("SELECT COUNT(*) FROM queue_items WHERE queue_id=?", (queue_id,)).fetchone()[0])
        return int(self.db.execute(
            "SELECT COUNT(*) FROM queue_items WHERE queue_id=? AND partition=?", (queue_id, partition)
        ).fetchone()[0])  # fmt: skip

    def peek(self, object_id: str, limit: int = 20) -> list[tuple[bytes | None, bytes]]:
        """The first (key, value) items of a Dict, or (None, value) of a Queue (every partition, oldest first)."""
        rows = self.db.execute(
            "SELECT key, value FROM dict_items WHERE dict_id=? LIMIT ?", (object_id, limit)
        ).fetchall()
        if rows:
            return [(k, v) for k, v in rows]
        rows = self.db.execute(
            "SELECT value FROM queue_items WHERE queue_id=? ORDER BY seq LIMIT ?", (object_id, limit)
        ).fetchall()
        return [(None, r[0]) for r in rows]

    def size(self, object_id: str) -> int:
        """How many items a Dict or Queue holds."""
        return int(self.db.execute(
            "SELECT (SELECT COUNT(*) FROM dict_items WHERE dict_id=?) + "
            "(SELECT COUNT(*) FROM queue_items WHERE queue_id=?)", (object_id, object_id)
        ).fetchone()[0])  # fmt: skip

    def clear(self, queue_id: str, partition: str | None) -> None:
        with self.db.tx() as db:
            if partition is None:
                db.execute("DELETE FROM queue_items WHERE queue_id=?", (queue_id,))
            else:
                db.execute("DELETE FROM queue_items WHERE queue_id=? AND partition=?", (queue_id, partition))


def _check_size(value: bytes, limit: int, what: str) -> None:
    if not isinstance(value, bytes):
        raise Invalid(f"{what} must be bytes")
    if len(value) > limit:
        raise TooLarge(f"{what} is {len(value)} bytes, over the limit of {limit} bytes")


def _check_partition(partition: str) -> None:
    if len(partition.encode()) > QUEUE_PARTITION_KEY_BYTES:
        raise Invalid(f"a partition key is at most {QUEUE_PARTITION_KEY_BYTES} bytes")
