"""Store faults through the real ASGI app and a real SQLite file: disk full, a locked database, I/O errors.
The API answers a clear 5xx/507 (never a traceback or a hang), writes no partial rows, and recovers."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgpack
import pytest

from shoal.backends.base import Backend, ContainerSpec
from shoal.server.control import ControlPlane, Parts, ServerConfig
from shoal.server.routes import create_app


class NoContainers(Backend):
    """Capacity that never starts anything: these tests exercise the API and the store only."""

    async def launch(self, spec: ContainerSpec) -> None:
        return None

    async def terminate(self, container_id: str, grace: float) -> None:
        return None

    def list(self) -> list[str]:
        return []

    async def close(self) -> None:
        return None


@pytest.fixture
def plane(tmp_path: Path) -> Iterator[ControlPlane]:
    config = ServerConfig(tmp_path / "state", "http://127.0.0.1:1", None, 10.0, 3600.0, 10, 1 << 20)
    yield ControlPlane(config, NoContainers(), Parts.in_dir(config.state_dir))


def run(plane: ControlPlane, steps: Any) -> Any:
    async def main() -> Any:
        await plane.start()
        transport = httpx.ASGITransport(app=create_app(plane))
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://shoal") as client:
                return await steps(client)
        finally:
            await plane.stop()

    return asyncio.run(main())


SPEC = {"retries": {"max_retries": 0, "backoff_coefficient": 1.0, "initial_delay": 1.0, "max_delay": 1.0},
        "min_containers": 0, "max_containers": 1, "buffer_containers": 0, "scaledown_window": 60,
        "startup_timeout": 60, "timeout": 60}  # fmt: skip


async def register_function(client: httpx.AsyncClient) -> str:
    app_id = (await client.post("/apps", json={"name": "faults"})).json()["app_id"]
    resp = await client.post(f"/apps/{app_id}/functions", json={"tag": "f", "spec": SPEC})
    assert resp.status_code == 200, resp.text
    return str(resp.json()["function_id"])


def add_inputs(client: httpx.AsyncClient, call_id: str, start: int, n: int, size: int = 2000) -> Any:
    body = msgpack.packb({"start": start, "inputs": [b"I" + b"x" * size] * n})
    return client.post(f"/calls/{call_id}/inputs", content=body, headers={"content-type": "application/msgpack"})


def test_a_full_disk_is_answered_507_with_no_partial_rows_and_recovers(plane: ControlPlane):
    async def steps(client: httpx.AsyncClient) -> None:
        fid = await register_function(client)
        call_id = (await client.post(f"/functions/{fid}/calls", json={"kind": "map"})).json()["call_id"]
        pages = plane.store.db.execute("PRAGMA page_count").fetchone()[0]
        plane.store.db.execute(f"PRAGMA max_page_count={pages + 2}")  # the disk is (nearly) full
        resp = await add_inputs(client, call_id, 0, 200)
        assert resp.status_code == 507
        assert resp.json()["error"]["type"] == "ResourceExhaustedError"
        assert "disk is full" in resp.json()["error"]["message"]
        assert plane.store.db.execute("SELECT COALESCE(SUM(count), 0) FROM inputs").fetchone()[0] == 0  # all or nothing
        plane.store.db.execute("PRAGMA max_page_count=1073741823")  # space freed: no restart needed
        assert (await add_inputs(client, call_id, 0, 200)).status_code == 200
        assert plane.store.db.execute("SELECT SUM(count) FROM inputs").fetchone()[0] == 200

    run(plane, steps)


def test_a_locked_database_is_answered_503_with_retry_after(plane: ControlPlane, tmp_path: Path):
    async def steps(client: httpx.AsyncClient) -> None:
        await register_function(client)
        plane.store.db.execute("PRAGMA busy_timeout=100")
        other = sqlite3.connect(tmp_path / "state" / "state.db", isolation_level=None)
        other.execute("BEGIN EXCLUSIVE")  # another process holds the write lock
        try:
            resp = await client.post("/apps", json={"name": "blocked"})
        finally:
            other.execute("ROLLBACK")
            other.close()
        assert resp.status_code == 503
        assert resp.headers["retry-after"] == "1"
        assert "busy" in resp.json()["error"]["message"]
        assert (await client.post("/apps", json={"name": "after"})).status_code == 200

    run(plane, steps)


class FailingConnection:
    """Wraps the store's connection: every write fails with an I/O error while ``broken``."""

    def __init__(self, real: sqlite3.Connection) -> None:
        self.real = real
        self.broken = False

    def execute(self, sql: str, *args: Any) -> Any:
        if self.broken and sql.lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE")):
            raise sqlite3.OperationalError("disk I/O error")
        return self.real.execute(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def test_io_errors_are_answered_503_and_the_store_recovers(plane: ControlPlane):
    async def steps(client: httpx.AsyncClient) -> None:
        fid = await register_function(client)
        faulty = FailingConnection(plane.store.db.conn)  # type: ignore[attr-defined]
        plane.store.db.conn = faulty  # type: ignore[attr-defined]
        faulty.broken = True
        resp = await client.post(f"/functions/{fid}/calls", json={"kind": "map"})
        assert resp.status_code == 503
        assert "disk I/O error" in resp.json()["error"]["message"]
        assert "Traceback" not in resp.text
        faulty.broken = False
        assert (await client.post(f"/functions/{fid}/calls", json={"kind": "map"})).status_code == 200
        assert faulty.real.execute("SELECT COUNT(*) FROM calls").fetchone()[0] == 1

    run(plane, steps)


def test_mounts_are_refused_when_the_backend_cannot_mount(plane: ControlPlane):
    # Given a backend without mounts (NoContainers has none among its capabilities), When a function asks for one,
    # Then registering it is a 400 that says what to install
    async def steps(client: httpx.AsyncClient) -> Any:
        app_id = (await client.post("/apps", json={"name": "mounts"})).json()["app_id"]
        spec = {**SPEC, "volumes": [{"volume": "data", "path": "/data"}]}
        return await client.post(f"/apps/{app_id}/functions", json={"tag": "f", "spec": spec, "pickled": None})

    resp = run(plane, steps)
    assert resp.status_code == 400
    assert "bubblewrap" in resp.json()["error"]["message"]


def test_while_the_disk_is_full_every_answer_warns_and_the_sdk_says_so_once(plane: ControlPlane, capsys):
    from shoal import client as sdk

    async def steps(client: httpx.AsyncClient) -> None:
        fid = await register_function(client)
        call_id = (await client.post(f"/functions/{fid}/calls", json={"kind": "map"})).json()["call_id"]
        assert "x-shoal-warning" not in (await client.get(f"/calls/{call_id}")).headers
        pages = plane.store.db.execute("PRAGMA page_count").fetchone()[0]
        plane.store.db.execute(f"PRAGMA max_page_count={pages + 2}")  # the disk is (nearly) full
        assert (await add_inputs(client, call_id, 0, 200)).status_code == 507
        # a caller waiting on results hears of it on its next answer, whatever it asked
        warning = (await client.get(f"/calls/{call_id}")).headers["x-shoal-warning"]
        assert "disk is full" in warning
        for _ in range(3):
            sdk._warn_once_a_minute(warning)
        assert capsys.readouterr().err.count("disk is full") == 1

    run(plane, steps)


def test_a_bursts_wal_gives_its_disk_space_back(tmp_path: Path, monkeypatch):
    import time as _time

    from shoal.server.store import SQLiteStore, checkpoints

    monkeypatch.setattr(checkpoints, "WAL_KEEP", 1 << 20)
    monkeypatch.setattr(checkpoints, "INTERVAL", 0.05)
    store = SQLiteStore(tmp_path / "state.db")
    try:
        wal = tmp_path / "state.db-wal"
        store.db.execute("CREATE TABLE burst (data BLOB)")
        for _ in range(40):  # 8 MiB through the WAL
            store.db.execute("INSERT INTO burst VALUES (?)", (b"x" * (200 << 10),))
        assert wal.stat().st_size > 4 << 20
        deadline = _time.monotonic() + 20
        while wal.stat().st_size > 1 << 20 and _time.monotonic() < deadline:  # the checkpoint thread's next rounds,
            store.db.execute("INSERT INTO burst VALUES (x'00')")  # then the next commit cuts the file back
            _time.sleep(0.05)
        assert wal.stat().st_size <= 1 << 20
        assert store.db.execute("SELECT COUNT(*) FROM burst").fetchone()[0] > 40
    finally:
        store.close()
