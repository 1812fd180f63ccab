"""Every table of the store, created in one place (``CREATE ... IF NOT EXISTS``: opening is idempotent).

The tables are written in SQLite's types; :func:`create_postgres` creates the same ones in PostgreSQL's (64-bit
integers, doubles, ``bytea``, text compared byte by byte as SQLite does) and gives each table without an integer
key the ``rowid`` column SQLite gives it implicitly (the queue's order, insertion order)."""

from __future__ import annotations

import re
import sqlite3
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS apps (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, state TEXT NOT NULL, created_at REAL NOT NULL, stopped_at REAL,
    mode TEXT NOT NULL DEFAULT 'ephemeral', client_seen REAL, version INTEGER NOT NULL DEFAULT 0, stop_reason TEXT
);
CREATE INDEX IF NOT EXISTS apps_name ON apps(name);
CREATE TABLE IF NOT EXISTS deployments (
    app_id TEXT NOT NULL, version INTEGER NOT NULL, created_at REAL NOT NULL, functions TEXT NOT NULL,
    PRIMARY KEY (app_id, version)
);
CREATE TABLE IF NOT EXISTS functions (
    id TEXT PRIMARY KEY, app_id TEXT NOT NULL, tag TEXT NOT NULL, spec TEXT NOT NULL, pickled BLOB,
    created_at REAL NOT NULL, startup_failures INTEGER NOT NULL DEFAULT 0,
    last_startup_failure REAL NOT NULL DEFAULT 0, startup_error TEXT
);
CREATE TABLE IF NOT EXISTS calls (
    id TEXT PRIMARY KEY, function_id TEXT NOT NULL, app_id TEXT NOT NULL, kind TEXT NOT NULL,
    parent_input TEXT, created_at REAL NOT NULL, num_inputs INTEGER, submitted INTEGER NOT NULL DEFAULT 0,
    done INTEGER NOT NULL DEFAULT 0, failed INTEGER NOT NULL DEFAULT 0, cancelled INTEGER NOT NULL DEFAULT 0,
    expired INTEGER NOT NULL DEFAULT 0, finished_at REAL
);
CREATE INDEX IF NOT EXISTS calls_app ON calls(app_id);
CREATE INDEX IF NOT EXISTS calls_finished ON calls(finished_at);
CREATE TABLE IF NOT EXISTS inputs (
    call_id TEXT NOT NULL, idx INTEGER NOT NULL, function_id TEXT NOT NULL, state TEXT NOT NULL,
    payload BLOB NOT NULL, leases INTEGER NOT NULL DEFAULT 0, failures INTEGER NOT NULL DEFAULT 0,
    isolate INTEGER NOT NULL DEFAULT 0, container_id TEXT, leased_at REAL, not_before REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (call_id, idx)
);
CREATE INDEX IF NOT EXISTS inputs_queue ON inputs(function_id, state);
CREATE INDEX IF NOT EXISTS inputs_container ON inputs(container_id);
CREATE INDEX IF NOT EXISTS inputs_waiting ON inputs(not_before) WHERE not_before > 0;
CREATE TABLE IF NOT EXISTS outputs (
    seq INTEGER PRIMARY KEY, call_id TEXT NOT NULL, idx INTEGER NOT NULL, status TEXT NOT NULL,
    data BLOB NOT NULL, lease INTEGER NOT NULL, created_at REAL NOT NULL, UNIQUE (call_id, idx)
);
CREATE INDEX IF NOT EXISTS outputs_call_seq ON outputs(call_id, seq);
CREATE TABLE IF NOT EXISTS containers (
    id TEXT PRIMARY KEY, function_id TEXT NOT NULL, app_id TEXT NOT NULL, state TEXT NOT NULL, pid INTEGER,
    created_at REAL NOT NULL, last_seen REAL NOT NULL, last_active REAL NOT NULL, stop_reason TEXT
);
CREATE INDEX IF NOT EXISTS containers_state ON containers(state);
CREATE TABLE IF NOT EXISTS logs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, app_id TEXT NOT NULL, call_id TEXT, input_idx INTEGER,
    container_id TEXT, stream TEXT NOT NULL, data TEXT NOT NULL, ts REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS logs_app ON logs(app_id, seq);
CREATE INDEX IF NOT EXISTS logs_container ON logs(container_id, seq);
CREATE INDEX IF NOT EXISTS functions_app ON functions(app_id, tag);
CREATE TABLE IF NOT EXISTS gen_items (
    call_id TEXT NOT NULL, idx INTEGER NOT NULL, seq INTEGER NOT NULL, data BLOB NOT NULL,
    PRIMARY KEY (call_id, idx, seq)
);
-- Dicts and Queues: keys and values are opaque bytes (pickled by the SDK)
CREATE TABLE IF NOT EXISTS kv_objects (
    id TEXT PRIMARY KEY, kind TEXT NOT NULL, name TEXT, created_at REAL NOT NULL, UNIQUE (kind, name)
);
CREATE TABLE IF NOT EXISTS dict_items (
    dict_id TEXT NOT NULL, key BLOB NOT NULL, value BLOB NOT NULL, PRIMARY KEY (dict_id, key)
);
CREATE TABLE IF NOT EXISTS queue_items (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, queue_id TEXT NOT NULL, partition TEXT NOT NULL, value BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS queue_items_part ON queue_items(queue_id, partition, seq);
-- secrets: values sealed with the server's key (server/secrets.py); names and keys readable
CREATE TABLE IF NOT EXISTS secrets (
    id TEXT PRIMARY KEY, name TEXT UNIQUE, sealed BLOB NOT NULL, keys TEXT NOT NULL, created_at REAL NOT NULL
);
-- issued client tokens, hashed; bound to the admin token they were issued under
CREATE TABLE IF NOT EXISTS tokens (
    name TEXT PRIMARY KEY, hash TEXT NOT NULL UNIQUE, created_at REAL NOT NULL, revoked_at REAL,
    issuer TEXT NOT NULL DEFAULT ''
);
-- web endpoints: a label keeps its port (its URL) across redeploys and restarts
CREATE TABLE IF NOT EXISTS endpoints (
    label TEXT PRIMARY KEY, app_id TEXT NOT NULL, function_id TEXT NOT NULL, port INTEGER NOT NULL
);
-- attempts of an input that ended without its result (a retried failure, a crash): its last attempt is its output
CREATE TABLE IF NOT EXISTS attempts (
    call_id TEXT NOT NULL, idx INTEGER NOT NULL, lease INTEGER NOT NULL, container_id TEXT, status TEXT NOT NULL,
    duration REAL, error_type TEXT, error_message TEXT, ended_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS attempts_input ON attempts(call_id, idx);
-- per-function histograms (server/metrics.py): execution time, queue wait, cold start; kept across restarts
CREATE TABLE IF NOT EXISTS function_metrics (
    function_id TEXT NOT NULL, metric TEXT NOT NULL, bucket INTEGER NOT NULL, n INTEGER NOT NULL,
    PRIMARY KEY (function_id, metric, bucket)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS logs_call ON logs(call_id, input_idx, seq);
CREATE INDEX IF NOT EXISTS calls_function ON calls(function_id, finished_at);
CREATE INDEX IF NOT EXISTS calls_parent ON calls(parent_input) WHERE parent_input IS NOT NULL;
-- payload blobs in use: by a call's inputs ('in') or its results and generator items ('out') (store/blob_refs.py)
CREATE TABLE IF NOT EXISTS blob_refs (
    blob_id TEXT NOT NULL, call_id TEXT NOT NULL, kind TEXT NOT NULL, PRIMARY KEY (blob_id, call_id, kind)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS blob_refs_call ON blob_refs(call_id, kind);
CREATE TABLE IF NOT EXISTS blob_orphans (blob_id TEXT PRIMARY KEY, since REAL NOT NULL);
-- the payloads of inputs that ended without success, kept while the call's results are (FunctionCall.retry_failed)
CREATE TABLE IF NOT EXISTS kept_inputs (
    call_id TEXT NOT NULL, idx INTEGER NOT NULL, count INTEGER NOT NULL, payload BLOB NOT NULL,
    PRIMARY KEY (call_id, idx)
);
-- resources over time (server/sampler.py): each container's CPU, memory and GPU; each unfinished call's progress
CREATE TABLE IF NOT EXISTS container_samples (
    container_id TEXT NOT NULL, function_id TEXT NOT NULL, at REAL NOT NULL, cpu REAL NOT NULL,
    memory_mib REAL NOT NULL, gpu REAL, gpu_memory_mib REAL
);
CREATE INDEX IF NOT EXISTS container_samples_container ON container_samples(container_id, at);
CREATE INDEX IF NOT EXISTS container_samples_function ON container_samples(function_id, at);
CREATE TABLE IF NOT EXISTS call_samples (
    call_id TEXT NOT NULL, at REAL NOT NULL, done INTEGER NOT NULL, containers INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS call_samples_call ON call_samples(call_id, at);
CREATE INDEX IF NOT EXISTS call_samples_at ON call_samples(at);
CREATE INDEX IF NOT EXISTS container_samples_at ON container_samples(at);
CREATE TABLE IF NOT EXISTS schedules (
    function_id TEXT PRIMARY KEY, app_id TEXT NOT NULL, tag TEXT NOT NULL, spec TEXT NOT NULL, anchor REAL NOT NULL,
    next_fire REAL NOT NULL, last_fire REAL, last_call TEXT
);
"""


def create_sqlite(db: sqlite3.Connection) -> None:
    """Create what is missing, and bring tables of older stores up to date."""
    db.executescript(SCHEMA)
    for table, column, kind in ADDED_COLUMNS:
        if column not in [r[1] for r in db.execute(f"PRAGMA table_info({table})")]:
            db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
    db.executescript(ON_ADDED_COLUMNS)


ADDED_COLUMNS = [  # (table, column, type) added since a store was first written; old stores get them on open
    ("tokens", "issuer", "TEXT NOT NULL DEFAULT ''"),  # tokens from before they were bound to an issuer stop working
    ("containers", "kill_reason", "TEXT"),  # why the control plane is killing it (lifecycle.Intent)
    ("containers", "kill_status", "TEXT"),
    ("containers", "kill_charge", "INTEGER"),
    ("containers", "web_port", "INTEGER"),  # where a web function's container serves its app: this port ...
    ("containers", "web_host", "TEXT"),  # ... of this address (NULL: 127.0.0.1), its node's on another machine
    ("containers", "node", "TEXT"),  # where it runs: this machine's name, or a Ray node
    ("containers", "started_at", "REAL"),  # when its function was loaded (ready to take inputs)
    ("containers", "served", "INTEGER NOT NULL DEFAULT 0"),  # inputs it reported
    ("inputs", "queued_at", "REAL NOT NULL DEFAULT 0"),  # when it became ready to lease (its queue wait's start)
    ("outputs", "container_id", "TEXT"),  # what the dashboard shows of an input's last attempt
    ("outputs", "duration", "REAL"),
    ("outputs", "error_type", "TEXT"),
    ("outputs", "error_message", "TEXT"),
    ("outputs", "traceback", "TEXT"),
    # chunk-level rows: a row of ``count`` > 1 holds inputs (or successful outputs) idx .. idx+count-1, its payload
    # (data) a frame of theirs (protocol/chunks.py); a row of one keeps its payload as it is
    ("inputs", "count", "INTEGER NOT NULL DEFAULT 1"),
    ("outputs", "count", "INTEGER NOT NULL DEFAULT 1"),
    ("calls", "idem_key", "TEXT"),  # a caller's key for the call (spawn once per key): unique per app while kept
    ("calls", "expected", "INTEGER"),  # how many inputs the caller said it has (a list's len) before all are in
]

ON_ADDED_COLUMNS = """
CREATE INDEX IF NOT EXISTS outputs_failed ON outputs(call_id, error_type, error_message) WHERE status!='SUCCESS';
CREATE UNIQUE INDEX IF NOT EXISTS calls_key ON calls(app_id, idem_key) WHERE idem_key IS NOT NULL;
"""


ROWID_LOOKUPS = {"inputs"}  # tables whose rowid is looked up (an index on it), not only ordered by


def create_postgres(conn: Any) -> None:
    """The same tables and indexes in a PostgreSQL database (``conn``: a psycopg connection, in a transaction)."""
    added: dict[str, list[str]] = {}
    for table, column, kind in ADDED_COLUMNS:
        added.setdefault(table, []).append(f"{column} {kind}")
    script = "\n".join(line for line in (SCHEMA + ON_ADDED_COLUMNS).splitlines() if not line.lstrip().startswith("--"))
    for statement in (s.strip() for s in script.split(";")):
        if statement.startswith("CREATE TABLE"):
            statement = _postgres_table(statement, added)
        if statement:
            conn.execute(statement)
    for table, column, kind in ADDED_COLUMNS:  # what a later version adds to a database an older one created
        conn.execute(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {column} {_postgres_types(kind)}")


def _postgres_table(statement: str, added: dict[str, list[str]]) -> str:
    name = statement.split("(", 1)[0].split()[-1]
    without_rowid = statement.endswith("WITHOUT ROWID")
    body = statement.removesuffix("WITHOUT ROWID").rstrip()
    assert body.endswith(")"), statement
    columns = [c for c in added.get(name, []) if f"{c.split()[0]} " not in body]  # some tables have them already
    if not without_rowid and "INTEGER PRIMARY KEY" not in body:
        columns.append("rowid BIGSERIAL" + (" UNIQUE" if name in ROWID_LOOKUPS else ""))
    if columns:
        body = body[:-1].rstrip() + ",\n    " + ", ".join(columns) + "\n)"
    return _postgres_types(body)


def _postgres_types(text: str) -> str:
    text = re.sub(r"INTEGER PRIMARY KEY( AUTOINCREMENT)?", "BIGSERIAL PRIMARY KEY", text)
    text = re.sub(r"\bINTEGER\b", "BIGINT", text)
    text = re.sub(r"\bREAL\b", "DOUBLE PRECISION", text)
    text = re.sub(r"\bBLOB\b", "BYTEA", text)
    return re.sub(r"\bTEXT\b", 'TEXT COLLATE "C"', text)
